//! Host processes as the tests see them: pids that Pods write into files, liveness via /proc
//! (a zombie counts as dead), and the children of a process.
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a process may take to appear or to die.
pub const WAIT: Duration = Duration::from_secs(60);

/// The pid in `file` once it is completely written (the writer ends it with a newline).
pub fn read_pid(file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(file).ok()?;
    if !text.ends_with('\n') {
        return None;
    }
    text.trim().parse().ok()
}

/// Waits (blocking) until `file` holds a pid, and returns it.
pub fn wait_pid(file: &Path) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pid) = read_pid(file) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never written", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (on the async runtime) until `file` holds a pid, and returns it.
pub async fn wait_pid_async(file: &Path) -> i32 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(pid) = read_pid(file) {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never written",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` runs. A zombie still has a /proc entry; its state letter is Z.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Waits (blocking) until `pid` is dead; panics after `timeout`.
pub fn wait_dead(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (on the async runtime) until `pid` is dead; panics after [`WAIT`].
pub async fn wait_dead_async(pid: i32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive(pid) {
        assert!(tokio::time::Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(") ")
            .next()
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}
