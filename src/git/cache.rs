//! The per-repository bare caches under the storage directory, and keeping them small.
//!
//! One bare repository per URL at `<storage>/repos/<name>-<hash>`; each followed branch is a local branch
//! in it. gix never repacks, so every fetch adds a pack: a cache with too many packs or too many bytes is
//! replaced by a fresh shallow clone at its next fetch (built aside and swapped in, so a failed re-clone
//! keeps the old cache). So is a cache whose incremental fetch timed out.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::remote::RepoUrl;

/// Limits past which a cache is rebuilt from scratch.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Total bytes of objects in one cache.
    pub max_bytes: u64,
    /// Number of pack files in one cache.
    pub max_packs: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_bytes: 1 << 30,
            max_packs: 64,
        }
    }
}

/// The caches of one storage directory.
pub(crate) struct Caches {
    root: PathBuf,
    limits: CacheLimits,
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl Caches {
    /// Caches under `storage/repos`, created if missing; leftovers of interrupted re-clones are removed.
    pub(super) fn new(storage: &Path, limits: CacheLimits) -> Result<Self> {
        let root = storage.join("repos");
        std::fs::create_dir_all(&root).map_err(|e| Error::storage(format!("creating {}", root.display()), e))?;
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(Caches {
            root,
            limits,
            locks: Mutex::default(),
        })
    }

    /// The cache directory for `url`: readable name plus a hash of the whole URL.
    pub(super) fn dir(&self, url: &RepoUrl) -> PathBuf {
        let text = url.to_string();
        let hash = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        let name: String = url
            .path()
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(40)
            .collect();
        self.root
            .join(format!("{}-{hash}.git", if name.is_empty() { "repo" } else { &name }))
    }

    /// The lock serialising writers (fetch) and readers (export) of one cache within this process.
    pub(super) fn lock(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(dir.to_path_buf()).or_default())
    }

    /// Run `read` on the cache of `url` under its lock, so that no fetch replaces it meanwhile.
    pub(super) fn read<T>(&self, url: &RepoUrl, read: impl FnOnce(&gix::Repository) -> Result<T>) -> Result<T> {
        let dir = self.dir(url);
        let lock = self.lock(&dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        read(&open(&dir)?)
    }

    /// Whether `dir` has grown past the limits.
    pub(super) fn over_limits(&self, dir: &Path) -> bool {
        let (bytes, packs) = usage(dir);
        bytes > self.limits.max_bytes || packs > self.limits.max_packs
    }

    /// A fresh, empty directory next to `dir` to build a replacement cache in.
    pub(super) fn scratch_dir(&self, dir: &Path) -> PathBuf {
        use std::hash::{BuildHasher, RandomState};
        let salt = RandomState::new().hash_one(dir);
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{salt:016x}"));
        dir.with_file_name(name)
    }
}

/// Left in a cache whose incremental fetch timed out. A deep history rewrite can make an incremental
/// fetch download most of the new history, and fail the same way on every retry; a shallow rebuild
/// (depth 1) does not.
const RECLONE_MARKER: &str = "cdkube-reclone";

/// Ask for `dir` to be rebuilt from scratch at its next fetch.
pub(crate) fn request_reclone(dir: &Path) {
    // Best effort: if the marker cannot be written the next fetch is incremental again, as before.
    let _ = std::fs::write(dir.join(RECLONE_MARKER), b"");
}

/// Whether a rebuild of `dir` was asked for.
pub(crate) fn reclone_requested(dir: &Path) -> bool {
    dir.join(RECLONE_MARKER).exists()
}

/// Open the bare repository at `dir`, isolated from user and system git configuration.
pub(crate) fn open(dir: &Path) -> Result<gix::Repository> {
    gix::open_opts(dir, gix::open::Options::isolated())
        .map_err(|e| Error::storage(format!("opening cache {}", dir.display()), e))
}

/// Open the bare repository at `dir`, creating it first if needed.
pub(crate) fn open_or_init(dir: &Path) -> Result<gix::Repository> {
    if dir.join("HEAD").is_file() {
        return open(dir);
    }
    gix::ThreadSafeRepository::init_opts(
        dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map(Into::into)
    .map_err(|e| Error::storage(format!("creating cache {}", dir.display()), e))
}

/// Open (or create) the cache at `dir` for a fetch: what a server sends cannot make gix allocate more than
/// `alloc_limit` bytes for one object (a pack may declare any object size).
pub(crate) fn open_for_fetch(dir: &Path, alloc_limit: u64) -> Result<gix::Repository> {
    open_or_init(dir)?;
    let options =
        gix::open::Options::isolated().config_overrides([format!("gitoxide.objects.allocLimit={alloc_limit}")]);
    gix::open_opts(dir, options).map_err(|e| Error::storage(format!("opening cache {}", dir.display()), e))
}

/// Replace `dir` with the finished cache at `fresh` (rename is atomic; the old one is removed after).
pub(crate) fn swap_in(fresh: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut old = dir.as_os_str().to_os_string();
        old.push(".tmp-old");
        let old = PathBuf::from(old);
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| Error::storage(format!("replacing {}", dir.display()), e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(fresh, dir).map_err(|e| Error::storage(format!("replacing {}", dir.display()), e))
}

/// Bytes under `objects/` and the number of pack files.
fn usage(dir: &Path) -> (u64, usize) {
    fn walk(path: &Path, bytes: &mut u64, packs: &mut usize) {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&entry.path(), bytes, packs);
            } else {
                *bytes += meta.len();
                if entry.path().extension().is_some_and(|e| e == "pack") {
                    *packs += 1;
                }
            }
        }
    }
    let (mut bytes, mut packs) = (0, 0);
    walk(&dir.join("objects"), &mut bytes, &mut packs);
    (bytes, packs)
}
