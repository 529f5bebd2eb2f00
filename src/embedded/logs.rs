//! Where the local pod runner keeps container logs, and how they are read back: by the embedded API
//! server for `GET .../pods/NAME/log`, and by the node agent's kubelet endpoint for a real API server.
//! The file layout is the only contract between the runner and its readers.
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

/// `<state_dir>/pods/<namespace>/<pod>`: the Pod's directory, which holds its container logs.
pub(crate) fn pod_dir(state_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    state_dir.join("pods").join(namespace).join(pod)
}

/// `<state_dir>/pods/<namespace>/<pod>/<container>.log`: the runner appends, the API server reads.
pub fn container_log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_dir(state_dir, namespace, pod).join(format!("{container}.log"))
}

/// What part of a log a reader asked for (PodLogOptions, already validated).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogWindow {
    /// `tailLines`: only the last N lines of what is there now.
    pub(crate) tail: Option<usize>,
    /// `limitBytes`: stop after this many bytes in all.
    pub(crate) limit: Option<u64>,
}

/// A log read now: the first chunk to send, and where following would continue.
pub(crate) struct LogStart {
    /// What to send first.
    pub(crate) first: Vec<u8>,
    /// Bytes of the file already handled.
    pub(crate) offset: u64,
    /// Bytes `limitBytes` still allows after `first`.
    pub(crate) budget: u64,
}

/// Reads the log at `path` as `window` asks (an absent file reads as empty).
pub(crate) async fn read_log(path: &Path, window: LogWindow) -> LogStart {
    let content = read_from(path, 0).await;
    let mut first = match window.tail {
        Some(n) => tail_lines(&content, n),
        None => content.clone(),
    };
    let budget = window.limit.unwrap_or(u64::MAX);
    first.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
    LogStart {
        budget: budget - first.len() as u64,
        offset: content.len() as u64,
        first,
    }
}

/// Streams `start.first`, then what is appended to `path`, into `tx` until `ended()` says the
/// container has terminated (checked before each read, so the last read catches everything written),
/// the budget is spent, the reader goes away or `stop` fires.
pub(crate) async fn follow_log<F, Fut>(
    path: PathBuf,
    mut start: LogStart,
    mut ended: F,
    tx: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let first = std::mem::take(&mut start.first);
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    while start.budget > 0 {
        let done = ended().await;
        let mut buf = read_from(&path, start.offset).await;
        start.offset += buf.len() as u64;
        buf.truncate(usize::try_from(start.budget).unwrap_or(usize::MAX));
        start.budget -= buf.len() as u64;
        if !buf.is_empty() && tx.send(Bytes::from(buf)).await.is_err() {
            return;
        }
        if done {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// The last `n` lines of a log (a trailing newline does not start a line).
fn tail_lines(content: &[u8], n: usize) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return content[i + 1..].to_vec();
            }
        }
    }
    content.to_vec()
}

/// What the file holds from `offset` on (nothing if it cannot be read yet).
async fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut file) = tokio::fs::File::open(path).await
        && file.seek(SeekFrom::Start(offset)).await.is_ok()
        && file.read_to_end(&mut buf).await.is_err()
    {
        buf.clear();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n".to_vec());
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c".to_vec());
        assert_eq!(tail_lines(b"a\n", 5), b"a\n".to_vec());
    }
}
