use clap::Parser;
use sluice::cli::{Cli, Command, PredictorArgs, SidecarArgs, WebhookArgs};
use sluice::config::{Config, ConfigError};
use sluice::server::ServeError;
use sluice::sidecar::SidecarError;
use sluice::webhook::WebhookError;
use std::process::ExitCode;

/// Exit codes by kind of failure, from sysexits.h (documented in the README).
mod exit {
    /// `sluice status` could not read the gateway's status.
    pub const UNREADABLE: u8 = 1;
    /// EX_USAGE: the configuration (file, flags, log filter or TLS files) is invalid.
    pub const INVALID_CONFIG: u8 = 64;
    /// EX_UNAVAILABLE: a port cannot be listened on.
    pub const CANNOT_LISTEN: u8 = 69;
    /// EX_SOFTWARE: the runtime or its signal handlers cannot start.
    pub const INTERNAL: u8 = 70;
}

/// Why a command failed, and so how the process exits.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("sluice status: {0}")]
    Status(#[from] sluice::admin::StatusError),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidConfig(_) => exit::INVALID_CONFIG,
            Failure::Serve(ServeError::Listen { .. }) => exit::CANNOT_LISTEN,
            Failure::Serve(ServeError::Signals(_) | ServeError::Worker { .. })
            | Failure::Runtime(_) => exit::INTERNAL,
            Failure::Status(_) => exit::UNREADABLE,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::InvalidConfig(error.to_string())
    }
}

impl From<SidecarError> for Failure {
    fn from(error: SidecarError) -> Self {
        match error {
            SidecarError::Serve(error) => Failure::Serve(error),
            invalid => Failure::InvalidConfig(format!("sidecar: {invalid}")),
        }
    }
}

impl From<sluice::gateway::StartError> for Failure {
    fn from(error: sluice::gateway::StartError) -> Self {
        match error {
            sluice::gateway::StartError::Serve(error) => Failure::Serve(error),
            sluice::gateway::StartError::Config(error) => error.into(),
        }
    }
}

impl From<WebhookError> for Failure {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Serve(error) => Failure::Serve(error),
            WebhookError::Tls(error) => Failure::InvalidConfig(format!("webhook: {error}")),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = cli.log_settings().init() {
        eprintln!("sluice: {error}");
        return ExitCode::from(exit::INVALID_CONFIG);
    }
    log_panics();
    if cli.command.serves() {
        sluice::server::raise_open_file_limit();
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Runs one command; all but `check` on one tokio runtime.
fn run(command: Command) -> Result<(), Failure> {
    if let Command::Check { config } = &command {
        let checked = Config::load(config)?;
        sluice::gateway::check_tls(&checked, config)?;
        println!(
            "{}: ok ({} services)",
            config.display(),
            checked.services.len()
        );
        return Ok(());
    }
    let runtime = runtime_for(&command).map_err(Failure::Runtime)?;
    runtime.block_on(async {
        match command {
            Command::Check { .. } => Ok(()),
            Command::Status {
                admin,
                pods,
                watch: true,
                interval,
            } => {
                let table = if pods {
                    sluice::admin::pods_table
                } else {
                    sluice::admin::services_table
                };
                sluice::admin::watch(&admin, table, interval)
                    .await
                    .map_err(ServeError::Signals)?;
                Ok(())
            }
            Command::Status { admin, pods, .. } => {
                let status = sluice::admin::fetch_status(&admin).await?;
                if pods {
                    print!("{}", sluice::admin::pods_table(&status));
                } else {
                    print!("{}", sluice::admin::services_table(&status));
                }
                Ok(())
            }
            Command::Gateway { config: path } => {
                let config = Config::load(&path)?;
                Ok(sluice::gateway::run(config, path).await?)
            }
            Command::Sidecar(args) => Ok(sluice::sidecar::run(sidecar_options(args)).await?),
            Command::Webhook(args) => webhook(args).await,
            Command::Predictor(args) => Ok(sluice::predictor::run(predictor_options(args)).await?),
        }
    })
}

/// The gateway and the sidecar serve their data port on worker threads of
/// their own (`server::Workers`); their main thread runs worker 0 and the
/// control plane on a current-thread runtime. The other commands use
/// tokio's multi-threaded runtime.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Gateway { .. } | Command::Sidecar(_) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Runtime::new(),
    }
}

fn sidecar_options(args: SidecarArgs) -> sluice::sidecar::SidecarOptions {
    sluice::sidecar::SidecarOptions {
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
        workers: args.workers,
        // clap took only the names this knows.
        protocol: sluice::config::UpstreamProtocol::from_name(&args.upstream_protocol)
            .unwrap_or_default(),
        tracing: sluice::config::TracingSettings {
            otlp: args
                .otlp_endpoint
                .map(|endpoint| sluice::config::OtlpSettings {
                    sampling_ratio: args.otlp_sampling_ratio,
                    service_name: args.otlp_service_name,
                    ..sluice::config::OtlpSettings::new(&endpoint)
                }),
        },
    }
}

async fn webhook(args: WebhookArgs) -> Result<(), Failure> {
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
    let (cert, key) = (&args.tls_cert, &args.tls_key);
    Ok(sluice::webhook::run(args.listen, cert, key, injection, connections).await?)
}

fn predictor_options(args: PredictorArgs) -> sluice::predictor::PredictorOptions {
    sluice::predictor::PredictorOptions {
        listen: (args.bind, args.port).into(),
        model: args.model_name,
        service_time: args.service_time,
        workers: args.workers,
        startup_delay: args.startup_delay,
        openai: args
            .openai
            .then_some(sluice::predictor::openai::OpenAiOptions {
                aliases: args.model_alias,
                engine: sluice::predictor::openai::EngineSettings {
                    batch_size: args.batch_size as usize,
                    time_to_first_token: args.time_to_first_token,
                    tokens_per_second: args.tokens_per_second,
                    kv_cache_tokens: args.kv_cache_tokens,
                },
            }),
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
