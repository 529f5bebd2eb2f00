//! One Pod's life on the runner, as kubelet's pod worker lives it: bind the Pod to the node,
//! prepare its workspace, run the init containers one by one, then all containers together,
//! enforce `activeDeadlineSeconds`, stop everything when the Pod is deleted, and keep `status`
//! and Events current.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::container::{self, Job, Restart, Update};
use super::context::{Ctx, Stop};
use super::files;
use super::pod_status::{Book, Kind, Phase};
use super::workspace::{self, PodDir};

/// Grace period when the Pod object vanished or the runner stops (kubelet's minimum).
const SHORT_GRACE: Duration = Duration::from_secs(2);

/// Why a group of containers stopped before finishing.
enum Cause {
    Stop(Stop),
    Deadline,
}

/// How a group of containers ended.
enum GroupEnd {
    /// Every container finished; last exit codes (None: never ran).
    Exited(Vec<Option<i32>>),
    /// Stopped from outside.
    Stopped(Cause),
}

/// Runs `pod` to completion, or until `stop` says otherwise.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    pod: Pod,
    mut stop: watch::Receiver<Option<Stop>>,
    ephemeral: watch::Receiver<Vec<EphemeralContainer>>,
) {
    let Some(mut life) = Life::new(ctx, pod, ephemeral) else {
        return;
    };
    if !life.bind(&mut stop).await {
        return;
    }
    // A stop that arrived after the containers had ended (e.g. deletion of a Pod failed by its
    // deadline) is still honoured.
    let ended = life.live(&mut stop).await;
    life.stop_ephemeral().await;
    let request = ended.or_else(|| *stop.borrow());
    match request {
        Some(Stop::Delete { .. }) => life.remove().await,
        Some(Stop::Vanished) => life.dir.remove(),
        Some(Stop::Shutdown) | None => {}
    }
}

/// Reference for Events about the Pod (or, with a field path, one of its containers).
pub(super) fn reference(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    let mut r = pod.object_ref(&());
    // Without the resourceVersion, repeated Events for the Pod collapse into a series.
    r.resource_version = None;
    r.field_path = field_path;
    r
}

struct Life {
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    api: Api<Pod>,
    name: String,
    uid: String,
    dir: PodDir,
    book: Book,
    reference: ObjectReference,
    ephemeral: Ephemerals,
}

/// The ephemeral containers of a Pod (`kubectl debug`): started when they appear in the spec,
/// once volumes are ready, never restarted, stopped with the Pod.
struct Ephemerals {
    /// The spec's list, as the runner's watch last saw it.
    spec: watch::Receiver<Vec<EphemeralContainer>>,
    /// Names already started.
    started: HashSet<String>,
    /// The Pod's volumes, once prepared (nothing starts before).
    volumes: Option<Arc<HashMap<String, PathBuf>>>,
    tx: mpsc::Sender<Update>,
    rx: mpsc::Receiver<Update>,
    kill: watch::Sender<Option<Duration>>,
    tasks: JoinSet<Option<i32>>,
}

impl Ephemerals {
    fn new(spec: watch::Receiver<Vec<EphemeralContainer>>) -> Self {
        let (tx, rx) = mpsc::channel(16);
        Ephemerals {
            spec,
            started: HashSet::new(),
            volumes: None,
            tx,
            rx,
            kill: watch::channel(None).0,
            tasks: JoinSet::new(),
        }
    }
}

