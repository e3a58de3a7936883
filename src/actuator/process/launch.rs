//! The processes of one local replica: the model, and optionally a
//! `sluice sidecar` in front of it. Each runs in its own process group, so
//! that stopping it also stops what it started.

use super::ownership;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tracing::warn;

/// What every replica of a service is started from.
#[derive(Debug)]
pub struct Launch {
    pub service: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub readiness_path: String,
    pub startup_timeout: Duration,
    pub stop_grace: Duration,
    /// Longest a stopping replica waits for its requests in flight.
    pub drain_timeout: Duration,
    /// A sidecar in front of each replica, if configured.
    pub sidecar: Option<SidecarLaunch>,
}

/// How to start the sidecar of each replica.
#[derive(Debug, Clone)]
pub struct SidecarLaunch {
    pub executable: String,
    pub container_concurrency: usize,
    /// The service's, so that the sidecar never times out first.
    pub request_timeout: Duration,
    pub queue_timeout: Duration,
    /// How the sidecar speaks to the model: the service's protocol.
    pub protocol: crate::config::UpstreamProtocol,
}

pub struct Running {
    model: Child,
    sidecar: Option<Child>,
    /// Where the model listens.
    model_port: u16,
    /// Where requests for this replica go (the sidecar's, if any).
    pub traffic_port: u16,
    /// Where the sidecar reports the replica's load.
    pub stats_port: Option<u16>,
    /// What answers 200 when the replica is ready.
    pub readiness: String,
}

/// Starts the model on a free port, and its sidecar if configured.
pub fn start(launch: &Launch) -> std::io::Result<Running> {
    let model_port = free_port()?;
    let fill = |arg: &str| arg.replace("{port}", &model_port.to_string());
    let mut model = group(Command::new(fill(&launch.program)))
        .args(launch.args.iter().map(|a| fill(a)))
        .envs(launch.env.iter().map(|(k, v)| (k, fill(v))))
        .env("PORT", model_port.to_string())
        .spawn()?;
    let Some(sidecar) = &launch.sidecar else {
        return Ok(Running {
            model,
            sidecar: None,
            model_port,
            traffic_port: model_port,
            stats_port: None,
            readiness: format!("http://127.0.0.1:{model_port}{}", launch.readiness_path),
        });
    };
    let (traffic, admin) = (free_port()?, free_port()?);
    let mut command = group(Command::new(&sidecar.executable));
    // Its settings come from here, not from the gateway's own environment.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SLUICE_") {
            command.env_remove(key);
        }
    }
    let started = command
        .args(["sidecar", "--log", "warn", "--drain-period", "0s"])
        // It writes to the gateway's stderr: in the gateway's format.
        .args([
            "--log-format",
            crate::logging::LogFormat::current().as_str(),
        ])
        .args([
            "--request-timeout",
            &format!("{}ms", sidecar.request_timeout.as_millis()),
        ])
        .args([
            "--queue-timeout",
            &format!("{}ms", sidecar.queue_timeout.as_millis()),
        ])
        .args(["--listen", &format!("127.0.0.1:{traffic}")])
        .args(["--upstream", &format!("127.0.0.1:{model_port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args([
            "--container-concurrency",
            &sidecar.container_concurrency.to_string(),
        ])
        .args(["--readiness-path", &launch.readiness_path])
        .args(["--upstream-protocol", sidecar.protocol.as_str()])
        .spawn();
    match started {
        Ok(child) => Ok(Running {
            model,
            sidecar: Some(child),
            model_port,
            traffic_port: traffic,
            stats_port: Some(admin),
            readiness: format!("http://127.0.0.1:{admin}/readyz"),
        }),
        Err(e) => {
            if let Some(pid) = model.id() {
                let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
            }
            let _ = model.start_kill();
            Err(e)
        }
    }
}

impl Running {
    /// The model's process id.
    pub fn pid(&self) -> Option<u32> {
        self.model.id()
    }

    /// The sidecar's process id, if it has one.
    pub fn sidecar_pid(&self) -> Option<u32> {
        self.sidecar.as_ref().and_then(Child::id)
    }

    /// The first of the replica's ports on which something other than the
    /// replica's own processes listens, if any: the port was taken between
    /// sluice freeing it and the replica binding it, and what answers there
    /// must never get the replica's requests.
    pub fn port_taken_by_another(&self) -> Option<u16> {
        let mut owned = vec![(self.model_port, self.model.id())];
        if let Some(sidecar) = &self.sidecar {
            owned.push((self.traffic_port, sidecar.id()));
            owned.extend(self.stats_port.map(|port| (port, sidecar.id())));
        }
        owned.into_iter().find_map(|(port, group)| {
            let held = group.is_some_and(|group| {
                ownership::held_by_group(port, group).unwrap_or_else(|error| {
                    warn!(port, %error, "cannot tell who listens on a replica's port");
                    false
                })
            });
            (!held).then_some(port)
        })
    }

    /// Resolves when the model or its sidecar exits.
    pub async fn exited(&mut self) -> Option<ExitStatus> {
        match &mut self.sidecar {
            Some(sidecar) => tokio::select! {
                status = self.model.wait() => status.ok(),
                status = sidecar.wait() => status.ok(),
            },
            None => self.model.wait().await.ok(),
        }
    }

    /// Stops the sidecar, then the model: SIGTERM to each process group,
    /// SIGKILL if still running after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(sidecar) = &mut self.sidecar {
            terminate(sidecar, grace).await;
        }
        terminate(&mut self.model, grace).await;
    }
}

fn group(mut command: Command) -> Command {
    command
        .stdin(Stdio::null())
        .process_group(0)
        // A safety net: a replica whose task is dropped is killed.
        .kill_on_drop(true);
    command
}

/// A port the system says is free now (the replica binds it just after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return; // Already reaped.
    };
    let group = Pid::from_raw(-(pid as i32));
    let _ = kill(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = kill(group, Signal::SIGKILL);
        let _ = child.kill().await;
    }
}
