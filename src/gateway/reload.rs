//! Reloading the configuration file: on SIGHUP, and when its contents change.
//!
//! Each version of the file is parsed once: SIGHUP after an edit reloads
//! it, and the poller, which then reads the same bytes, leaves it alone (and
//! the other way round: SIGHUP after the poller saw the edit is answered
//! with the outcome the poller had).
//!
//! The poller applies a version only once it has read the same bytes twice
//! in a row: a file caught halfway through a write (an editor, `cat >`)
//! could parse as a valid configuration with fewer services, or none.

use crate::config::{self, Config, ConfigError};
use crate::shared::Shared;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info};

/// How often the file is read to see if it changed.
const POLL: Duration = Duration::from_secs(1);

/// The configuration file, and the bytes of it last read with what came of them.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    last_read: Mutex<Option<LastRead>>,
    /// What the poller read last time, if it differed from `last_read`:
    /// applied when the next poll reads it again.
    settling: Mutex<Option<Vec<u8>>>,
}

#[derive(Debug)]
struct LastRead {
    bytes: Vec<u8>,
    outcome: Result<(), ConfigError>,
}

// === impl ConfigFile ===

impl ConfigFile {
    pub fn new(path: PathBuf) -> Self {
        ConfigFile {
            path,
            last_read: Mutex::new(None),
            settling: Mutex::new(None),
        }
    }

    /// Remembers the file as the gateway started with `config`, if it
    /// still holds that configuration; otherwise leaves it unread, so the
    /// first poll applies whatever it holds now.
    pub async fn started_with(&self, config: &Config) {
        let Ok(bytes) = read(&self.path).await else {
            return;
        };
        let same = config::text_of(&self.path, bytes.clone())
            .and_then(|text| Config::parse(&text))
            .is_ok_and(|read| read == *config);
        if same {
            *self.last_read() = Some(LastRead {
                bytes,
                outcome: Ok(()),
            });
        }
    }

    /// Reads the file now and applies it if it changed since it was last
    /// read (SIGHUP). On error the running configuration stays, and the
    /// error is logged and counted.
    pub async fn reload(&self, shared: &Shared) -> Result<(), ConfigError> {
        let bytes = read(&self.path).await?;
        if let Some(last) = self.last_read().as_ref().filter(|l| l.bytes == bytes) {
            info!(path = %self.path.display(), "configuration file unchanged since it was last read");
            return last.outcome.clone();
        }
        self.apply(shared, bytes)
    }

    /// Applies the file if it differs from what was last read.
    async fn reload_if_changed(&self, shared: &Shared) {
        // A file that cannot be read now (being replaced) is tried again
        // at the next poll; the running configuration stays meanwhile.
        let Ok(bytes) = read(&self.path).await else {
            return;
        };
        if self.last_read().as_ref().map(|l| &l.bytes) == Some(&bytes) {
            *self.settling() = None;
            return;
        }
        let settled = {
            let mut settling = self.settling();
            let settled = settling.as_ref() == Some(&bytes);
            *settling = (!settled).then(|| bytes.clone());
            settled
        };
        if settled {
            info!(path = %self.path.display(), "configuration file changed");
            let _ = self.apply(shared, bytes);
        }
    }

    /// Remembers the file as read (valid or not, so that the poller does not
    /// parse the same bytes again), parses it and applies it.
    fn apply(&self, shared: &Shared, bytes: Vec<u8>) -> Result<(), ConfigError> {
        // Under the lock: a SIGHUP and a poll never apply the same bytes twice.
        let mut last = self.last_read();
        if let Some(same) = last.as_ref().filter(|l| l.bytes == bytes) {
            return same.outcome.clone();
        }
        let parsed = config::text_of(&self.path, bytes.clone())
            .and_then(|text| Config::parse(&text).map_err(|e| e.at(&self.path)));
        let outcome = match parsed {
            Ok(config) => {
                let services = config.services.len();
                shared.apply(config);
                shared.metrics.reloaded(true);
                info!(path = %self.path.display(), services, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                shared.metrics.reloaded(false);
                // One line, so that a line-based log collector keeps it whole.
                let error = e.to_string().replace("\n  ", " ").replace('\n', " ");
                error!(%error, "configuration not reloaded, the running one stays");
                Err(e)
            }
        };
        *last = Some(LastRead {
            bytes,
            outcome: outcome.clone(),
        });
        outcome
    }

    fn settling(&self) -> std::sync::MutexGuard<'_, Option<Vec<u8>>> {
        self.settling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn last_read(&self) -> std::sync::MutexGuard<'_, Option<LastRead>> {
        self.last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Polls the file's contents. Polling (not inotify) also sees a Kubernetes
/// ConfigMap update, which swaps a symlink rather than writing the file.
pub async fn watch_file(
    shared: Arc<Shared>,
    file: Arc<ConfigFile>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = crate::server::stopped(&mut stopped) => return,
        }
        file.reload_if_changed(&shared).await;
    }
}

/// The file's bytes (see [`config::read_bytes_bounded`]), read on
/// the blocking pool in one go: the poll runs every second on the thread
/// that also serves worker 0's connections.
async fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || config::read_bytes_bounded(&owned)).await {
        Ok(read) => read,
        Err(join) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source: Arc::new(std::io::Error::other(join.to_string())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "services:\n  - name: a\n    backend: {static: [\"127.0.0.1:1\"]}\n";
    const TWO: &str = "services:\n  - name: a\n    backend: {static: [\"127.0.0.1:1\"]}\n  - name: b\n    backend: {static: [\"127.0.0.1:2\"]}\n";

    fn services(shared: &Shared) -> usize {
        shared.routes.load().services().len()
    }

    /// A file caught halfway through a write is never applied: the poller
    /// waits until it reads the same bytes twice.
    #[tokio::test]
    async fn the_poller_applies_a_version_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, TWO).unwrap();
        let shared = Shared::new(Config::parse(TWO).unwrap());
        let file = ConfigFile::new(path.clone());
        file.started_with(&shared.config()).await;

        file.reload_if_changed(&shared).await;
        assert_eq!(services(&shared), 2, "unchanged");
        // Halfway through writing TWO again: only its first service so far.
        std::fs::write(&path, ONE).unwrap();
        file.reload_if_changed(&shared).await;
        assert_eq!(services(&shared), 2, "one read of new bytes is not enough");
        std::fs::write(&path, TWO).unwrap();
        file.reload_if_changed(&shared).await;
        assert_eq!(services(&shared), 2, "back to what runs");
        // A real change, read twice.
        std::fs::write(&path, ONE).unwrap();
        file.reload_if_changed(&shared).await;
        assert_eq!(services(&shared), 2);
        file.reload_if_changed(&shared).await;
        assert_eq!(services(&shared), 1, "applied once settled");
        shared.retire_all().await;
    }

    /// A file that changed between start and the watcher's first look is
    /// not taken for the one the gateway started with.
    #[tokio::test]
    async fn a_file_changed_before_the_watcher_looks_is_still_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, ONE).unwrap();
        let shared = Shared::new(Config::parse(TWO).unwrap());
        let file = ConfigFile::new(path);
        file.started_with(&shared.config()).await;
        assert!(file.reload(&shared).await.is_ok());
        assert_eq!(services(&shared), 1, "SIGHUP applies the file as it is");
        shared.retire_all().await;
    }
}
