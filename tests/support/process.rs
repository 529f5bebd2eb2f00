//! Host processes as the tests see them: pids that Pods write into files, liveness via /proc
//! (a zombie counts as dead), the children of a process, and a child's run time and peak memory.
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
    /// Its peak resident set size (VmHWM), in KiB, as last sampled before it exited.
    pub peak_rss_kib: u64,
    /// Whether it had to be killed at its limit.
    pub killed: bool,
}

/// Run `command` (stdout discarded, stderr kept) in a process group of its own, sampling its peak RSS
/// (VmHWM in /proc, every 2ms: wait4's ru_maxrss would count the memory of this test process, which the
/// child shares until it execs); SIGKILL the group if it runs past `limit`, and whatever of the group is
/// left once it exited.
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
    let pid = child.id();
    let (mut peak_rss_kib, mut killed) = (0, false);
    let status = loop {
        // VmHWM only grows; once the process exited there is none to read.
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        if let Some(status) = child.try_wait().expect("wait for the measured process") {
            break status;
        }
        if !killed && started.elapsed() >= limit {
            kill_group(pid);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    // The group may hold helpers (git-remote-http) that outlive their parent.
    kill_group(pid);
    Measured {
        status,
        stderr: reader.join().unwrap_or_default(),
        elapsed,
        peak_rss_kib,
        killed,
    }
}

/// The `VmHWM` (peak resident memory) of `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on the process group the child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}
