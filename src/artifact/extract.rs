//! Safe extraction of an artifact tar.gz into a directory.
//!
//! Every entry is checked before anything is written for it, and everything is written into a staging
//! directory inside the destination, moved into place only once the whole archive was accepted: a refused
//! archive leaves the destination as it was. Refused: absolute paths, `..` in a path, hard links, devices
//! and fifos, symlinks whose target could leave the destination, and entries written through a symlink
//! extracted before (a classic way to write outside the destination with two harmless-looking entries).
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use super::error::Error;

/// The name prefix of the staging directory in a destination directory.
pub(crate) const STAGING_PREFIX: &str = ".cdkube-staging-";
/// The name prefix of the downloaded archive in a destination directory.
pub(crate) const DOWNLOAD_PREFIX: &str = ".cdkube-download-";

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// Regular files written.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Extract the tar.gz `archive` into `dest` (which exists), refusing unsafe entries and archives that
/// unpack to more than `max_bytes`. On error `dest` is left as it was.
pub(crate) fn extract(archive: &Path, dest: &Path, max_bytes: u64) -> Result<Extracted, Error> {
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(dest)
        .map_err(|e| Error::io("create a staging directory in", dest, e))?;
    let file = fs::File::open(archive).map_err(|e| Error::io("open", archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let extracted = unpack(&mut tar, staging.path(), max_bytes)?;
    move_into(staging.path(), dest)?;
    Ok(extracted)
}

fn unpack<R: Read>(tar: &mut tar::Archive<R>, root: &Path, max_bytes: u64) -> Result<Extracted, Error> {
    let invalid = |source: io::Error| Error::InvalidArchive { source };
    let mut symlinks = HashSet::new();
    let mut extracted = Extracted::default();
    for entry in tar.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(rel) = check_path(&name, &entry.path().map_err(invalid)?, &symlinks)? else {
            continue;
        };
        let target = root.join(&rel);
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                extracted.bytes = extracted.bytes.saturating_add(entry.size());
                if extracted.bytes > max_bytes {
                    return Err(Error::UnpackedTooLarge { limit: max_bytes });
                }
                write_file(&mut entry, &target)?;
                extracted.files += 1;
            }
            EntryType::Directory => {
                fs::create_dir_all(&target).map_err(|e| Error::io("create the directory", &target, e))?
            }
            EntryType::Symlink => {
                let link = entry.link_name().map_err(invalid)?.map(|l| l.into_owned());
                let link = link.ok_or_else(|| Error::unsafe_entry(&name, "a symlink without a target"))?;
                check_symlink_target(&name, &rel, &link)?;
                create_parent(&target)?;
                std::os::unix::fs::symlink(&link, &target).map_err(|e| Error::io("create the symlink", &target, e))?;
                symlinks.insert(rel);
            }
            // Metadata records (pax global headers, e.g. git's commit id) describe, they do not create.
            EntryType::XGlobalHeader | EntryType::XHeader => {}
            EntryType::Link => return Err(Error::unsafe_entry(name, "hard links are not allowed")),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(Error::unsafe_entry(name, "device and fifo entries are not allowed"));
            }
            other => return Err(Error::unsafe_entry(name, format!("unsupported entry type {other:?}"))),
        }
    }
    Ok(extracted)
}

/// The entry's path relative to the destination, `None` for the root itself (`./`), or why it is refused.
fn check_path(name: &str, path: &Path, symlinks: &HashSet<PathBuf>) -> Result<Option<PathBuf>, Error> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(Error::unsafe_entry(name, "its path contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::unsafe_entry(name, "its path is absolute"));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    // The entry itself or any directory above it: writing there would follow the symlink.
    if let Some(link) = rel.ancestors().find(|a| symlinks.contains(*a)) {
        return Err(Error::unsafe_entry(
            name,
            format!(
                "it would be written through the symlink {:?}",
                link.display().to_string()
            ),
        ));
    }
    Ok(Some(rel))
}

/// Refuse symlink targets that could resolve outside the destination: absolute ones, and relative ones
/// climbing above it. `..` is accepted only before the first name, where it climbs real directories (no
/// entry is written through a symlink); after a name, that name could itself be a symlink, so
/// `a/../..` need not mean what it says and is refused.
fn check_symlink_target(name: &str, rel: &Path, target: &Path) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::unsafe_entry(
            name,
            format!("symlink target {:?} {why}", target.display().to_string()),
        ))
    };
    // The link lives in rel's parent directory: that many levels can be climbed.
    let mut room = rel.components().count().saturating_sub(1);
    let mut named = false;
    let mut empty = true;
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return refuse("is absolute"),
            Component::CurDir => {}
            Component::ParentDir if named => return refuse("has '..' after a name"),
            Component::ParentDir if room == 0 => return refuse("leaves the destination"),
            Component::ParentDir => room -= 1,
            Component::Normal(_) => named = true,
        }
        empty = false;
    }
    if empty {
        return refuse("is empty");
    }
    Ok(())
}

