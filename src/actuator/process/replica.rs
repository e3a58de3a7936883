//! One local replica's life: start the process, wait until it is ready, put
//! it in the balancer, restart it if it dies, and on stop drain it first.

use super::launch::{self, Launch, Running};
use crate::actuator::{Phase, ReplicaCounts, ReplicaStatus};
use crate::pods::{Dispatcher, Pod};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::probe::ProbeClient;

#[derive(Debug)]
pub struct Replica {
    pub name: String,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    port: u16,
    pid: Option<u32>,
    sidecar_pid: Option<u32>,
    pod: Option<Arc<Pod>>,
    restarts: u64,
    started: Instant,
}

/// Restart backoff: doubles from 100 ms to 10 s; resets after a replica
/// stayed up for 10 s.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

// === impl Replica ===

impl Replica {
    pub fn new(id: u64, service: &str) -> Arc<Self> {
        Arc::new(Replica {
            name: format!("{service}-{id}"),
            state: Mutex::new(State {
                phase: Phase::Starting,
                port: 0,
                pid: None,
                sidecar_pid: None,
                pod: None,
                restarts: 0,
                started: Instant::now(),
            }),
            stop: watch::channel(false).0,
        })
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn phase(&self) -> Phase {
        self.state().phase
    }

    /// Requests in flight at this replica (0 if not in the balancer).
    pub fn in_flight(&self) -> usize {
        self.state().pod.as_ref().map_or(0, |p| p.in_flight())
    }

    pub fn status(&self) -> ReplicaStatus {
        let state = self.state();
        ReplicaStatus {
            name: self.name.clone(),
            address: format!("127.0.0.1:{}", state.port),
            pid: state.pid,
            sidecar_pid: state.sidecar_pid,
            phase: state.phase,
            in_flight: state.pod.as_ref().map_or(0, |p| p.in_flight()),
            restarts: state.restarts,
            age_seconds: state.started.elapsed().as_secs(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        self.state().phase = phase;
    }

    /// Keeps a process running until told to stop; then drains and stops it.
    pub async fn run(
        self: Arc<Self>,
        launch: Arc<Launch>,
        dispatcher: Arc<Dispatcher>,
        counts: Arc<ReplicaCounts>,
        probe: ProbeClient,
    ) {
        let mut stop = self.stop.subscribe();
        let mut backoff = BACKOFF_START;
        loop {
            if *stop.borrow() {
                return;
            }
            let mut running = match launch::start(&launch) {
                Ok(started) => started,
                Err(error) => {
                    warn!(replica = %self.name, %error, "cannot start replica");
                    self.set_phase(Phase::Crashed);
                    if pause(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            counts
                .starts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            {
                let mut state = self.state();
                state.phase = Phase::Starting;
                state.port = running.traffic_port;
                state.pid = running.pid();
                state.sidecar_pid = running.sidecar_pid();
                state.started = Instant::now();
            }
            let started = Instant::now();
            let readiness = running.readiness.clone();
            let exited = tokio::select! {
                ready = wait_ready(&probe, &readiness, launch.startup_timeout) => {
                    if !ready {
                        warn!(replica = %self.name, timeout = ?launch.startup_timeout, "replica not ready in time; restarting");
                        None
                    } else if let Some(port) = running.port_taken_by_another() {
                        warn!(replica = %self.name, port, "another program listens on the replica's port; restarting the replica on another port");
                        None
                    } else {
                        Some(self.serve(&mut running, &launch, &dispatcher, &counts, &mut stop).await)
                    }
                }
                status = running.exited() => Some(Outcome::Exited(status)),
                _ = crate::server::stopped(&mut stop) => {
                    running.terminate(launch.stop_grace).await;
                    counts.stops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            };
            match exited {
                Some(Outcome::Stopped) => return,
                Some(Outcome::Exited(status)) => {
                    warn!(replica = %self.name, status = ?status, "replica exited; restarting");
                }
                None => {}
            }
            // The model or its sidecar is gone: stop the other one too (and
            // whatever it started) before starting the pair again.
            running.terminate(Duration::ZERO).await;
            {
                let mut state = self.state();
                state.phase = Phase::Crashed;
                state.pid = None;
                state.sidecar_pid = None;
                state.restarts += 1;
            }
            counts
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if started.elapsed() > BACKOFF_MAX {
                backoff = BACKOFF_START;
            }
            if pause(backoff, &mut stop).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// In the balancer until the process exits or the replica is stopped.
    async fn serve(
        &self,
        running: &mut Running,
        launch: &Launch,
        dispatcher: &Dispatcher,
        counts: &ReplicaCounts,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let port = running.traffic_port;
        let authority = format!("127.0.0.1:{port}")
            .parse()
            .expect("a valid authority");
        let pod = dispatcher.add_pod(authority);
        if let Some(stats) = running.stats_port {
            pod.set_stats_addr(format!("127.0.0.1:{stats}").parse().ok());
        }
        {
            let mut state = self.state();
            state.phase = Phase::Ready;
            state.pod = Some(pod.clone());
        }
        info!(replica = %self.name, port, "replica ready");
        let outcome = tokio::select! {
            status = running.exited() => {
                dispatcher.remove_pod(&pod);
                Outcome::Exited(status)
            }
            _ = crate::server::stopped(stop) => {
                self.set_phase(Phase::Draining);
                dispatcher.remove_pod(&pod);
                drain(&pod, launch.drain_timeout).await;
                running.terminate(launch.stop_grace).await;
                counts.stops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                info!(replica = %self.name, "replica drained and stopped");
                Outcome::Stopped
            }
        };
        self.state().pod = None;
        outcome
    }
}

enum Outcome {
    Exited(Option<ExitStatus>),
    Stopped,
}

/// Probes the replica's readiness until it answers 200 or `timeout` passes.
async fn wait_ready(probe: &ProbeClient, uri: &str, timeout: Duration) -> bool {
    match uri.parse() {
        Ok(uri) => crate::probe::wait_ready(probe, &uri, timeout).await,
        Err(_) => false,
    }
}

/// Waits for the pod's requests in flight to finish, at most `timeout`.
async fn drain(pod: &Pod, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        while pod.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Sleeps for `duration`; true if told to stop meanwhile.
async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = crate::server::stopped(stop) => true,
    }
}
