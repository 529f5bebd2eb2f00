//! A commit's tree as a deterministic tar.gz.
//!
//! gix-archive writes entries in tree order with fixed owner, modes 0644/0755, symlinks as symlinks and one
//! mtime (the commit time) for every entry and the gzip header, so the same commit always gives the same
//! bytes and the same sha256 digest.
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gix::ObjectId;
use sha2::{Digest, Sha256};

use super::error::{Error, ErrorKind, Result};
use super::transport::Abort;

/// An exported tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Where the tar.gz was written.
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// Write commit `id`'s tree from `repo` to `out` (atomically: a temporary file renamed into place).
pub(crate) fn export(repo: &gix::Repository, id: ObjectId, out: &Path, abort: &Abort) -> Result<Artifact> {
    let commit = repo.find_commit(id).map_err(|e| {
        Error::new(ErrorKind::Storage, format!("commit {id} is not in the local cache (fetch it first): {e}"))
    })?;
    let corrupt = |e: gix::Error| Error::new(ErrorKind::Storage, format!("cannot read the tree of commit {id}: {e}"));
    let tree = commit.tree_id().map_err(corrupt)?;
    let mtime = commit.time().map_err(corrupt)?.seconds;
    let (stream, _index) = repo.worktree_stream(tree).map_err(corrupt)?;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = |what: &str, e: std::io::Error| Error::storage(format!("{what} {}", out.display()), e);
    std::fs::create_dir_all(parent).map_err(|e| io("creating the directory of", e))?;
    let temp = tempfile::Builder::new()
        .prefix(".export-")
        .tempfile_in(parent)
        .map_err(|e| io("creating a temporary file for", e))?;
    let mut writer = BufWriter::with_capacity(256 * 1024, HashingWriter::new(temp.reopen().map_err(|e| io("opening", e))?));
    let options = gix::worktree::archive::Options {
        format: gix::worktree::archive::Format::TarGz { compression_level: None },
        tree_prefix: None,
        modification_time: mtime,
    };
    repo.worktree_archive(stream, &mut writer, gix::progress::Discard, abort.flag(), options)
        .map_err(|e| match abort.is_aborted() {
            true => Error::new(ErrorKind::Cancelled, format!("export of commit {id} was cancelled")),
            false => Error::new(ErrorKind::Storage, format!("cannot write the archive of commit {id}: {e}")),
        })?;
    let hashing = writer.into_inner().map_err(|e| io("writing", e.into_error()))?;
    let (file, digest, size) = hashing.finish();
    file.sync_all().map_err(|e| io("syncing", e))?;
    temp.persist(out).map_err(|e| io("renaming the archive to", e.error))?;
    Ok(Artifact { path: out.to_path_buf(), digest: format!("sha256:{}", hex::encode(digest)), size })
}

/// Hashes and counts what it writes. Seeking is refused: tar.gz output is a pure stream.
struct HashingWriter {
    file: File,
    hasher: Sha256,
    size: u64,
}

impl HashingWriter {
    fn new(file: File) -> Self {
        HashingWriter { file, hasher: Sha256::new(), size: 0 }
    }

    fn finish(self) -> (File, [u8; 32], u64) {
        (self.file, self.hasher.finalize().into(), self.size)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for HashingWriter {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match pos {
            SeekFrom::Current(0) => Ok(self.size),
            _ => Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "archive output cannot seek")),
        }
    }
}
