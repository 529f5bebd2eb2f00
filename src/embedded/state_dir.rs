//! The state directory of the local control plane: the kubeconfig, Pod workspaces and logs, and the
//! only ways files are written there. Pod processes run as the same user and can write their own
//! workspace, so nothing here follows a symlink at the last component (a Pod that swaps its log file
//! for a link to `~/.bashrc` gets its writes refused, not redirected).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates the state directory (and missing parents) readable by the user only: it holds the
/// kubeconfig, Pod workspaces and logs, and logs may show Secret values. An existing directory must
/// belong to this user and not be a symlink; one open to others is tightened to 0700.
pub(crate) fn create_state_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let refuse = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why.to_string(),
        ))
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path);
        }
        Err(e) => return Err(e),
        Ok(meta) if meta.file_type().is_symlink() => return refuse("it is a symlink; give a real directory"),
        Ok(meta) if !meta.is_dir() => return refuse("it is not a directory"),
        // SAFETY: geteuid has no preconditions.
        Ok(meta) if meta.uid() != unsafe { libc::geteuid() } => {
            return refuse("it belongs to another user");
        }
        Ok(meta) if meta.mode() & 0o077 != 0 => {
            tracing::warn!(dir = %path.display(), mode = format!("{:o}", meta.mode() & 0o777), "state directory was open to other users; tightened to 0700");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(_) => {}
    }
    Ok(())
}

/// Writes `contents` to `path`, mode 0600 for a new file, replacing what was there; a symlink at
/// `path` is refused (`ELOOP`).
pub(crate) fn write_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(contents)
}

/// Replaces `path` with `contents` (mode 0600) by renaming a new file over it, so a reader sees the
/// old file or the whole new one, never a part; a symlink at `path` is replaced, not followed.
pub(crate) fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Opens `path` for appending, creating it 0600; a symlink at `path` is refused (`ELOOP`).
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_state_directory_is_tightened_and_a_symlink_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        create_state_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(create_state_dir(&link).is_err());
    }

    #[test]
    fn files_are_not_written_through_symlinks() {
        let scratch = tempfile::tempdir().unwrap();
        let victim = scratch.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let planted = scratch.path().join("build.log");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(write_file(&planted, b"x").is_err());
        assert!(open_append(&planted).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let fresh = scratch.path().join("fresh");
        write_file(&fresh, b"ok").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o600);
    }
}
