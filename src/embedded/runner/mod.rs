//! The local pod runner: plays kubelet (and the scheduler) for a single node, through the Kubernetes
//! API only. It watches Pods, binds new ones to its node, runs their containers as host processes
//! (the `workspace` module makes volumes real) and reports status and Events.
//!
//! What is emulated and what is not:
//! - images are not pulled; a command `cdkube` (or `…/cdkube`) runs the configured cdkube binary;
//!   a container without `command` cannot start (the image's entrypoint is unknown);
//! - volumes: `emptyDir` (a directory; `medium` and `sizeLimit` ignored), `hostPath` directories,
//!   and `configMap`, `secret`, `downwardAPI` and `projected` volumes (the ServiceAccount token of
//!   `kube-api-access-*` included) written once at start and never updated (see `files`); other
//!   types, or a source that cannot be read, fail the Pod with reason FailedMount;
//! - no readiness/liveness probes (a running container is ready), no resource limits, no network or
//!   PID isolation (every Pod has IP 127.0.0.1); `KUBERNETES_SERVICE_HOST`/`_PORT` name the API
//!   server when [`RunnerConfig::api_server`] is set;
//! - restartPolicy Never, OnFailure and Always, with kubelet's crash-loop back-off; a restarted
//!   container appends to the same log file; restartable init containers (sidecars) are refused;
//! - a process that leaves its process group (e.g. `setsid`) escapes being stopped;
//! - the runner registers its Node (Ready condition, addresses, capacity) and renews its heartbeat
//!   Lease in `kube-node-lease` with `cdkube node`'s code (unless [`RunnerConfig::register_node`]
//!   is off); while the Node is cordoned (`spec.unschedulable`) new Pods stay Pending and unbound
//!   (with a FailedScheduling Event) and are bound once it is uncordoned. Taints, affinity and
//!   resources are not considered when binding;
//! - ephemeral containers (`kubectl debug`) start when they appear in the spec, in the Pod's
//!   workspace, never restart, get no stdin, and stop with the Pod; `targetContainerName` shares
//!   nothing more (there is no PID namespace to share);
//! - `exec`: each running container's environment, working directory and mounts are recorded
//!   (`exec`) for the embedded API server to start commands like it;
//! - Events are kubelet's (`reportingController` kubelet, instance the node; `Pulled` says the
//!   image was not pulled) and, for binding, the scheduler's (`default-scheduler`);
//! - state lives in the API and in `<state_dir>/pods/`; a Pod this runner (or an earlier run of it)
//!   had started is, after a runner restart, stopped and reported Failed (reason RunnerRestarted),
//!   never silently resumed.
mod container;
mod context;
mod cordon;
mod env;
pub(crate) mod exec;
mod files;
mod pod;
mod pod_status;
mod process;
mod workspace;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EphemeralContainer, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinSet;

use context::{Ctx, Stop};

pub use process::namespaces_permitted;
pub use workspace::{PodDir, VolumeMode, sweep};

/// Node name the runner binds Pods to unless configured otherwise.
pub const DEFAULT_NODE_NAME: &str = "cdkube-dev";
/// `reportingController` of the runner's Events about containers, as kubelet's (the instance is
/// the node).
pub(crate) const REPORTER: &str = "kubelet";
/// `reportingController` of the runner's scheduling Events, as kube-scheduler's.
pub(crate) const SCHEDULER: &str = "default-scheduler";

/// What can stop the runner from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory could not be created.
    #[error("creating state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How the runner is set up.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Root of the Pod workspaces and logs (`<state_dir>/pods/…`), shared with the API server.
    pub state_dir: PathBuf,
    /// The single node this runner plays.
    pub node_name: String,
    /// Watch only this namespace; `None` for all.
    pub namespace: Option<String>,
    /// The binary run for a container command `cdkube`.
    pub cdkube_bin: PathBuf,
    /// How volumes are mounted; `None` probes for mount-namespace support and falls back to rewriting.
    pub volume_mode: Option<VolumeMode>,
    /// The API server's address, given to containers as `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub api_server: Option<std::net::SocketAddr>,
    /// Register the Node (Ready, capacity) and keep its heartbeat Lease, as kubelet does
    /// (`cdkube node` registers its own and turns this off).
    pub register_node: bool,
}

impl RunnerConfig {
    /// A runner for all namespaces on node [`DEFAULT_NODE_NAME`], volume mode probed.
    pub fn new(state_dir: impl Into<PathBuf>, cdkube_bin: impl Into<PathBuf>) -> Self {
        RunnerConfig {
            state_dir: state_dir.into(),
            node_name: DEFAULT_NODE_NAME.into(),
            namespace: None,
            cdkube_bin: cdkube_bin.into(),
            volume_mode: None,
            api_server: None,
            register_node: true,
        }
    }
}

