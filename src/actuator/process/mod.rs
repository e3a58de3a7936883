//! Replicas as local child processes: the embedded default, no cluster needed.
//!
//! Scale-up starts processes; a replica gets requests only once its
//! readiness path answers 200. Scale-down stops the replicas that cost least
//! to lose (not yet ready first, then the least loaded), each one drained
//! before SIGTERM. A replica that dies is restarted with backoff.

mod launch;
mod ownership;
mod replica;

use self::launch::{Launch, SidecarLaunch};
use self::replica::Replica;
use super::{Actuator, BoxFuture, Context, Phase, ReplicaCounts, ReplicaSource, ReplicaStatus};
use crate::config::{ProcessBackend, UpstreamProtocol};
use crate::pods::Dispatcher;
use crate::probe::ProbeClient;
use crate::supervise::{restart_on_panic, PanicReports};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::task::JoinHandle;
use tracing::info;

#[derive(Debug)]
pub struct ProcessActuator {
    launch: Arc<Launch>,
    dispatcher: Arc<Dispatcher>,
    counts: Arc<ReplicaCounts>,
    probe: ProbeClient,
    next_id: AtomicU64,
    replicas: Mutex<Vec<(Arc<Replica>, JoinHandle<()>)>>,
    /// Set by shutdown, under the replicas lock: no replica starts after it.
    shut_down: AtomicBool,
    /// Where a replica task's panic is reported (it is logged and the
    /// replica restarted anyway).
    panics: Arc<PanicReports>,
}

impl ProcessActuator {
    pub fn new(context: &Context, backend: &ProcessBackend) -> Self {
        let (name, namespace) = (&context.service.name, &context.service.namespace);
        let container_concurrency = context.service.container_concurrency;
        let dispatcher = context.dispatcher.clone();
        let (drain_timeout, queue_timeout) = (context.request_timeout, context.queue_timeout);
        let sluice = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "sluice".into());
        let fill = |arg: &str| {
            arg.replace("{sluice}", &sluice)
                .replace("{name}", name)
                .replace("{namespace}", namespace)
        };
        let mut command = backend.command.iter().map(|a| fill(a));
        let launch = Launch {
            service: name.to_string(),
            program: command.next().unwrap_or_default(),
            args: command.collect(),
            env: backend
                .env
                .iter()
                .map(|(k, v)| (k.clone(), fill(v)))
                .collect(),
            readiness_path: backend.readiness_path.clone(),
            startup_timeout: backend.startup_timeout.0,
            stop_grace: backend.stop_grace_period.0,
            drain_timeout,
            sidecar: backend.sidecar.as_ref().map(|sidecar| SidecarLaunch {
                executable: sidecar.executable.clone().unwrap_or_else(|| sluice.clone()),
                container_concurrency,
                request_timeout: drain_timeout,
                queue_timeout,
                protocol: context.service.protocol,
            }),
        };
        // Without a sidecar, the model itself answers the probe, in the
        // protocol it speaks.
        let probe = match (&launch.sidecar, context.service.protocol) {
            (None, UpstreamProtocol::H2c) => crate::probe::http2_client(),
            _ => crate::probe::client(),
        };
        ProcessActuator {
            launch: Arc::new(launch),
            dispatcher,
            counts: Arc::default(),
            probe,
            next_id: AtomicU64::new(1),
            replicas: Mutex::new(Vec::new()),
            shut_down: AtomicBool::new(false),
            panics: context.panics.clone(),
        }
    }

    fn replicas_lock(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<Replica>, JoinHandle<()>)>> {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_one(&self) -> (Arc<Replica>, JoinHandle<()>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replica = Replica::new(id, &self.launch.service);
        let (launch, dispatcher) = (self.launch.clone(), self.dispatcher.clone());
        let (counts, probe) = (self.counts.clone(), self.probe.clone());
        let panics = self.panics.clone();
        let run = {
            let replica = replica.clone();
            async move {
                // A panic kills the replica's processes (kill_on_drop) and
                // starts them again: the replica never stops silently.
                let start = || {
                    let (launch, dispatcher) = (launch.clone(), dispatcher.clone());
                    replica
                        .clone()
                        .run(launch, dispatcher, counts.clone(), probe.clone())
                };
                let report = |message: &str| panics.record("replica", message);
                restart_on_panic("replica", &replica.name, report, start).await
            }
        };
        let task = tokio::spawn(run);
        (replica, task)
    }
}

/// Which replicas to stop first: not yet ready, then the least loaded.
fn stop_order(replica: &Replica) -> (bool, usize) {
    (replica.phase() == Phase::Ready, replica.in_flight())
}

impl Actuator for ProcessActuator {
    fn scale(&self, wanted: u32) {
        let wanted = wanted as usize;
        let mut replicas = self.replicas_lock();
        if self.shut_down.load(Ordering::Relaxed) {
            return;
        }
        replicas.retain(|(_, task)| !task.is_finished());
        let mut active: Vec<&Arc<Replica>> = replicas
            .iter()
            .map(|(r, _)| r)
            .filter(|r| !r.is_stopping())
            .collect();
        if active.len() > wanted {
            active.sort_by_key(|r| stop_order(r));
            for replica in &active[..active.len() - wanted] {
                info!(replica = %replica.name, "stopping replica (scale down)");
                replica.stop();
            }
        } else {
            let missing = wanted - active.len();
            for _ in 0..missing {
                let started = self.start_one();
                info!(replica = %started.0.name, "starting replica (scale up)");
                replicas.push(started);
            }
        }
    }

    fn source(&self) -> ReplicaSource {
        ReplicaSource::Started
    }

    fn replicas(&self) -> Vec<ReplicaStatus> {
        self.replicas_lock()
            .iter()
            .filter(|(_, task)| !task.is_finished())
            .map(|(r, _)| r.status())
            .collect()
    }

    fn counts(&self) -> &ReplicaCounts {
        &self.counts
    }

    fn shutdown(&self) -> BoxFuture {
        let replicas = {
            let mut replicas = self.replicas_lock();
            self.shut_down.store(true, Ordering::Relaxed);
            std::mem::take(&mut *replicas)
        };
        for (replica, _) in &replicas {
            replica.stop();
        }
        Box::pin(async move {
            for (_, task) in replicas {
                let _ = task.await;
            }
        })
    }
}
