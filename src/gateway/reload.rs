//! Reloading the configuration file: on SIGHUP, and when its contents change.

use super::Shared;
use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info};

/// How often the file is read to see if it changed.
const POLL: Duration = Duration::from_secs(1);

/// Loads, validates and applies the file. On error the running configuration
/// stays, and the error is logged and counted.
pub fn reload(shared: &Shared, path: &Path) -> Result<(), ConfigError> {
    match Config::load(path) {
        Ok(config) => {
            let services = config.services.len();
            shared.apply(config);
            shared.metrics.reloaded(true);
            info!(path = %path.display(), services, "configuration reloaded");
            Ok(())
        }
        Err(e) => {
            shared.metrics.reloaded(false);
            error!("configuration not reloaded, the running one stays: {e}");
            Err(e)
        }
    }
}

/// Polls the file's contents. Polling (not inotify) also sees a Kubernetes
/// ConfigMap update, which swaps a symlink rather than writing the file.
pub async fn watch_file(shared: Arc<Shared>, path: PathBuf, mut stopped: watch::Receiver<bool>) {
    let mut last = tokio::fs::read(&path).await.ok();
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = crate::server::stopped(&mut stopped) => return,
        }
        let current = tokio::fs::read(&path).await.ok();
        if current.is_some() && current != last {
            info!(path = %path.display(), "configuration file changed");
            let _ = reload(&shared, &path);
            last = current;
        }
    }
}