fn write_file(entry: &mut tar::Entry<'_, impl Read>, target: &Path) -> Result<(), Error> {
    create_parent(target)?;
    let header = entry.header();
    // Keep the executable bits; never setuid/setgid/sticky or group/world write; always owner read/write,
    // so that the build can change and delete its sources.
    let mode = (header.mode().unwrap_or(0o644) & 0o755) | 0o600;
    let mtime = header.mtime().ok();
    let mut file = fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(|e| Error::io("create", target, e))?;
    io::copy(entry, &mut file).map_err(|e| Error::io("write", target, e))?;
    if let Some(seconds) = mtime {
        // The export's deterministic mtime (the commit time), for build tools that compare times.
        let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
    }
    Ok(())
}

fn create_parent(target: &Path) -> Result<(), Error> {
    match target.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(|e| Error::io("create the directory", parent, e)),
        None => Ok(()),
    }
}

/// Move the staging directory's entries into `dest`, after checking that none of them exists there.
fn move_into(staging: &Path, dest: &Path) -> Result<(), Error> {
    let names = fs::read_dir(staging)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io("list", staging, e))?;
    if let Some(existing) = names
        .iter()
        .map(|n| dest.join(n))
        .find(|p| fs::symlink_metadata(p).is_ok())
    {
        return Err(Error::DestinationConflict { path: existing });
    }
    for name in names {
        let (from, to) = (staging.join(&name), dest.join(&name));
        fs::rename(&from, &to).map_err(|e| Error::io("move into place", to, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str, symlinks: &[&str]) -> String {
        let set = symlinks.iter().map(PathBuf::from).collect();
        check_path(path, Path::new(path), &set).unwrap_err().to_string()
    }

    #[test]
    fn paths_must_stay_inside() {
        let none = HashSet::new();
        assert_eq!(
            check_path("a/./b", Path::new("a/./b"), &none).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(check_path("./", Path::new("./"), &none).unwrap(), None);
        assert!(refused("../evil", &[]).contains("'..'"));
        assert!(refused("a/../../evil", &[]).contains("'..'"));
        assert!(refused("/abs", &[]).contains("absolute"));
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        assert!(refused("link/file", &["link"]).contains("through the symlink"));
        assert!(refused("a/link/deep/file", &["a/link"]).contains("through the symlink"));
        assert!(refused("link", &["link"]).contains("through the symlink"));
        let set = HashSet::from([PathBuf::from("link")]);
        assert!(check_path("linked/file", Path::new("linked/file"), &set).is_ok());
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let ok = |rel: &str, target: &str| check_symlink_target(rel, Path::new(rel), Path::new(target));
        assert!(ok("a/b/link", "../../file").is_ok());
        assert!(ok("a/link", "../b/c").is_ok());
        assert!(ok("link", "sub/./file").is_ok());
        assert!(ok("link", ".").is_ok());
        for (rel, target, why) in [
            ("link", "/etc/passwd", "absolute"),
            ("link", "..", "leaves"),
            ("a/link", "../../outside", "leaves"),
            ("a/link", "b/../..", "after a name"),
            ("link", "s/..", "after a name"),
            ("link", "", "empty"),
        ] {
            let err = ok(rel, target).unwrap_err().to_string();
            assert!(err.contains(why), "{rel} -> {target}: {err}");
        }
    }
}
