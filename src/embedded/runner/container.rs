//! One container's life inside a Pod: build its environment, start it, stop it when told, restart it
//! as the Pod's restartPolicy says, and report each state change to the Pod task.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use tokio::sync::{mpsc, watch};

use super::context::Ctx;
use super::pod_status::{Kind, termination};
use super::workspace::{self, PodDir};
use super::{env, exec, process};

/// Kubelet's first crash-loop back-off, doubled per restart up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long without exiting resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Exit code kubelet reports when a container could not be started.
const START_FAILED: i32 = 128;

/// When a finished container is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Restart {
    /// Never (restartPolicy Never).
    Never,
    /// After a non-zero exit (OnFailure; and Always for init containers, which must succeed once).
    OnFailure,
    /// After any exit (Always).
    Always,
}

impl Restart {
    fn wanted(self, exit_code: i32) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure => exit_code != 0,
            Restart::Always => true,
        }
    }
}

/// A state change reported to the Pod task.
#[derive(Debug)]
pub(super) enum Update {
    /// Not running, with kubelet's reason (CreateContainerConfigError, CrashLoopBackOff).
    Waiting(usize, &'static str, String),
    /// Started at this time.
    Running(usize, Timestamp),
    /// Exited (or could not start).
    Terminated(usize, ContainerStateTerminated),
    /// About to start again.
    Restarting(usize),
}

/// Everything one container task needs.
pub(super) struct Job {
    /// The Pod as first seen.
    pub pod: Arc<Pod>,
    /// The container spec.
    pub container: Container,
    /// Init container or container.
    pub kind: Kind,
    /// Its index in its list.
    pub idx: usize,
    /// Host directories of the Pod's volumes.
    pub volumes: Arc<HashMap<String, PathBuf>>,
    /// The Pod's workspace.
    pub dir: PodDir,
    /// When to restart.
    pub restart: Restart,
    /// Reference used for the container's Events (`fieldPath` names the container).
    pub reference: ObjectReference,
}

/// Runs the container until it ends for good or `kill` carries a grace period. Returns the last
/// exit code, or `None` when it was stopped before it ever ran.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    job: Job,
    tx: mpsc::Sender<Update>,
    mut kill: watch::Receiver<Option<Duration>>,
) -> Option<i32> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = None;
    loop {
        let Some(env) = resolve_env(&ctx, &job, &tx, &mut kill).await else {
            return last;
        };
        let started = Timestamp::now();
        let (code, killed) = match start(&ctx, &job, env).await {
            Ok(running) => {
                let _ = tx.send(Update::Running(job.idx, started)).await;
                wait(&ctx, &job, running, started, &tx, &mut kill).await
            }
            Err((reason, message)) => {
                failed_event(&ctx, &job, &message).await;
                let term = ContainerStateTerminated {
                    exit_code: START_FAILED,
                    reason: Some(reason.into()),
                    message: Some(message),
                    started_at: None,
                    finished_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())),
                    ..Default::default()
                };
                let _ = tx.send(Update::Terminated(job.idx, term)).await;
                (START_FAILED, false)
            }
        };
        last = Some(code);
        if killed || !job.restart.wanted(code) || kill.borrow().is_some() {
            return last;
        }
        if Timestamp::now().duration_since(started).unsigned_abs() > BACKOFF_RESET {
            backoff = FIRST_BACKOFF;
        }
        let message = format!(
            "back-off {}s restarting failed container={} pod={}",
            backoff.as_secs(),
            job.container.name,
            ctx_pod_name(&job)
        );
        let _ = tx
            .send(Update::Waiting(job.idx, "CrashLoopBackOff", message.clone()))
            .await;
        ctx.event(&job.reference, EventType::Warning, "BackOff", message).await;
        if stopped_within(&mut kill, backoff).await {
            return last;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let _ = tx.send(Update::Restarting(job.idx)).await;
    }
}

/// Kubelet's `Failed` Event for a container that could not be created or started.
async fn failed_event(ctx: &Ctx, job: &Job, message: &str) {
    let note = format!("Error: {message}");
    ctx.event(&job.reference, EventType::Warning, "Failed", note).await;
}

fn ctx_pod_name(job: &Job) -> String {
    format!(
        "{}_{}",
        job.pod.metadata.name.as_deref().unwrap_or(""),
        job.pod.metadata.namespace.as_deref().unwrap_or("default")
    )
}

