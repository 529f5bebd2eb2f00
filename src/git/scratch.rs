//! Temporary files of git operations (ssh keys and `known_hosts`): private directories under the storage
//! directory, named after the process that made them, so that a later start can remove what a killed
//! process left behind.
//!
//! A directory is `<parent>/<prefix><pid>-<random>`, created 0700 (its files are written 0600). Normally it is
//! removed when the operation ends, including on timeout or cancellation; only SIGKILL (or a power cut)
//! leaves one, and [`remove_stale`] removes those whose process is gone.
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The scratch directory of a storage directory, `<storage>/tmp`, created 0700; stale entries of dead
/// processes are removed.
pub(crate) fn prepare(storage: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = storage.join("tmp");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    // It may have existed with looser permissions.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    remove_stale(&dir, SSH);
    Ok(dir)
}

/// The prefix of ssh key directories.
pub(crate) const SSH: &str = "ssh-";

/// A new private directory `<parent>/<prefix><pid>-…` (0700), removed when the returned handle drops.
pub fn private_dir(parent: &Path, prefix: &str) -> io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
}

/// Remove the entries `<prefix><pid>-…` of `parent` that this user owns and whose process no longer runs.
/// Entries of running processes, of other users, and symlinks are left alone.
pub fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy(), prefix) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.uid() != me || meta.file_type().is_symlink() || running(pid) {
            continue;
        }
        let _ = if meta.is_dir() {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
    }
}

/// The pid in `<prefix><pid>-…`, if `name` has that form.
fn owner_pid(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Whether process `pid` exists (a process of another user counts).
fn running(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(owner_pid("ssh-4242-abc", SSH), Some(4242));
        assert_eq!(owner_pid("ssh-abc", SSH), None);
        assert_eq!(owner_pid("other-4242-abc", SSH), None);
    }

    #[test]
    fn only_leftovers_of_dead_processes_go() {
        let parent = tempfile::tempdir().unwrap();
        let mine = private_dir(parent.path(), SSH).unwrap();
        // Pid 2^22 + 1 is above Linux's pid_max limit: no process has it.
        let dead = parent.path().join("ssh-4194305-x");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("identity"), "key").unwrap();
        let unrelated = parent.path().join("notes");
        std::fs::write(&unrelated, "keep").unwrap();
        remove_stale(parent.path(), SSH);
        assert!(mine.path().exists(), "a running process keeps its directory");
        assert!(!dead.exists(), "a dead process's directory is removed");
        assert!(unrelated.exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(mine.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
