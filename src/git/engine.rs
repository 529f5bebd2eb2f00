//! The async face of the git engine: every blocking gix call runs on tokio's blocking pool, at most
//! `max_concurrency` at a time, under a timeout, and stops when its future is dropped (cancellation).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::cache::{self, CacheLimits, Caches};
use super::classify::{self, Context};
use super::commit::{self, CommitInfo};
use super::error::{Error, ErrorKind, Result};
use super::export::{self, Export};
use super::fetch::{self, FetchOutcome};
use super::http_pool::HttpPool;
use super::probe::{self, Head};
use super::remote::RemoteSpec;
use super::transport::{Abort, Settings};

/// The default deadline of one network operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How an [`Engine`] works.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where the per-repository caches live (`<storage_dir>/repos/…`).
    pub storage_dir: PathBuf,
    /// Deadline of each network operation (probe, fetch). Default 60s.
    pub timeout: Duration,
    /// Blocking git operations running at once. Default 8.
    pub max_concurrency: usize,
    /// When a cache is rebuilt from scratch.
    pub cache_limits: CacheLimits,
    /// An OpenSSH client config file (e.g. `Host` aliases and ports) used for ssh remotes; by default none is
    /// read. Host key checking and identity always come from the Secret whatever this file says.
    pub ssh_config: Option<PathBuf>,
}

impl EngineOptions {
    /// Defaults with caches under `storage_dir`.
    pub fn new(storage_dir: impl Into<PathBuf>) -> Self {
        EngineOptions {
            storage_dir: storage_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: 8,
            cache_limits: CacheLimits::default(),
            ssh_config: None,
        }
    }
}

/// The git engine. Cheap to clone; clones share the HTTP connections, caches and concurrency limit.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    options: EngineOptions,
    http: Arc<HttpPool>,
    caches: Caches,
    permits: Arc<Semaphore>,
    /// An empty bare repository that lends its (isolated) configuration to probes.
    probe_repo: gix::ThreadSafeRepository,
}

impl Inner {
    fn settings(&self) -> Settings<'_> {
        Settings {
            http: &self.http,
            timeout: self.options.timeout,
            ssh_config: self.options.ssh_config.as_deref(),
        }
    }
}

impl Engine {
    /// An engine storing its caches under `options.storage_dir` (created if missing).
    pub fn new(options: EngineOptions) -> Result<Self> {
        let caches = Caches::new(&options.storage_dir, options.cache_limits)?;
        let probe_repo = cache::open_or_init(&options.storage_dir.join("probe.git"))?.into_sync();
        Ok(Engine {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
                options,
                http: Arc::default(),
                caches,
                probe_repo,
            }),
        })
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Resolve `spec`'s branch head on the remote without downloading objects.
    pub async fn probe(&self, spec: &RemoteSpec) -> Result<Head> {
        let owned = spec.clone();
        self.run(spec, probe::ACTION, true, move |inner, abort| {
            let repo = inner.probe_repo.to_thread_local();
            probe::probe(&owned, &repo, &inner.settings(), abort)
        })
        .await
    }

    /// Bring `spec`'s head commit into the repository's cache (shallow the first time, incremental after).
    pub async fn fetch(&self, spec: &RemoteSpec) -> Result<FetchOutcome> {
        let owned = spec.clone();
        self.run(spec, fetch::ACTION, true, move |inner, abort| {
            fetch::fetch(&owned, &inner.caches, &inner.settings(), abort)
        })
        .await
    }

    /// Subject, author and time of commit `sha`, which a previous [`Engine::fetch`] of `spec` brought in.
    pub async fn commit_info(&self, spec: &RemoteSpec, sha: &str) -> Result<CommitInfo> {
        let id = commit::parse_id(sha)?;
        let owned = spec.clone();
        self.run(spec, "read a commit of", false, move |inner, _| {
            inner.caches.read(&owned.url, |repo| commit::read(repo, id))
        })
        .await
    }

    /// Export the tree of commit `sha` (fetched before) as a deterministic tar.gz at `out`.
    pub async fn export(&self, spec: &RemoteSpec, sha: &str, out: &Path) -> Result<Export> {
        let id = commit::parse_id(sha)?;
        let owned = spec.clone();
        let out = out.to_path_buf();
        self.run(spec, "export a commit of", false, move |inner, abort| {
            inner
                .caches
                .read(&owned.url, |repo| export::export(repo, id, &out, abort))
        })
        .await
    }

    /// Run `work` on the blocking pool once a permit is free. Network work gets the engine's deadline;
    /// missing it or dropping the returned future aborts the work: the git:// socket is shut, the ssh or
    /// `git upload-pack` process killed, pack reception and archive writing stop at the interrupt flag. An
    /// HTTP request already sent cannot be interrupted from here; the client's own timeout (the same
    /// deadline) ends it, and its permit is held until then.
    async fn run<T: Send + 'static>(
        &self,
        spec: &RemoteSpec,
        action: &str,
        network: bool,
        work: impl FnOnce(&Inner, &Abort) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::new(ErrorKind::Cancelled, "the git engine is shutting down"))?;
        let abort = Arc::new(Abort::default());
        let on_drop = AbortOnDrop(Some(Arc::clone(&abort)));
        let inner = Arc::clone(&self.inner);
        let task_abort = Arc::clone(&abort);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&inner, &task_abort)
        });
        let deadline = if network {
            self.inner.options.timeout
        } else {
            Duration::MAX
        };
        let result = match tokio::time::timeout(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Error::new(
                ErrorKind::Storage,
                format!("git operation failed unexpectedly: {join}"),
            )),
            Err(_) => {
                abort.abort();
                let ctx = Context {
                    spec,
                    action,
                    stderr: None,
                };
                Err(classify::message(
                    ErrorKind::Timeout,
                    &ctx,
                    &format!("no answer within {}", humantime::format_duration(deadline)),
                ))
            }
        };
        on_drop.disarm();
        result
    }
}

/// Aborts the blocking work when the caller's future is dropped before it finished.
struct AbortOnDrop(Option<Arc<Abort>>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(abort) = self.0.take() {
            abort.abort();
        }
    }
}
