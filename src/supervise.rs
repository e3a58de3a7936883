//! Long-lived tasks that must not die silently.
//!
//! A tokio task that panics just ends: its JoinHandle holds the panic, and
//! nobody may ever look. For the tasks that keep a service working (its
//! autoscaler, the configuration watcher, the InferenceService watch) that
//! would leave a gateway up but unable to scale or reload, which is worse
//! than a crash. So a panic is caught, logged at ERROR with its message,
//! reported to the caller (a metric, the service's status), and the task is
//! started again after a backoff. Restarting rather than exiting keeps the
//! other services and the requests in flight alive; the backoff keeps a
//! panic that recurs at once from spinning.

use crate::metrics::TaskMetrics;
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::error;

/// Where the panics of one service's tasks are reported: counted in
/// `sluice_task_panics_total`, and the last one kept for `/status`.
#[derive(Debug)]
pub struct PanicReports {
    metrics: TaskMetrics,
    service: Arc<str>,
    namespace: Arc<str>,
    last: Mutex<Option<String>>,
}

impl PanicReports {
    pub fn new(metrics: TaskMetrics, service: &str, namespace: &str) -> Arc<Self> {
        Arc::new(PanicReports {
            metrics,
            service: service.into(),
            namespace: namespace.into(),
            last: Mutex::new(None),
        })
    }

    pub fn record(&self, task: &'static str, message: &str) {
        self.metrics.panicked(task, &self.service, &self.namespace);
        let seen = format!("{task} panicked and was restarted: {message}");
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(seen);
    }

    /// The last panic reported, if any.
    pub fn last(&self) -> Option<String> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The first wait before a restart; doubled on each panic, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A task that ran this long before it panicked starts again after
/// [`FIRST_BACKOFF`]: its panic is not a loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs the future that `start` makes until it returns; if it panics, calls
/// `on_panic` with the message and starts a new one after a backoff.
pub async fn restart_on_panic<F, Fut>(
    task: &'static str,
    owner: &str,
    mut on_panic: impl FnMut(&str),
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let Err(payload) = AssertUnwindSafe(start()).catch_unwind().await else {
            return;
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let message = panic_message(payload.as_ref());
        error!(task, owner, panic = %message, restart_in = ?backoff, "task panicked; restarting it");
        on_panic(&message);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with no message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_reported_and_restarted_with_backoff() {
        let runs = Arc::new(AtomicU32::new(0));
        let reported = Arc::new(Mutex::new(Vec::new()));
        let (runs_in, reported_in) = (runs.clone(), reported.clone());
        let started = tokio::time::Instant::now();
        restart_on_panic(
            "test",
            "default/a",
            move |m| reported_in.lock().unwrap().push(m.to_string()),
            move || {
                let run = runs_in.fetch_add(1, Ordering::SeqCst);
                async move {
                    if run < 3 {
                        panic!("run {run} failed");
                    }
                }
            },
        )
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            4,
            "restarted until it returned"
        );
        assert_eq!(
            *reported.lock().unwrap(),
            ["run 0 failed", "run 1 failed", "run 2 failed"]
        );
        // 1 s + 2 s + 4 s of backoff, in paused time.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn messages_of_both_kinds_are_read() {
        let text = std::panic::catch_unwind(|| panic!("{} {}", "formatted", 1)).unwrap_err();
        assert_eq!(panic_message(text.as_ref()), "formatted 1");
        let fixed = std::panic::catch_unwind(|| panic!("fixed")).unwrap_err();
        assert_eq!(panic_message(fixed.as_ref()), "fixed");
    }
}
