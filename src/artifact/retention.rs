//! Retention: delete stored artifacts that no Pipeline refers to any more.
//!
//! The caller (the controller) knows which digests are still wanted: the ones in Pipelines' status and of
//! runs not finished. Everything else goes, except files younger than a minimum age: an export inserted a
//! moment ago may not be recorded in any status yet, and deleting it would race its own Pipeline.
use std::collections::HashSet;
use std::io;
use std::time::{Duration, SystemTime};

use super::error::Error;
use super::store::Store;

/// What [`prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Artifacts deleted.
    pub removed: usize,
    /// Bytes those artifacts took.
    pub bytes_freed: u64,
    /// Artifacts left in place (wanted, or too young to delete).
    pub kept: usize,
}

/// Delete every artifact of `store` whose digest is not in `keep` and that is older than `min_age`.
pub fn prune(store: &Store, keep: &HashSet<String>, min_age: Duration) -> Result<PruneReport, Error> {
    let now = SystemTime::now();
    let mut report = PruneReport::default();
    for artifact in store.list()? {
        // A modification time in the future (clock step) counts as age zero: kept.
        let age = now.duration_since(artifact.modified).unwrap_or_default();
        if keep.contains(&artifact.digest) || age < min_age {
            report.kept += 1;
            continue;
        }
        match std::fs::remove_file(&artifact.path) {
            Ok(()) => {
                report.removed += 1;
                report.bytes_freed += artifact.size;
            }
            // Already gone: another prune got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", artifact.path, e)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn insert(store: &Store, n: u8, size: usize, age: Duration) {
        let temp = store.temp_path();
        std::fs::write(&temp, vec![b'x'; size]).unwrap();
        let path = store.insert(&temp, &digest(n)).unwrap();
        let file = std::fs::File::options().append(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn prune_removes_old_unwanted_artifacts_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = Duration::from_secs(3600);
        insert(&store, 1, 10, hour); // wanted
        insert(&store, 2, 20, hour); // unwanted and old: removed
        insert(&store, 3, 30, Duration::ZERO); // unwanted but fresh: kept
        let keep = HashSet::from([digest(1)]);
        let report = prune(&store, &keep, Duration::from_secs(60)).unwrap();
        assert_eq!(
            report,
            PruneReport {
                removed: 1,
                bytes_freed: 20,
                kept: 2
            }
        );
        assert!(store.contains(&digest(1)));
        assert!(!store.contains(&digest(2)));
        assert!(store.contains(&digest(3)));
        assert_eq!(store.total_bytes(), 40);
    }

    #[test]
    fn reinserting_renews_an_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = Duration::from_secs(3600);
        insert(&store, 4, 5, hour);
        let temp = store.temp_path();
        std::fs::write(&temp, b"12345").unwrap();
        store.insert(&temp, &digest(4)).unwrap();
        let report = prune(&store, &HashSet::new(), Duration::from_secs(60)).unwrap();
        assert_eq!(report.removed, 0, "a re-export is as fresh as a new one");
    }
}
