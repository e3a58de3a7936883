//! The autoscaler of one service, as a task: each second it reads the load,
//! hands it to the [`Scaler`] and carries out what that decides. A request
//! held at zero replicas scales the service up at once, without waiting for
//! the tick.

use super::scaler::{Action, Command, Event, Load, Scaler, ScalerStatus, Second};
use super::server_queue::{observed_queue, pod_queues};
use super::{Scraper, Spec};
use crate::actuator::Actuator;
use crate::config::MetricsSource;
use crate::pods::Dispatcher;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

/// What the autoscaler needs of the service it scales.
pub trait Scaled: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn dispatcher(&self) -> &Arc<Dispatcher>;
    fn actuator(&self) -> Arc<dyn Actuator>;
    /// The settings as they are now (a reload may change them).
    fn scaling(&self) -> ScalingSettings;
    fn set_status(&self, status: ScalerStatus);
    /// Keeps an event for the service's history (after it is logged).
    fn remember(&self, _event: &Event) {}
}

/// The settings the autoscaler reads each second.
#[derive(Debug, Clone)]
pub struct ScalingSettings {
    pub spec: Spec,
    pub tick_interval: Duration,
    pub metrics: MetricsSource,
    /// With `podMetrics`: how old a model server's reading may be.
    pub stale_after: Option<Duration>,
}

pub async fn run<S: Scaled>(service: Arc<S>) {
    let start = Instant::now();
    let owned = service.actuator().source().owned();
    let ready = service.dispatcher().pods().len() as u32;
    let mut scaler = Scaler::new(owned, &service.scaling().spec, ready);
    let started = scaler.start();
    carry_out(&*service, started);

    let mut scraper = Scraper::new(fastrand::Rng::new());
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);
    second.tick().await;
    loop {
        tokio::select! {
            _ = second.tick() => {}
            _ = service.dispatcher().activation_requested() => {
                let action = scaler.activation_requested(&service.scaling().spec);
                carry_out(&*service, action);
                continue;
            }
        }
        let settings = service.scaling();
        let now = start.elapsed();
        let load = read_load(&*service, &settings, &mut scraper).await;
        let dispatcher = service.dispatcher();
        let action = scaler.second(Second {
            now,
            load,
            ready: dispatcher.pods().len() as u32,
            held: dispatcher.held(),
            unseen: service.actuator().unhealthy(),
            spec: &settings.spec,
            tick_interval: settings.tick_interval,
        });
        carry_out(&*service, action);
    }
}

/// The load of the last second; `None` when no pod could report it.
async fn read_load(
    service: &impl Scaled,
    settings: &ScalingSettings,
    scraper: &mut Scraper,
) -> Option<Load> {
    let dispatcher = service.dispatcher();
    let own = dispatcher.read_load();
    let queue = settings.stale_after.map_or(0.0, |stale_after| {
        let pods = pod_queues(&dispatcher.pods(), Instant::now(), stale_after);
        observed_queue(&pods, dispatcher.queued())
    });
    match settings.metrics {
        MetricsSource::Gateway => Some(Load {
            concurrency: own.concurrency,
            rps: own.rps,
            queue,
        }),
        MetricsSource::Pods => {
            let spec = &settings.spec;
            let load = scraper
                .scrape(&dispatcher.pods(), spec.metric, spec.target)
                .await?;
            // What the pods report, plus what waits here and has not
            // reached a pod yet.
            Some(Load {
                concurrency: load.concurrency + dispatcher.queued() as f64,
                rps: load.rps,
                queue,
            })
        }
    }
}

fn carry_out(service: &impl Scaled, action: Action) {
    let name = service.name();
    for event in action.events {
        service.remember(&event);
        log(name, event);
    }
    for command in action.commands {
        let actuator = service.actuator();
        match command {
            Command::Activate(n) => actuator.activate(n),
            Command::Scale(n) => actuator.scale(n),
            Command::NoDecision => actuator.no_decision(),
        }
    }
    if let Some(status) = action.status {
        service.set_status(status);
    }
}

fn log(service: &str, event: Event) {
    match event {
        Event::Started { desired } => info!(service, desired, "autoscaler started"),
        Event::Activating { desired } => info!(
            service,
            desired, "activating: a request is held and no replica is ready"
        ),
        Event::Unreported => warn!(service, "no pod could report its load this second"),
        Event::Blind { desired, why } => warn!(
            service,
            desired,
            %why,
            "not scaling while the backend cannot be seen"
        ),
        Event::SeeingAgain => info!(service, "the backend can be seen again; scaling resumes"),
        Event::EnteringPanic => info!(service, "entering panic mode"),
        Event::LeavingPanic => info!(service, "leaving panic mode"),
        Event::Scaling {
            from,
            to,
            ready,
            reason,
        } => info!(service, from, to, ready, %reason, "scaling"),
    }
}
