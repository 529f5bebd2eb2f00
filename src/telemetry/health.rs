//! What `/healthz` and `/readyz` answer. The parts of the operator report here; the ops server asks.
//!
//! - **healthz** (liveness): the process answers, and the Pipeline watch is not stuck in an error loop —
//!   failing without a single success for longer than the stall timeout turns it unhealthy, so the
//!   kubelet restarts a process whose watch cannot recover (expired credentials, a CRD removed and
//!   reinstalled under it). A watch that starts again delivers nothing until something changes, so
//!   [`QUIET`] without an error also counts as recovered: a watch still failing errs at least every
//!   30 s (kube-runtime's longest backoff).
//! - **readyz**: the leader state is known; a process that reconciles has synced its caches; the
//!   artifact store is writable.
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// This process's part in leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Not known yet (the first answer from the Lease is pending).
    Unknown,
    /// This process leads: it reconciles, polls and serves artifacts.
    Leader,
    /// Another process leads; this one waits.
    Follower,
    /// No election (`--leader-elect=false`): this process is the only one.
    Disabled,
}

/// Shared health state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    state: Arc<Mutex<State>>,
    stall_timeout: Duration,
}

#[derive(Debug)]
struct State {
    leadership: Leadership,
    caches_synced: bool,
    /// The Pipeline watch's current error streak: since when, the last error and when it came.
    watch_failing: Option<Failing>,
    storage: Option<PathBuf>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    last: Instant,
    error: String,
}

/// How long a watch must go without an error to count as recovered (longer than kube-runtime's
/// longest watch backoff, 30 s).
const QUIET: Duration = Duration::from_secs(35);

impl Health {
    /// Health with a watch stall timeout of `stall_timeout`.
    pub fn new(stall_timeout: Duration) -> Self {
        Health {
            state: Arc::new(Mutex::new(State {
                leadership: Leadership::Unknown,
                caches_synced: false,
                watch_failing: None,
                storage: None,
            })),
            stall_timeout,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader election's answer.
    pub fn set_leadership(&self, leadership: Leadership) {
        self.state().leadership = leadership;
    }

    /// The leader election's last answer.
    pub fn leadership(&self) -> Leadership {
        self.state().leadership
    }

    /// The controller's caches are filled.
    pub fn set_caches_synced(&self) {
        self.state().caches_synced = true;
    }

    /// The directory whose writability readiness checks.
    pub fn set_storage(&self, dir: PathBuf) {
        self.state().storage = Some(dir);
    }

    /// The Pipeline watch delivered something: it is making progress.
    pub fn watch_ok(&self) {
        self.state().watch_failing = None;
    }

    /// The Pipeline watch failed with `error`.
    pub fn watch_failed(&self, error: String) {
        let mut state = self.state();
        let now = Instant::now();
        let since = match &state.watch_failing {
            Some(f) if f.last.elapsed() < QUIET => f.since,
            _ => now,
        };
        state.watch_failing = Some(Failing {
            since,
            last: now,
            error,
        });
    }

    /// `Ok` while alive; the reason otherwise.
    pub fn healthz(&self) -> Result<(), String> {
        match &self.state().watch_failing {
            Some(f) if f.since.elapsed() > self.stall_timeout && f.last.elapsed() < QUIET => Err(format!(
                "the Pipeline watch has failed for {}s without recovering: {}",
                f.since.elapsed().as_secs(),
                f.error
            )),
            _ => Ok(()),
        }
    }

    /// `Ok` when ready to serve; the reason otherwise.
    pub fn readyz(&self) -> Result<(), String> {
        let (leadership, synced, storage) = {
            let state = self.state();
            (state.leadership, state.caches_synced, state.storage.clone())
        };
        match leadership {
            Leadership::Unknown => return Err("leader election: no answer from the Lease yet".into()),
            Leadership::Leader | Leadership::Disabled if !synced => {
                return Err("the Pipeline and Pod caches are not synced yet".into());
            }
            _ => {}
        }
        match storage {
            Some(dir) => writable(&dir),
            None => Ok(()),
        }
    }
}

/// Whether a file can be created (and removed) in `dir`.
fn writable(dir: &std::path::Path) -> Result<(), String> {
    let probe = dir.join(format!(".readyz-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("the storage directory {} is not writable: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_failing_past_the_stall_timeout_is_unhealthy_until_it_recovers() {
        let health = Health::new(Duration::ZERO);
        assert!(health.healthz().is_ok());
        health.watch_failed("403 Forbidden".into());
        std::thread::sleep(Duration::from_millis(2));
        let error = health.healthz().unwrap_err();
        assert!(error.contains("403 Forbidden"), "{error}");
        health.watch_ok();
        assert!(health.healthz().is_ok());
    }

    #[test]
    fn readiness_needs_leadership_known_and_caches_synced() {
        let health = Health::new(Duration::from_secs(60));
        assert!(health.readyz().unwrap_err().contains("leader election"));
        health.set_leadership(Leadership::Follower);
        assert!(health.readyz().is_ok(), "a follower has no caches to sync");
        health.set_leadership(Leadership::Leader);
        assert!(health.readyz().unwrap_err().contains("not synced"));
        health.set_caches_synced();
        assert!(health.readyz().is_ok());
        health.set_storage(PathBuf::from("/proc/no-such-dir"));
        assert!(health.readyz().unwrap_err().contains("not writable"));
    }
}