/// Resolves when the spec's list of ephemeral containers changes while volumes are `ready`
/// (never before, nor once the runner's watch is gone).
async fn ephemeral_changed(ready: bool, spec: &mut watch::Receiver<Vec<EphemeralContainer>>) {
    if !ready || spec.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Life {
    fn new(ctx: Arc<Ctx>, pod: Pod, ephemeral: watch::Receiver<Vec<EphemeralContainer>>) -> Option<Self> {
        let name = pod.metadata.name.clone()?;
        let uid = pod.metadata.uid.clone()?;
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let api = Api::namespaced(ctx.client.clone(), &ns);
        let dir = PodDir::new(&ctx.state_dir, &ns, &name);
        let book = Book::new(&pod);
        let reference = reference(&pod, None);
        Some(Life {
            ctx,
            pod: Arc::new(pod),
            api,
            name,
            uid,
            dir,
            book,
            reference,
            ephemeral: Ephemerals::new(ephemeral),
        })
    }

    /// Assigns the Pod to this node as the scheduler does, through the `binding` subresource (an
    /// update may not change `spec.nodeName`). False if bound elsewhere or refused.
    async fn bind(&mut self, stop: &mut watch::Receiver<Option<Stop>>) -> bool {
        let node = self.ctx.node.clone();
        match self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) if n == node => return true,
            Some(_) => return false,
            None => {}
        }
        if !self.wait_schedulable(stop).await {
            return false;
        }
        let binding = serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": self.name, "namespace": self.pod.metadata.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let pp = PostParams::default();
        let bound = self
            .api
            .create_subresource::<_, serde_json::Value>("binding", &self.name, &pp, &binding)
            .await
            .map_err(|e| format!("binding: {e}"));
        match bound {
            Ok(_) => {
                let ns = self.namespace();
                let note = format!("Successfully assigned {ns}/{} to {node}", self.name);
                self.ctx
                    .scheduler_event(&self.reference, EventType::Normal, "Scheduled", note)
                    .await;
                true
            }
            Err(message) => {
                // A conflict may mean this node got it already (a retried request).
                let now = self.api.get_opt(&self.name).await.ok().flatten();
                if now.and_then(|p| p.spec).and_then(|s| s.node_name).as_deref() == Some(node.as_str()) {
                    return true;
                }
                tracing::warn!(pod = %self.name, "{message}");
                let note = format!("cannot bind to node {node}: {message}");
                self.ctx
                    .scheduler_event(&self.reference, EventType::Warning, "FailedScheduling", note)
                    .await;
                false
            }
        }
    }

    /// Waits while the node is cordoned (reporting it as the scheduler does); false when the
    /// Pod task is told to stop meanwhile.
    async fn wait_schedulable(&mut self, stop: &mut watch::Receiver<Option<Stop>>) -> bool {
        let sched = self.ctx.schedulable.clone();
        sched.refresh(&self.ctx.client, &self.ctx.node).await;
        if sched.now() {
            return true;
        }
        let note = "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: \
                    1 Preemption is not helpful for scheduling.";
        self.ctx
            .event(&self.reference, EventType::Warning, "FailedScheduling", note.into())
            .await;
        let unschedulable = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": note,
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        if let Err(e) = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(&unschedulable))
            .await
        {
            tracing::debug!(pod = %self.name, "reporting PodScheduled False: {e}");
        }
        tokio::select! {
            _ = sched.wait() => true,
            _ = stop.wait_for(Option::is_some) => false,
        }
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// Everything between binding and the end; returns the stop request that ended it, if any.
    async fn live(&mut self, stop: &mut watch::Receiver<Option<Stop>>) -> Option<Stop> {
        if let Err(e) = self.dir.claim(&self.uid) {
            self.fail(
                "FailedMount",
                format!("preparing the Pod directory {}: {e}", self.dir.path().display()),
            )
            .await;
            return None;
        }
        let files = match files::write_volumes(&self.ctx.client, &self.pod, &self.dir).await {
            Ok(f) => f,
            Err(e) => {
                self.fail("FailedMount", e).await;
                return None;
            }
        };
        let volumes = match workspace::prepare_volumes(&self.pod, &self.dir, files) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                self.fail("FailedMount", e.to_string()).await;
                return None;
            }
        };
        self.ephemeral.volumes = Some(volumes.clone());
        self.start_ephemeral();
        self.patch().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let restart = match spec.restart_policy.as_deref() {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        };
        // Init containers must succeed once: they are retried on failure unless the policy is Never.
        let init_restart = if restart == Restart::Never {
            Restart::Never
        } else {
            Restart::OnFailure
        };
        let deadline = self.deadline();
        for (idx, c) in spec.init_containers.iter().flatten().enumerate() {
            match self
                .group(
                    Kind::Init,
                    vec![(idx, c.clone())],
                    init_restart,
                    &volumes,
                    stop,
                    deadline,
                )
                .await
            {
                GroupEnd::Exited(codes) if codes.iter().all(|c| *c == Some(0)) => {}
                GroupEnd::Exited(_) => {
                    self.finish(Phase::Failed, None, None).await;
                    return None;
                }
                GroupEnd::Stopped(cause) => return self.stopped(cause).await,
            }
        }
        let all: Vec<_> = spec.containers.iter().cloned().enumerate().collect();
        match self.group(Kind::Main, all, restart, &volumes, stop, deadline).await {
            GroupEnd::Exited(codes) => {
                let phase = if codes.iter().all(|c| *c == Some(0)) {
                    Phase::Succeeded
                } else {
                    Phase::Failed
                };
                self.finish(phase, None, None).await;
                None
            }
            GroupEnd::Stopped(cause) => self.stopped(cause).await,
        }
    }

    /// activeDeadlineSeconds, counted from the Pod's start time, as a tokio instant.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let elapsed = Timestamp::now().duration_since(self.book.start_time()).unsigned_abs();
        let left = Duration::from_secs(u64::try_from(secs).unwrap_or(0)).saturating_sub(elapsed);
        Some(tokio::time::Instant::now() + left)
    }

    /// Runs containers together until all have finished for good or something stops them.
    async fn group(
        &mut self,
        kind: Kind,
        containers: Vec<(usize, Container)>,
        restart: Restart,
        volumes: &Arc<HashMap<String, PathBuf>>,
        stop: &mut watch::Receiver<Option<Stop>>,
        deadline: Option<tokio::time::Instant>,
    ) -> GroupEnd {
        let (tx, mut rx) = mpsc::channel(16);
        let (kill_tx, kill_rx) = watch::channel(None);
        let mut tasks = JoinSet::new();
        for (idx, container) in containers {
            let job = self.job(kind, idx, container, restart, volumes);
            tasks.spawn(container::run(self.ctx.clone(), job, tx.clone(), kill_rx.clone()));
        }
        drop(tx);
        let mut cause = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(u32::MAX.into());
        loop {
            tokio::select! {
                update = rx.recv() => match update {
                    Some(u) => {
                        self.apply(kind, u);
                        self.patch().await;
                    }
                    None => break,
                },
                Some(u) = self.ephemeral.rx.recv() => {
                    self.apply(Kind::Ephemeral, u);
                    self.patch().await;
                }
                () = ephemeral_changed(self.ephemeral.volumes.is_some(), &mut self.ephemeral.spec) => {
                    self.start_ephemeral();
                    self.patch().await;
                }
                requested = container::requested(stop), if cause.is_none() => {
                    let request = requested.unwrap_or(Stop::Shutdown);
                    let grace = match request {
                        Stop::Delete { grace } => grace,
                        Stop::Vanished | Stop::Shutdown => SHORT_GRACE,
                    };
                    cause = Some(Cause::Stop(request));
                    let _ = kill_tx.send(Some(grace));
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && cause.is_none() => {
                    cause = Some(Cause::Deadline);
                    self.deadline_exceeded().await;
                    let _ = kill_tx.send(Some(termination_grace(&self.pod)));
                }
            }
        }
        let mut codes = Vec::new();
        while let Some(done) = tasks.join_next().await {
            // A panicked container task counts as a container that never ran.
            codes.push(done.ok().flatten());
        }
        match cause {
            Some(c) => GroupEnd::Stopped(c),
            None => GroupEnd::Exited(codes),
        }
    }

    fn job(
        &self,
        kind: Kind,
        idx: usize,
        container: Container,
        restart: Restart,
        volumes: &Arc<HashMap<String, PathBuf>>,
    ) -> Job {
        let list = match kind {
            Kind::Init => "initContainers",
            Kind::Main => "containers",
            Kind::Ephemeral => "ephemeralContainers",
        };
        let field_path = format!("spec.{list}{{{}}}", container.name);
        Job {
            pod: self.pod.clone(),
            reference: reference(&self.pod, Some(field_path)),
            container,
            kind,
            idx,
            volumes: volumes.clone(),
            dir: self.dir.clone(),
            restart,
        }
    }

    /// Starts the ephemeral containers of the spec not started yet (once volumes are ready).
    fn start_ephemeral(&mut self) {
        let Some(volumes) = self.ephemeral.volumes.clone() else {
            return;
        };
        let listed = self.ephemeral.spec.borrow_and_update().clone();
        for e in listed {
            if !self.ephemeral.started.insert(e.name.clone()) {
                continue;
            }
            // The fields an ephemeral container has are a subset of a container's.
            let Ok(container) = serde_json::to_value(&e).and_then(serde_json::from_value::<Container>) else {
                continue;
            };
            let idx = self.book.add_ephemeral(&container.name, &container.image);
            let job = self.job(Kind::Ephemeral, idx, container, Restart::Never, &volumes);
            let (tx, kill) = (self.ephemeral.tx.clone(), self.ephemeral.kill.subscribe());
            self.ephemeral
                .tasks
                .spawn(container::run(self.ctx.clone(), job, tx, kill));
        }
    }

    /// Stops the ephemeral containers still running (the Pod is done) and reports how they ended.
    async fn stop_ephemeral(&mut self) {
        if self.ephemeral.tasks.is_empty() {
            return;
        }
        let _ = self.ephemeral.kill.send(Some(SHORT_GRACE));
        while self.ephemeral.tasks.join_next().await.is_some() {}
        while let Ok(u) = self.ephemeral.rx.try_recv() {
            self.apply(Kind::Ephemeral, u);
        }
        self.patch().await;
    }

    fn apply(&mut self, kind: Kind, update: Update) {
        match update {
            Update::Waiting(idx, reason, message) => self.book.waiting(kind, idx, reason, Some(message)),
            Update::Running(idx, at) => {
                self.book.running(kind, idx, at);
                if kind == Kind::Main && self.book.phase == Phase::Pending {
                    self.book.phase = Phase::Running;
                }
            }
            Update::Terminated(idx, term) => self.book.terminated(kind, idx, term),
            Update::Restarting(idx) => self.book.restarting(kind, idx),
        }
    }

    async fn deadline_exceeded(&mut self) {
        let message = "Pod was active on the node longer than the specified deadline";
        self.ctx
            .event(&self.reference, EventType::Warning, "DeadlineExceeded", message.into())
            .await;
        self.finish(Phase::Failed, Some("DeadlineExceeded"), Some(message.into()))
            .await;
    }

    /// After a stop: a deadline leaves the (already failed) Pod in place with its final container
    /// states; other causes are handed back to the caller.
    async fn stopped(&mut self, cause: Cause) -> Option<Stop> {
        match cause {
            Cause::Deadline => {
                self.patch().await;
                None
            }
            Cause::Stop(s) => Some(s),
        }
    }

    async fn fail(&mut self, reason: &str, message: String) {
        self.ctx
            .event(&self.reference, EventType::Warning, reason, message.clone())
            .await;
        self.finish(Phase::Failed, Some(reason), Some(message)).await;
    }

    async fn finish(&mut self, phase: Phase, reason: Option<&str>, message: Option<String>) {
        self.book.finish(phase, reason, message);
        self.patch().await;
    }

    /// Writes the whole status through the status subresource.
    async fn patch(&mut self) {
        let body = serde_json::json!({ "status": self.book.status() });
        if let Err(e) = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            tracing::warn!(pod = %self.name, "status update failed: {e}");
        }
    }

    /// The processes are gone: clean the workspace, then delete the object for good (kubelet's
    /// final grace-0 delete comes after the volumes are cleaned up).
    async fn remove(&self) {
        self.dir.remove();
        delete_now(&self.api, &self.name, &self.uid).await;
    }
}

/// `terminationGracePeriodSeconds` (30 when unset): the time between SIGTERM and SIGKILL.
pub(super) fn termination_grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Deletes the Pod with grace period 0, only if it is still the object with `uid`.
pub(super) async fn delete_now(api: &Api<Pod>, name: &str, uid: &str) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, "final delete failed: {e}"),
    }
}
