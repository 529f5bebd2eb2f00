//! The one toolkit of the behaviour tests; include it with `mod support;` from a test file.
//!
//! - Loopback git servers: upstream repositories driven by the real `git`, `git daemon`,
//!   `git http-backend` behind lighttpd (open, basic auth, bearer token, HTTPS with a private CA),
//!   OpenSSH `sshd` with generated keys, and a socket that accepts but never answers. Every server
//!   listens on 127.0.0.1 on a free port, lives in its own temporary directory and is killed when its
//!   handle is dropped.
//! - [`hostile`]: scripted smart-HTTP and git:// servers that drip, flood, send endless packs, garbage
//!   or errors of their own, for the hostile-peer tests.
//! - [`cluster`]: the embedded API server (and pod runner) in a temporary state directory.
//! - [`kubectl`]: the real kubectl, and the rule for when it is missing.
//! - [`process`]: pids, liveness, children.
//! - [`raw`]: one request through kube-rs with headers of the test's choosing (Accept).
//! - [`wire`]: raw HTTP/1.1 over TLS for hostile clients, and a `/healthz` stopwatch.
//! - [`bounded`]: the cdkube binary run with a deadline.
//! - [`realkube`]: the real control plane (etcd, kube-apiserver, kube-controller-manager) of tests/realkube.
//! - [`differential`]: one raw request to two API servers, answers reduced for comparison.
//! - [`fixtures`]: the CRD and Pipeline fixtures of the repository.
//! - [`cdkube`], [`cdkube_command`]: the cdkube binary.
#![allow(dead_code, unused_imports)]

pub mod blackhole;
pub mod bounded;
pub mod cluster;
pub mod daemon;
pub mod differential;
pub mod fixtures;
pub mod hostile;
pub mod http;
pub mod kubectl;
pub mod operator;
pub mod ops;
pub mod process;
pub mod raw;
pub mod realkube;
pub mod repo;
pub mod ssh;
pub mod wire;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub use blackhole::Blackhole;
pub use daemon::GitDaemon;
pub use http::{HttpGit, HttpRequest};
pub use repo::{Repos, Upstream};
pub use ssh::SshServer;

/// The `cdkube` binary built for these tests, with `args`; the caller sets the directory or
/// environment and runs it. `CDKUBE_TEST_BIN` names another build of it (worktrees that share one target
/// directory overwrite each other's `target/debug/cdkube`).
pub fn cdkube_command(args: &[&str]) -> Command {
    let binary = std::env::var_os("CDKUBE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_cdkube").into());
    let mut cmd = Command::new(binary);
    cmd.args(args);
    cmd
}

/// Runs `cdkube ARGS` from the repository root and returns what it printed.
pub fn cdkube(args: &[&str]) -> Output {
    cdkube_command(args)
        .current_dir(fixtures::repo_root())
        .output()
        .expect("cdkube runs")
}

/// A child process that is killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Wait until something accepts connections on `port`, or until `child` exits (returns false then).
pub fn wait_for_listener(port: u16, child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Start a server with `start(port)` on a free port, retrying on another port if it could not listen
/// (another process may grab the port between our probe and the server's bind). On failure the panic
/// shows the server's `log` (its stderr).
pub fn start_on_free_port(name: &str, log: &Path, mut start: impl FnMut(u16) -> Child) -> (ChildGuard, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = start(port);
        if wait_for_listener(port, &mut child, Duration::from_secs(10)) {
            return (ChildGuard(child), port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{name} did not start listening on 127.0.0.1; its log:\n{log}");
}

/// Run `program args` and return stdout, panicking with stderr on failure (test setup only).
pub fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = command(program, args, dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    check(program, args, output)
}

/// A `git`/tool command with a clean, deterministic environment (no user or system git config).
pub fn command(program: &str, args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

fn check(program: &str, args: &[&str], output: Output) -> String {
    if !output.status.success() {
        panic!(
            "{program} {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Poll `condition` every 20ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
