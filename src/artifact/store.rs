//! The content-addressed artifact store: `<dir>/sha256/<hex>.tar.gz`, written by rename from `<dir>/tmp/`.
//!
//! A file is only ever visible under its content address once complete (rename is atomic within one file
//! system), so the server never streams a half-written export. The store is a cache: after a restart on a
//! fresh volume it is empty, and the server rebuilds what is asked for.
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::error::Error;

/// The only digest algorithm the store knows, as written before the `:` of a digest.
const ALGORITHM: &str = "sha256";
/// The file name suffix of stored artifacts.
const SUFFIX: &str = ".tar.gz";

/// A content-addressed directory of tar.gz artifacts. Cheap to clone; clones share the directory.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
}

/// One artifact in the store, as listed by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Where it is stored.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was inserted (or last re-inserted).
    pub modified: SystemTime,
}

/// The hex part of `digest` if it is `sha256:` followed by 64 lowercase hex digits.
pub fn parse_digest(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix(ALGORITHM)?.strip_prefix(':')?;
    is_sha256_hex(hex).then_some(hex)
}

/// Whether `hex` is 64 lowercase hex digits (uppercase is refused so that one digest has one spelling).
pub(crate) fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// Open (creating, user-only 0700) the store in `dir`, and remove stale temporary files that an
    /// interrupted export left in `tmp/`.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let paths = Paths {
            root: dir.to_path_buf(),
            objects: dir.join(ALGORITHM),
            tmp: dir.join("tmp"),
        };
        for d in [&paths.root, &paths.objects, &paths.tmp] {
            create_private_dir(d)?;
        }
        clear_dir(&paths.tmp)?;
        Ok(Store { inner: Arc::new(paths) })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// A fresh, unique path under `tmp/` for an export to write to before [`Store::insert`].
    pub fn temp_path(&self) -> PathBuf {
        self.inner.tmp.join(format!("{}{SUFFIX}", uuid::Uuid::new_v4()))
    }

    /// Move the finished file `temp` to the content address of `digest` and return that path. The digest
    /// is the caller's (the export computed it while writing) and is not recomputed here. If the artifact
    /// is already stored, `temp` is removed and the stored file's mtime renewed, so that [`prune`]'s
    /// minimum age protects it as a fresh export.
    ///
    /// [`prune`]: super::prune
    pub fn insert(&self, temp: &Path, digest: &str) -> Result<PathBuf, Error> {
        let hex = parse_digest(digest).ok_or_else(|| Error::InvalidDigest(digest.to_owned()))?;
        let target = self.object_path(hex);
        if target.exists() {
            fs::remove_file(temp).map_err(|e| Error::io("remove", temp, e))?;
            touch(&target)?;
            return Ok(target);
        }
        match fs::rename(temp, &target) {
            Ok(()) => Ok(target),
            // A temp file on another file system (not from temp_path): copy next to the target first, so
            // that the final step is still an atomic rename.
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => self.copy_in(temp, &target),
            Err(e) => Err(Error::io("rename into the store", temp, e)),
        }
    }

    /// The stored file of `digest`, if present (and `digest` well-formed).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        let path = self.object_path(parse_digest(digest)?);
        path.is_file().then_some(path)
    }

    /// Whether `digest` is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_some()
    }

    /// The total size of the stored artifacts, in bytes (0 if the directory cannot be read).
    pub fn total_bytes(&self) -> u64 {
        self.list().map(|all| all.iter().map(|a| a.size).sum()).unwrap_or(0)
    }

    /// Every stored artifact. Files that are not named like an artifact are skipped.
    pub fn list(&self) -> Result<Vec<StoredArtifact>, Error> {
        let dir = &self.inner.objects;
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let name = entry.file_name();
            let Some(hex) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .filter(|h| is_sha256_hex(h))
            else {
                continue;
            };
            // Removed between read_dir and metadata (a concurrent prune): not there any more.
            let Ok(meta) = entry.metadata() else { continue };
            out.push(StoredArtifact {
                digest: format!("{ALGORITHM}:{hex}"),
                path: entry.path(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    fn object_path(&self, hex: &str) -> PathBuf {
        self.inner.objects.join(format!("{hex}{SUFFIX}"))
    }

    fn copy_in(&self, temp: &Path, target: &Path) -> Result<PathBuf, Error> {
        let local = self.temp_path();
        fs::copy(temp, &local).map_err(|e| Error::io("copy into the store", temp, e))?;
        fs::rename(&local, target).map_err(|e| Error::io("rename into the store", &local, e))?;
        fs::remove_file(temp).map_err(|e| Error::io("remove", temp, e))?;
        Ok(target.to_path_buf())
    }
}

/// Create `dir` if missing, and make it user-only: artifacts are private source code.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(Error::io("create the directory", dir, e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("restrict", dir, e))
}

/// Remove everything in `dir` (the leftovers of interrupted exports).
fn clear_dir(dir: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io("list", dir, e))?.path();
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the stale file", path, e)),
        }
    }
    Ok(())
}

fn touch(path: &Path) -> Result<(), Error> {
    fs::File::options()
        .append(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| Error::io("renew the modification time of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn digest() -> String {
        format!("sha256:{HEX}")
    }

    #[test]
    fn digests_have_one_spelling() {
        assert_eq!(parse_digest(&digest()), Some(HEX));
        assert_eq!(parse_digest(&digest().to_uppercase()), None);
        assert_eq!(parse_digest(&format!("sha256:{}", HEX.to_uppercase())), None);
        assert_eq!(parse_digest(&format!("sha512:{HEX}")), None);
        assert_eq!(parse_digest(&format!("sha256:{}", &HEX[1..])), None);
        assert_eq!(parse_digest(HEX), None);
        assert_eq!(parse_digest("sha256:../../etc/passwd"), None);
    }

    #[test]
    fn open_creates_a_private_layout_and_clears_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(root.join("sha256").is_dir());
        let stale = store.temp_path();
        fs::write(&stale, b"half an export").unwrap();
        Store::open(&root).unwrap();
        assert!(!stale.exists(), "stale temp files are removed at open");
    }

    #[test]
    fn insert_moves_into_the_content_address_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.contains(&digest()));
        let temp = store.temp_path();
        fs::write(&temp, b"twelve bytes").unwrap();
        let stored = store.insert(&temp, &digest()).unwrap();
        assert_eq!(stored, dir.path().join(format!("sha256/{HEX}.tar.gz")));
        assert!(!temp.exists());
        assert_eq!(store.path(&digest()), Some(stored.clone()));
        assert_eq!(store.total_bytes(), 12);

        let again = store.temp_path();
        fs::write(&again, b"twelve bytes").unwrap();
        assert_eq!(store.insert(&again, &digest()).unwrap(), stored);
        assert!(!again.exists(), "a duplicate's temp file is removed");
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn insert_refuses_bad_digests_and_keeps_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let temp = store.temp_path();
        fs::write(&temp, b"x").unwrap();
        let err = store.insert(&temp, "sha256:nothex").unwrap_err();
        assert!(matches!(err, Error::InvalidDigest(_)), "{err}");
        assert!(temp.exists());
        assert_eq!(store.path("sha256:nothex"), None);
    }
}
