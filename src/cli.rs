//! The command line: `sluice gateway`, `sluice check`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A concurrency-aware reverse proxy, activator and autoscaler for model serving"
)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `sluice=debug,hyper=info`.
    #[arg(long, env = "SLUICE_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ingress gateway: route by Host, balance, queue, reload on change.
    Gateway {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem found.
    Check {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
}
