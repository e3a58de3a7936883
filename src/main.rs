use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::config::Config;
use std::process::ExitCode;

/// EX_USAGE from sysexits.h: the configuration is invalid.
const EXIT_INVALID_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    log_panics();
    if cli.command.serves() {
        sluice::server::raise_open_file_limit();
    }
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok ({} services)", config.display(), c.services.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        Command::Status { admin, pods } => {
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            match runtime.block_on(sluice::admin::fetch_status(&admin)) {
                Ok(status) if pods => {
                    print!("{}", sluice::admin::pods_table(&status));
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    print!("{}", sluice::admin::services_table(&status));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sidecar(args) => {
            let options = sluice::sidecar::SidecarOptions {
                listen: args.listen,
                upstream: args.upstream,
                admin: args.admin,
                container_concurrency: args.container_concurrency,
                queue_depth: args.queue_depth,
                queue_timeout: args.queue_timeout,
                request_timeout: args.request_timeout,
                readiness_path: args.readiness_path,
                drain_period: args.drain_period,
                drain_timeout: args.drain_timeout,
            };
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            match runtime.block_on(sluice::sidecar::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidecar: {e}");
                    ExitCode::from(EXIT_INVALID_CONFIG)
                }
            }
        }
        Command::Webhook(args) => {
            let injection = sluice::webhook::Injection {
                image: args.sidecar_image,
                port: args.sidecar_port,
                admin_port: args.sidecar_admin_port,
                pre_stop_seconds: args.pre_stop_seconds,
            };
            let connections = sluice::webhook::WebhookConnections {
                tls_handshake_timeout: args.tls_handshake_timeout,
                ..Default::default()
            };
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            let run = sluice::webhook::run(
                args.listen,
                &args.tls_cert,
                &args.tls_key,
                injection,
                connections,
            );
            match runtime.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("webhook: {e}");
                    ExitCode::from(EXIT_INVALID_CONFIG)
                }
            }
        }
        Command::Predictor(args) => {
            let options = sluice::predictor::PredictorOptions {
                listen: (args.bind, args.port).into(),
                model: args.model_name,
                service_time: args.service_time,
                workers: args.workers,
                startup_delay: args.startup_delay,
            };
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            match runtime.block_on(sluice::predictor::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("predictor: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Gateway { config: path } => {
            let config = match Config::load(&path) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_INVALID_CONFIG);
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            match runtime.block_on(sluice::gateway::run(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A panic anywhere (a request's task, a connection's, a background task
/// that is then restarted) goes to the log like every other event, with
/// where it happened, instead of to bare stderr where log collectors that
/// parse lines would lose it.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = sluice::supervise::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(panic = %message, %location, thread, "panicked");
    }));
}
