//! `exec` into a running container. When the runner starts a container it records how to start
//! another process like it — environment, working directory, mounts — at
//! [`PodDir::exec_spec`]; whoever serves `pods/exec` with the same state directory (the embedded
//! API server) starts the command from that record. With the log files, the record is the
//! contract between the runner and its readers: the API server never asks the runner.
//!
//! An exec'd process gets a fresh private mount namespace built like the container's (volumes and
//! `/tmp` are shared, the container's own tmpfs root is not), leads its own process group, and is
//! stopped with its group when the container's main process is gone or the stream ends.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::process::Child;

use super::process::{self, BindMount, Isolation, ProcessSpec};
use super::workspace::{self, PodDir};

/// How to start a process in a running container (the container's spec minus its command).
#[derive(Serialize, Deserialize)]
struct ExecSpec {
    env: Vec<(String, String)>,
    cwd: PathBuf,
    isolation: Option<Isolation>,
    /// Without isolation: the mounts whose container paths are rewritten in the command.
    rewrite: Vec<BindMount>,
}

/// Writes the record of a container just started (failures are logged: exec then finds none).
pub(super) fn record(dir: &PodDir, container: &str, spec: &ProcessSpec, rewrite: Vec<BindMount>) {
    let record = ExecSpec {
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        isolation: spec.isolation.clone(),
        rewrite,
    };
    let path = dir.exec_spec(container);
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| crate::embedded::state_dir::write_file(&path, &bytes));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), "exec record not written; exec into it will fail: {e}");
    }
}

/// Removes the record of a container that has exited.
pub(super) fn forget(dir: &PodDir, container: &str) {
    let _ = std::fs::remove_file(dir.exec_spec(container));
}

/// Why a command could not be started in a container.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    /// The container's process is not running here (not started yet, exited, or another node's).
    #[error("container not found ({0:?})")]
    NotRunning(String),
    /// The command could not be started.
    #[error("{0}")]
    Start(String),
}

/// A command started in a container.
pub(crate) struct ExecProcess {
    /// The process, with piped stdout and stderr (and stdin when asked for).
    pub child: Child,
    pgid: i32,
    leader: PidRecord,
}

impl ExecProcess {
    /// Whether the container's main process still runs (an exec'd process dies with it).
    pub(crate) fn container_alive(&self) -> bool {
        self.leader.alive()
    }

    /// Stops everything the command started (SIGKILL to its process group).
    pub(crate) fn kill_group(&self) {
        process::signal_group(self.pgid, libc::SIGKILL);
    }
}

/// Starts `argv` in container `container` of Pod `namespace/pod`, as recorded under `state_dir`.
pub(crate) fn start(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    argv: &[String],
    stdin: bool,
) -> Result<ExecProcess, ExecError> {
    let dir = PodDir::new(state_dir, namespace, pod);
    let not_running = || ExecError::NotRunning(container.to_string());
    let leader = PidRecord::read(&dir.pid_file(container))
        .filter(PidRecord::alive)
        .ok_or_else(not_running)?;
    let text = std::fs::read(dir.exec_spec(container)).map_err(|_| not_running())?;
    let record: ExecSpec = serde_json::from_slice(&text).map_err(|_| not_running())?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ExecError::Start("no command".into()))?;
    let rewrite = |a: &String| workspace::rewrite(a, &record.rewrite);
    let spec = ProcessSpec {
        program: rewrite(program),
        args: args.iter().map(rewrite).collect(),
        env: record.env,
        cwd: record.cwd,
        isolation: record.isolation,
        log: PathBuf::new(),
    };
    let child = process::spawn_piped(&spec, stdin).map_err(|e| ExecError::Start(e.to_string()))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    Ok(ExecProcess { child, pgid, leader })
}

/// A pid file's `<pid> <start time>`: identifies a process even after its pid is reused.
struct PidRecord {
    pid: i32,
    start: u64,
}

impl PidRecord {
    fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        Some(PidRecord { pid, start })
    }

    fn alive(&self) -> bool {
        process::process_start_time(self.pid) == Some(self.start)
    }
}