/// The container's environment; while a referenced Secret/ConfigMap is missing, reports
/// CreateContainerConfigError and retries, as kubelet does. `None` when stopped meanwhile.
async fn resolve_env(
    ctx: &Ctx,
    job: &Job,
    tx: &mpsc::Sender<Update>,
    kill: &mut watch::Receiver<Option<Duration>>,
) -> Option<Result<Vec<(String, String)>, String>> {
    let mut retry = Duration::from_secs(1);
    loop {
        if kill.borrow().is_some() {
            return None;
        }
        match env::container_env(&ctx.client, &job.pod, &job.container).await {
            Ok(vars) => return Some(Ok(vars)),
            Err(e) if e.is_retriable() => {
                let message = e.to_string();
                let _ = tx
                    .send(Update::Waiting(job.idx, "CreateContainerConfigError", message.clone()))
                    .await;
                failed_event(ctx, job, &message).await;
                if stopped_within(kill, retry).await {
                    return None;
                }
                retry = (retry * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// Plans and spawns the process; on failure returns kubelet's reason and a message.
async fn start(
    ctx: &Ctx,
    job: &Job,
    env: Result<Vec<(String, String)>, String>,
) -> Result<process::Running, (&'static str, String)> {
    let env = env.map_err(|m| ("CreateContainerConfigError", m))?;
    if job.kind == Kind::Init && job.container.restart_policy.as_deref() == Some("Always") {
        let message = "restartable init containers (sidecars) are not supported by the cdkube local runner";
        return Err(("CreateContainerError", message.into()));
    }
    let spec = workspace::process_spec(&ctx.host, &job.pod, &job.dir, &job.container, &job.volumes, env)
        .map_err(|e| ("CreateContainerError", e.to_string()))?;
    let name = &job.container.name;
    let image = job.container.image.as_deref().unwrap_or_default();
    let note = format!("Container image {image:?} not pulled: cdkube runs the container's command on this machine");
    ctx.event(&job.reference, EventType::Normal, "Pulled", note).await;
    ctx.event(
        &job.reference,
        EventType::Normal,
        "Created",
        format!("Created container: {name}"),
    )
    .await;
    let running = process::spawn(&spec).map_err(|e| ("StartError", e.to_string()))?;
    // Recorded before anything else is awaited: a runner that dies from here on leaves a process
    // the next one can find and stop.
    record_pid(job, running.pid);
    let rewrite = match spec.isolation {
        Some(_) => Vec::new(),
        None => workspace::bind_mounts(&job.container, &job.volumes).unwrap_or_default(),
    };
    exec::record(&job.dir, name, &spec, rewrite);
    ctx.event(
        &job.reference,
        EventType::Normal,
        "Started",
        format!("Started container {name}"),
    )
    .await;
    Ok(running)
}

/// Writes `<pid> <start time>` of the container's process group leader to its pid file, so a
/// later runner can stop the group if this one dies.
fn record_pid(job: &Job, pid: i32) {
    let start_time = process::process_start_time(pid).unwrap_or(0);
    let pid_file = job.dir.pid_file(&job.container.name);
    let written = pid_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| crate::embedded::state_dir::write_file(&pid_file, format!("{pid} {start_time}").as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %pid_file.display(), "pid not recorded; a runner restart cannot stop it: {e}");
    }
}

/// Waits for the process; on a kill request stops its group (SIGTERM, SIGKILL after the grace
/// period). Returns the exit code and whether it was killed.
async fn wait(
    ctx: &Ctx,
    job: &Job,
    running: process::Running,
    started: Timestamp,
    tx: &mpsc::Sender<Update>,
    kill: &mut watch::Receiver<Option<Duration>>,
) -> (i32, bool) {
    let name = &job.container.name;
    let pid = running.pid;
    let exit = running.wait();
    tokio::pin!(exit);
    let (exit, killed) = tokio::select! {
        exit = &mut exit => (exit, false),
        grace = requested(kill) => {
            let grace = grace.unwrap_or(Duration::ZERO);
            ctx.event(&job.reference, EventType::Normal, "Killing", format!("Stopping container {name}")).await;
            let escalate = process::terminate_group(pid, grace);
            let exit = exit.await;
            escalate.abort();
            (exit, true)
        }
    };
    let _ = std::fs::remove_file(job.dir.pid_file(name));
    exec::forget(&job.dir, name);
    let code = exit.code();
    let mut term = termination(code, started, Timestamp::now());
    if let process::Exit::Signal(sig) = exit {
        term.signal = Some(sig);
    }
    // The receiver is gone only when the Pod task is, and then nobody needs the update.
    let _ = tx.send(Update::Terminated(job.idx, term)).await;
    (code, killed)
}

/// Sleeps `d` unless a kill request arrives first; true when stopped.
async fn stopped_within(kill: &mut watch::Receiver<Option<Duration>>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = requested(kill) => true,
    }
}

/// Resolves once the channel holds a value (or its sender is gone: `None`).
pub(super) async fn requested<T: Copy>(rx: &mut watch::Receiver<Option<T>>) -> Option<T> {
    rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
}