/// A running pod runner. Dropping it aborts it without stopping Pod processes (as if it had
/// crashed); [`Runner::shutdown`] stops them first.
pub struct Runner {
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The Node's heartbeat and the cordon watch.
    node_tasks: Vec<tokio::task::JoinHandle<()>>,
    mode: VolumeMode,
}

impl Runner {
    /// Starts watching Pods with `client`.
    pub fn start(client: Client, config: RunnerConfig) -> Result<Runner, Error> {
        let state_err = |source| Error::StateDir {
            path: config.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.state_dir).map_err(state_err)?;
        let mode = config.volume_mode.unwrap_or_else(|| {
            if process::namespaces_permitted(&config.state_dir) {
                VolumeMode::Namespace
            } else {
                VolumeMode::Rewrite
            }
        });
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: Some(config.node_name.clone()),
        };
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            scheduler: Recorder::new(client.clone(), Reporter::from(SCHEDULER)),
            client: client.clone(),
            host: workspace::Host {
                mode,
                cdkube_bin: config.cdkube_bin.clone(),
                base_env: {
                    let mut env = workspace::Host::default_base_env();
                    env.extend(
                        config
                            .api_server
                            .map(workspace::Host::api_server_env)
                            .unwrap_or_default(),
                    );
                    env
                },
            },
            state_dir: config.state_dir.clone(),
            node: config.node_name.clone(),
            schedulable: cordon::Schedulable::new(),
        });
        let (shutdown, rx) = watch::channel(false);
        let mut node_tasks = vec![tokio::spawn(cordon::watch_node(
            client.clone(),
            ctx.schedulable.clone(),
            config.node_name.clone(),
            rx.clone(),
        ))];
        if config.register_node {
            node_tasks.push(tokio::spawn(crate::embedded::node::keep_registered(
                client.clone(),
                config.node_name.clone(),
                rx.clone(),
            )));
        }
        let api: Api<Pod> = match &config.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let task = tokio::spawn(Loop::new(ctx).run(api, rx));
        tracing::info!(node = %config.node_name, ?mode, "pod runner started");
        Ok(Runner {
            shutdown,
            task: Some(task),
            node_tasks,
            mode,
        })
    }

    /// How this runner mounts volumes.
    pub fn volume_mode(&self) -> VolumeMode {
        self.mode
    }

    /// Stops every Pod process (SIGTERM, SIGKILL after 2 s) and the watch; returns when all are gone.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for task in self.node_tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for task in &self.node_tasks {
            task.abort();
        }
    }
}

/// A Pod the runner has taken on.
struct Entry {
    stop: watch::Sender<Option<Stop>>,
    /// The Pod's ephemeral containers as last seen, for its task to start the new ones.
    ephemeral: watch::Sender<Vec<EphemeralContainer>>,
    dir: workspace::PodDir,
    /// A deletion seen while the Pod's task ran; completed when the task ends, should the task
    /// have finished without noticing it.
    deleted: Option<Pod>,
    /// The object disappeared while the Pod's task ran.
    vanished: bool,
    /// The final grace-0 delete has been issued.
    deleting: bool,
}

impl Entry {
    fn running(&self) -> bool {
        !self.stop.is_closed()
    }
}

/// The watch loop and its table of Pods, keyed by uid.
struct Loop {
    ctx: Arc<Ctx>,
    pods: HashMap<String, Entry>,
    /// Pod tasks; each returns the uid of its Pod.
    tasks: JoinSet<String>,
    relist: Option<HashSet<String>>,
}

impl Loop {
    fn new(ctx: Arc<Ctx>) -> Self {
        Loop {
            ctx,
            pods: HashMap::new(),
            tasks: JoinSet::new(),
            relist: None,
        }
    }

