//! Host processes as the tests see them: pids that Pods write into files, liveness via /proc
//! (a zombie counts as dead), the children of a process, and a child's run time and peak memory.
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
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

/// How a measured child process ended.
pub struct Measured {
    /// Its exit status (killed by SIGKILL if it ran past its limit).
    pub status: ExitStatus,
    /// What it wrote to stderr.
    pub stderr: String,
    /// From spawn to exit.
    pub elapsed: Duration,
    /// Its peak resident set size (`ru_maxrss` from wait4(2)), in KiB.
    pub peak_rss_kib: u64,
    /// Whether it had to be killed at its limit.
    pub killed: bool,
}

/// Run `command` (stdout discarded, stderr kept) in a process group of its own and reap it with wait4(2)
/// for its peak RSS (its own, not its children's); SIGKILL the group if it runs past `limit`, and whatever
/// of the group is left once it exited.
// The child is reaped with wait4(2), which std's `Child` does not know about.
#[allow(clippy::zombie_processes)]
pub fn run_measured(mut command: Command, limit: Duration) -> Measured {
    use std::os::unix::process::CommandExt;
    command.stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn the measured process");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let deadline = started + limit;
    let mut killed = false;
    let (status, peak_rss_kib) = loop {
        if !killed && Instant::now() >= deadline {
            // SAFETY: kill(2) on the child's own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            killed = true;
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it and `status` for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break (
                ExitStatus::from_raw(status),
                u64::try_from(usage.ru_maxrss).unwrap_or(0),
            );
        }
        assert_eq!(reaped, 0, "wait4 failed: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    // SAFETY: as above; the group may hold helpers (git-remote-http) that outlive their parent.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    Measured {
        status,
        stderr: reader.join().unwrap_or_default(),
        elapsed,
        peak_rss_kib,
        killed,
    }
}
