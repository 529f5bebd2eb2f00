//! The async face of the git engine: every blocking gix call runs on tokio's blocking pool, at most
//! `max_concurrency` at a time, within the operation's [`Bounds`] (deadline and byte caps), and stops when
//! its future is dropped (cancellation).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::bounds::{self, Bounds, Cap, Stop};
use super::cache::{self, CacheLimits, Caches};
use super::classify::{self, Context};
use super::commit::{self, CommitInfo};
use super::error::{Error, ErrorKind, Result};
use super::export::{self, Export};
use super::fetch::{self, FetchOutcome};
use super::http_pool::HttpPool;
use super::probe::{self, Head};
use super::remote::RemoteSpec;
use super::scratch;
use super::transport::Settings;

/// The default deadline of one network operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest deadline an operation may have; longer ones are refused rather than read as "no deadline".
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The default cap on a ref advertisement (capabilities and refs listed by a probe or fetch).
pub const DEFAULT_MAX_REFS_BYTES: u64 = 8 << 20;

/// The default cap on the pack one fetch receives.
pub const DEFAULT_MAX_PACK_BYTES: u64 = 1 << 30;

/// How long a stopped operation gets to release its connection, process and files before the engine
/// reports the stop anyway.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// How an [`Engine`] works.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where the per-repository caches live (`<storage_dir>/repos/…`), and the private `tmp/` directory
    /// for ssh key files.
    pub storage_dir: PathBuf,
    /// Deadline of each network operation (probe, fetch), from connecting to the last byte. Default 60s;
    /// more than 0 and at most [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// Blocking git operations running at once. Default 8.
    pub max_concurrency: usize,
    /// When a cache is rebuilt from scratch.
    pub cache_limits: CacheLimits,
    /// An OpenSSH client config file (e.g. `Host` aliases and ports) used for ssh remotes; by default none is
    /// read. Host key checking and identity always come from the Secret whatever this file says.
    pub ssh_config: Option<PathBuf>,
    /// Bytes a server may send while listing refs (its capabilities and ref advertisement). Default 8 MiB:
    /// a probe asks for one branch, but a server that ignores the request, or streams refs forever, is cut
    /// off here.
    pub max_refs_bytes: u64,
    /// Bytes a server may send for the pack of one fetch; also the largest object a fetch inflates in
    /// memory. Default 1 GiB.
    pub max_pack_bytes: u64,
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
            max_refs_bytes: DEFAULT_MAX_REFS_BYTES,
            max_pack_bytes: DEFAULT_MAX_PACK_BYTES,
        }
    }

    fn check(&self) -> Result<()> {
        check_timeout(self.timeout)?;
        if self.max_refs_bytes == 0 || self.max_pack_bytes == 0 {
            return Err(Error::invalid(
                "the size limits of git operations must be more than 0 bytes",
            ));
        }
        Ok(())
    }
}

/// Refuse a deadline of zero or one beyond [`MAX_TIMEOUT`], instead of reading it as "no deadline".
pub fn check_timeout(timeout: Duration) -> Result<Duration> {
    if timeout.is_zero() {
        return Err(Error::invalid("the timeout must be more than 0s"));
    }
    if timeout > MAX_TIMEOUT {
        return Err(Error::invalid(format!(
            "the timeout {} is longer than the longest allowed, {}",
            humantime::format_duration(timeout),
            humantime::format_duration(MAX_TIMEOUT)
        )));
    }
    Ok(timeout)
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
    /// `<storage>/tmp`, for ssh key files.
    scratch: PathBuf,
}

impl Inner {
    fn settings<'a>(&'a self, bounds: &'a Arc<Bounds>) -> Settings<'a> {
        Settings {
            http: &self.http,
            timeout: self.options.timeout,
            ssh_config: self.options.ssh_config.as_deref(),
            scratch: &self.scratch,
            max_pack_bytes: self.options.max_pack_bytes,
            bounds,
        }
    }

    /// The bounds of a network operation starting now.
    fn network_bounds(&self) -> Bounds {
        let refs = Cap {
            what: bounds::REFS,
            limit: self.options.max_refs_bytes,
            option: "max_refs_bytes",
        };
        Bounds::new(Instant::now().checked_add(self.options.timeout), refs)
    }
}

