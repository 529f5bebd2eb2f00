//! A commit's tree as a deterministic tar.gz.
//!
//! gix-archive writes the tar: entries in tree order, fixed owner, modes 0644/0755, symlinks as symlinks
//! and one mtime (the commit time) for every entry; the gzip header carries the same mtime and no name. So
//! the same commit always gives the same bytes and the same sha256 digest.
//!
//! Three threads share the work: gix's stream thread reads and decodes blobs, the caller's thread builds
//! the tar, and a compressor thread gzips it in 128 KiB chunks (deflate is the slowest stage; fed whole
//! chunks rather than 512-byte tar records it is also a little tighter).
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use gix::ObjectId;
use sha2::{Digest, Sha256};

use super::bounds::Bounds;
use super::error::{Error, ErrorKind, Result};

/// A commit's tree exported as a tar.gz: what [`Engine::export`](super::Engine::export) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Where the tar.gz was written.
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// Write commit `id`'s tree from `repo` to `out` (atomically: a temporary file renamed into place).
pub(crate) fn export(repo: &gix::Repository, id: ObjectId, out: &Path, bounds: &Bounds) -> Result<Export> {
    let commit = super::commit::find(repo, id)?;
    let corrupt = |e: gix::Error| Error::new(ErrorKind::Storage, format!("cannot read the tree of commit {id}: {e}"));
    let tree = commit.tree_id().map_err(corrupt)?;
    let mtime = commit.time().map_err(corrupt)?.seconds;
    let (stream, _index) = repo.worktree_stream(tree).map_err(corrupt)?;

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |what: &str, e: std::io::Error| Error::storage(format!("{what} {}", out.display()), e);
    std::fs::create_dir_all(parent).map_err(|e| io("creating the directory of", e))?;
    let temp = tempfile::Builder::new()
        .prefix(".export-")
        .tempfile_in(parent)
        .map_err(|e| io("creating a temporary file for", e))?;
    let file = temp.reopen().map_err(|e| io("opening", e))?;
    let options = gix::worktree::archive::Options {
        format: gix::worktree::archive::Format::Tar,
        tree_prefix: None,
        modification_time: mtime,
    };
    let (sender, receiver) = sync_channel::<Vec<u8>>(4);
    let (archived, compressed) = std::thread::scope(|scope| {
        let compressor = scope.spawn(move || compress(receiver, file, mtime));
        let mut chunks = ChunkWriter {
            sender: Some(sender),
            chunk: Vec::with_capacity(CHUNK + 16 * 1024),
        };
        let archived = repo
            .worktree_archive(stream, &mut chunks, gix::progress::Discard, bounds.flag(), options)
            .map_err(ArchiveError::Archive)
            .and_then(|()| chunks.finish().map_err(ArchiveError::Write));
        drop(chunks);
        let compressed = compressor
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the compressor panicked")));
        (archived, compressed)
    });
    if let Err(e) = archived {
        return Err(match (bounds.is_stopped(), compressed) {
            (true, _) => Error::new(ErrorKind::Cancelled, format!("export of commit {id} was cancelled")),
            // The compressor's error is the cause; the archiver only saw its channel close.
            (false, Err(write)) => io("writing", write),
            (false, Ok(_)) => Error::new(
                ErrorKind::Storage,
                format!("cannot write the archive of commit {id}: {e}"),
            ),
        });
    }
    let (digest, size) = compressed.map_err(|e| io("writing", e))?;
    // No fsync: consumers verify the digest, and the same commit exports to the same bytes again.
    temp.persist(out).map_err(|e| io("renaming the archive to", e.error))?;
    Ok(Export {
        path: out.to_path_buf(),
        digest: format!("sha256:{}", hex::encode(digest)),
        size,
    })
}

/// Why the tar stage stopped: gix's archiver failed, or handing a chunk to the compressor did.
#[derive(Debug, thiserror::Error)]
enum ArchiveError {
    #[error(transparent)]
    Archive(gix::Error),
    #[error(transparent)]
    Write(std::io::Error),
}

/// Bytes handed to the compressor at a time.
const CHUNK: usize = 128 * 1024;

/// gzip the chunks from `chunks` into `file`; returns the sha256 and size of what was written.
fn compress(chunks: Receiver<Vec<u8>>, file: File, mtime: i64) -> std::io::Result<([u8; 32], u64)> {
    let mtime = u32::try_from(mtime).unwrap_or(0);
    let hashing = HashingWriter::new(std::io::BufWriter::with_capacity(64 * 1024, file));
    let mut gz = flate2::GzBuilder::new()
        .mtime(mtime)
        .write(hashing, flate2::Compression::default());
    for chunk in chunks {
        gz.write_all(&chunk)?;
    }
    let (mut file, digest, size) = gz.finish()?.finish();
    file.flush()?;
    Ok((digest, size))
}

/// Collects the tar stream into chunks for the compressor thread. Seeking is refused: a tar stream
/// written for gzip never seeks.
struct ChunkWriter {
    sender: Option<SyncSender<Vec<u8>>>,
    chunk: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK + 16 * 1024));
        match &self.sender {
            Some(sender) => sender
                .send(full)
                .map_err(|_| std::io::Error::other("the compressor stopped")),
            None => Err(std::io::Error::other("the archive is already finished")),
        }
    }

    /// Hand over the last chunk and close the channel, so the compressor can finish the gzip stream.
    fn finish(&mut self) -> std::io::Result<()> {
        self.send()?;
        self.sender = None;
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for ChunkWriter {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "archive output cannot seek",
        ))
    }
}

/// Hashes and counts what it writes.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