    async fn run(mut self, api: Api<Pod>, mut shutdown: watch::Receiver<bool>) {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        tokio::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                event = stream.next() => match event {
                    Some(Ok(event)) => self.on_event(event),
                    Some(Err(e)) => tracing::warn!("pod watch: {e}"),
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(uid) = done {
                        self.on_task_done(&uid);
                    }
                }
            }
        }
        for entry in self.pods.values() {
            let _ = entry.stop.send(Some(Stop::Shutdown));
        }
        while self.tasks.join_next().await.is_some() {}
    }

    fn spawn(&mut self, uid: &str, task: impl Future<Output = ()> + Send + 'static) {
        let uid = uid.to_string();
        self.tasks.spawn(async move {
            task.await;
            uid
        });
    }

    fn on_event(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.relist = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (self.relist.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                self.on_apply(pod);
            }
            Event::InitDone => {
                // Pods deleted while the watch was down never get a Delete event.
                if let Some(seen) = self.relist.take() {
                    let gone: Vec<String> = self.pods.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                    for uid in gone {
                        self.on_gone(&uid);
                    }
                }
            }
            Event::Apply(pod) => self.on_apply(pod),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.on_gone(uid);
                }
            }
        }
    }

    /// The object is gone: stop its processes; its directory goes once they have.
    fn on_gone(&mut self, uid: &str) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        if entry.running() {
            let _ = entry.stop.send(Some(Stop::Vanished));
            entry.vanished = true;
        } else if let Some(entry) = self.pods.remove(uid)
            && entry.dir.owned_by(uid)
        {
            entry.dir.remove();
        }
    }

    fn on_task_done(&mut self, uid: &str) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        if entry.vanished {
            if entry.dir.owned_by(uid) {
                entry.dir.remove();
            }
            self.pods.remove(uid);
        } else if let Some(pod) = entry.deleted.take()
            && !entry.deleting
        {
            entry.deleting = true;
            self.spawn(uid, finish_deletion(self.ctx.clone(), pod));
        }
    }

    fn on_apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node.is_some_and(|n| n != self.ctx.node) {
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if let Some(entry) = self.pods.get_mut(&uid) {
            if !deleting {
                let listed = ephemeral_containers(&pod);
                entry.ephemeral.send_if_modified(|e| {
                    let changed = *e != listed;
                    *e = listed;
                    changed
                });
            }
            if !deleting || entry.deleting {
                return;
            }
            if entry.running() {
                let grace = deletion_grace(&pod);
                entry
                    .stop
                    .send_if_modified(|s| s.is_none() && s.replace(Stop::Delete { grace }).is_none());
                entry.deleted = Some(pod);
            } else {
                // The Pod had already finished here; only the object is left to remove.
                entry.deleting = true;
                self.spawn(&uid, finish_deletion(self.ctx.clone(), pod));
            }
            return;
        }
        let (stop, rx) = watch::channel(None);
        let (ephemeral, ephemeral_rx) = watch::channel(ephemeral_containers(&pod));
        let entry = Entry {
            stop,
            ephemeral,
            dir: workspace::PodDir::of(&self.ctx.state_dir, &pod),
            deleted: None,
            vanished: false,
            deleting,
        };
        if deleting {
            self.spawn(&uid, finish_deletion(self.ctx.clone(), pod));
        } else if is_terminal(&pod) {
            // Nothing to run; remembered so that its deletion is completed here.
        } else if was_started(&pod, &entry.dir) {
            self.spawn(&uid, recover(self.ctx.clone(), pod));
        } else {
            self.spawn(&uid, pod::run(self.ctx.clone(), pod, rx, ephemeral_rx));
        }
        self.pods.insert(uid, entry);
    }
}

fn ephemeral_containers(pod: &Pod) -> Vec<EphemeralContainer> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default()
}

fn deletion_grace(pod: &Pod) -> Duration {
    match pod.metadata.deletion_grace_period_seconds {
        Some(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
        None => pod::termination_grace(pod),
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// True when a runner (an earlier run of this one) had already started this Pod.
fn was_started(pod: &Pod, dir: &workspace::PodDir) -> bool {
    if pod.metadata.uid.as_deref().is_some_and(|u| dir.owned_by(u)) {
        return true;
    }
    let status = pod.status.as_ref();
    let containers = status.into_iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    });
    containers
        .filter_map(|c| c.state.as_ref())
        .any(|s| s.running.is_some() || s.terminated.is_some())
}

/// A Pod that was running when the runner died: stop what is left, report it Failed.
async fn recover(ctx: Arc<Ctx>, pod: Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    workspace::PodDir::of(&ctx.state_dir, &pod).kill_leftovers();
    let message = "the cdkube pod runner stopped while this Pod was running; its processes were stopped \
                   and it is not resumed";
    let mut status = pod.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    for c in status
        .init_container_statuses
        .iter_mut()
        .flatten()
        .chain(status.container_statuses.iter_mut().flatten())
    {
        if c.state.as_ref().is_some_and(|s| s.terminated.is_none()) {
            c.state = Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some("The container could not be located when the pod was terminated".into()),
                    finished_at: Some(now.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            c.ready = false;
            c.started = Some(false);
        }
    }
    for cond in status.conditions.iter_mut().flatten() {
        if (cond.type_ == "Ready" || cond.type_ == "ContainersReady") && cond.status != "False" {
            cond.status = "False".into();
            cond.reason = Some("PodCompleted".into());
            cond.message = None;
            cond.last_transition_time = Some(now.clone());
        }
    }
    status.phase = Some("Failed".into());
    status.reason = Some("RunnerRestarted".into());
    status.message = Some(message.into());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({ "status": status });
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        tracing::warn!(pod = %name, "status update failed: {e}");
    }
    ctx.event(
        &pod::reference(&pod, None),
        EventType::Warning,
        "RunnerRestarted",
        message.into(),
    )
    .await;
}

/// A deleted Pod that has no running task: stop leftovers, remove the object and its directory.
async fn finish_deletion(ctx: Arc<Ctx>, pod: Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = workspace::PodDir::of(&ctx.state_dir, &pod);
    if dir.owned_by(&uid) {
        dir.kill_leftovers();
        dir.remove();
    }
    pod::delete_now(&Api::namespaced(ctx.client.clone(), &ns), &name, &uid).await;
}