impl Engine {
    /// An engine storing its caches under `options.storage_dir` (created if missing).
    /// Leftover temporary files of a killed process are removed. Refuses a zero or unrepresentable timeout.
    pub fn new(options: EngineOptions) -> Result<Self> {
        options.check()?;
        let caches = Caches::new(&options.storage_dir, options.cache_limits)?;
        let probe_repo = cache::open_or_init(&options.storage_dir.join("probe.git"))?.into_sync();
        let scratch = scratch::prepare(&options.storage_dir)
            .map_err(|e| Error::storage(format!("creating {}", options.storage_dir.join("tmp").display()), e))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
                options,
                http: Arc::default(),
                caches,
                probe_repo,
                scratch,
            }),
        })
    }

    /// Wait until no operation runs, at most `timeout`; returns whether none does. An operation whose
    /// future was dropped keeps running for the moment it takes to close its connection, kill its process
    /// and remove its key files: a process about to exit waits for that here.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.inner.options.max_concurrency.max(1)).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(timeout, self.inner.permits.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Resolve `spec`'s branch head on the remote without downloading objects.
    pub async fn probe(&self, spec: &RemoteSpec) -> Result<Head> {
        let owned = spec.clone();
        self.run(spec, probe::ACTION, true, move |inner, bounds| {
            let repo = inner.probe_repo.to_thread_local();
            probe::probe(&owned, &repo, &inner.settings(bounds))
        })
        .await
    }

    /// Bring `spec`'s head commit into the repository's cache (shallow the first time, incremental after).
    pub async fn fetch(&self, spec: &RemoteSpec) -> Result<FetchOutcome> {
        let owned = spec.clone();
        self.run(spec, fetch::ACTION, true, move |inner, bounds| {
            fetch::fetch(&owned, &inner.caches, &inner.settings(bounds))
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
        self.run(spec, "export a commit of", false, move |inner, bounds| {
            inner
                .caches
                .read(&owned.url, |repo| export::export(repo, id, &out, bounds))
        })
        .await
    }

    /// Run `work` on the blocking pool once a permit is free. Network work gets the engine's deadline and
    /// byte caps ([`Bounds`]); missing the deadline or dropping the returned future stops the work: the
    /// git:// socket is shut, the ssh or `git upload-pack` process group killed, the HTTP request dropped,
    /// pack reception and archive writing stop at the interrupt flag. After the deadline the engine waits
    /// (briefly) for the work to release what it held, so a timed-out operation leaves nothing running.
    async fn run<T: Send + 'static>(
        &self,
        spec: &RemoteSpec,
        action: &str,
        network: bool,
        work: impl FnOnce(&Inner, &Arc<Bounds>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::new(ErrorKind::Cancelled, "the git engine is shutting down"))?;
        let bounds = Arc::new(match network {
            true => self.inner.network_bounds(),
            false => Bounds::local(),
        });
        let on_drop = StopOnDrop(Some(Arc::clone(&bounds)));
        let inner = Arc::clone(&self.inner);
        let task_bounds = Arc::clone(&bounds);
        let mut task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&inner, &task_bounds)
        });
        let finished = match bounds.deadline() {
            Some(deadline) => tokio::select! {
                joined = &mut task => Some(joined),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => None,
            },
            None => Some((&mut task).await),
        };
        let joined = match finished {
            Some(joined) => Some(joined),
            None => {
                bounds.stop(Stop::Deadline);
                let released = tokio::time::timeout(RELEASE_GRACE, &mut task).await.ok();
                if released.is_none() {
                    tracing::warn!(url = %spec.url, "a timed-out git operation did not stop within {RELEASE_GRACE:?}");
                }
                released
            }
        };
        on_drop.disarm();
        let ctx = Context {
            spec,
            action,
            stderr: None,
            remote: Vec::new(),
        };
        let result = match joined {
            Some(Ok(result)) => result,
            Some(Err(join)) => Err(Error::new(
                ErrorKind::Storage,
                format!("git operation failed unexpectedly: {join}"),
            )),
            None => Err(Error::new(ErrorKind::Timeout, String::new())),
        };
        result.map_err(|err| match bounds.stopped() {
            Some(stop) => self.stopped(stop, &ctx),
            None => err,
        })
    }

    /// The error of an operation stopped for `stop`, whatever its reads failed with.
    fn stopped(&self, stop: Stop, ctx: &Context<'_>) -> Error {
        match stop {
            Stop::Deadline => classify::message(
                ErrorKind::Timeout,
                ctx,
                &format!(
                    "no complete answer within {}",
                    humantime::format_duration(self.inner.options.timeout)
                ),
            ),
            Stop::Cancelled => classify::message(ErrorKind::Cancelled, ctx, ""),
            Stop::Cap(cap) => classify::message(ErrorKind::TooLarge, ctx, &cap.to_string()),
        }
    }
}

/// Stops the blocking work when the caller's future is dropped before it finished.
struct StopOnDrop(Option<Arc<Bounds>>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(bounds) = self.0.take() {
            bounds.stop(Stop::Cancelled);
        }
    }
}
