//! The Pod status the runner reports, kept in one place and recomputed on every change: phase,
//! the four kubelet conditions and per-container states, as kubelet fills them.
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The address every Pod gets: its processes share the host's network.
pub(super) const POD_IP: &str = "127.0.0.1";

/// Pod phase, as in `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; init containers may be running.
    Pending,
    /// Init containers done; containers started.
    Running,
    /// Every container exited 0 and none will restart.
    Succeeded,
    /// A container (or init container) failed and will not restart, or the Pod was stopped.
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// True for Succeeded and Failed.
    pub(super) fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Which list a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// `spec.initContainers`
    Init,
    /// `spec.containers`
    Main,
    /// `spec.ephemeralContainers`
    Ephemeral,
}

/// The runner's record of one Pod's status.
pub(super) struct Book {
    /// Current phase.
    pub phase: Phase,
    /// `status.reason` (e.g. DeadlineExceeded).
    pub reason: Option<String>,
    /// `status.message`.
    pub message: Option<String>,
    start_time: Timestamp,
    init: Vec<ContainerStatus>,
    main: Vec<ContainerStatus>,
    ephemeral: Vec<ContainerStatus>,
    conditions: Vec<PodCondition>,
}

impl Book {
    /// A fresh record: scheduled, every container waiting.
    pub(super) fn new(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        let main_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| waiting_status(&c.name, &c.image, "PodInitializing"));
        let main = spec
            .containers
            .iter()
            .map(|c| waiting_status(&c.name, &c.image, main_reason));
        Book {
            phase: Phase::Pending,
            reason: None,
            message: None,
            start_time: Timestamp::now(),
            init: init.collect(),
            main: main.collect(),
            ephemeral: Vec::new(),
            conditions: Vec::new(),
        }
    }

    /// When the runner accepted the Pod (`status.startTime`; activeDeadlineSeconds counts from here).
    pub(super) fn start_time(&self) -> Timestamp {
        self.start_time
    }

    fn list(&mut self, kind: Kind) -> &mut Vec<ContainerStatus> {
        match kind {
            Kind::Init => &mut self.init,
            Kind::Main => &mut self.main,
            Kind::Ephemeral => &mut self.ephemeral,
        }
    }

    /// Adds an ephemeral container (waiting to start); returns its index.
    pub(super) fn add_ephemeral(&mut self, name: &str, image: &Option<String>) -> usize {
        self.ephemeral.push(waiting_status(name, image, "ContainerCreating"));
        self.ephemeral.len() - 1
    }

    /// The status of container `idx` of `kind`.
    pub(super) fn container(&mut self, kind: Kind, idx: usize) -> Option<&mut ContainerStatus> {
        self.list(kind).get_mut(idx)
    }

    /// Marks the container waiting with `reason` (CreateContainerConfigError, CrashLoopBackOff, …);
    /// a termination it replaces moves to `lastState`.
    pub(super) fn waiting(&mut self, kind: Kind, idx: usize, reason: &str, message: Option<String>) {
        if let Some(c) = self.container(kind, idx) {
            if c.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                c.last_state = c.state.take();
            }
            c.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message,
                }),
                ..Default::default()
            });
            c.ready = false;
            c.started = Some(false);
        }
    }

    /// Marks the container running since `at`.
    pub(super) fn running(&mut self, kind: Kind, idx: usize, at: Timestamp) {
        if let Some(c) = self.container(kind, idx) {
            c.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(at)),
                }),
                ..Default::default()
            });
            // No readiness probes are run: a running container is ready, as kubelet treats one without probes.
            c.ready = kind == Kind::Main;
            c.started = Some(true);
        }
    }

    /// Marks the container terminated; a previous termination moves to `lastState`.
    pub(super) fn terminated(&mut self, kind: Kind, idx: usize, term: ContainerStateTerminated) {
        if let Some(c) = self.container(kind, idx) {
            // A completed init container counts as ready, as kubelet reports it.
            c.ready = kind == Kind::Init && term.exit_code == 0;
            c.state = Some(ContainerState {
                terminated: Some(term),
                ..Default::default()
            });
            c.started = Some(false);
        }
    }

    /// A new run of the container starts: the restart count goes up.
    pub(super) fn restarting(&mut self, kind: Kind, idx: usize) {
        if let Some(c) = self.container(kind, idx) {
            if c.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                c.last_state = c.state.clone();
            }
            c.restart_count += 1;
        }
    }

    /// Ends the Pod in `phase` with an optional reason and message.
    pub(super) fn finish(&mut self, phase: Phase, reason: Option<&str>, message: Option<String>) {
        self.phase = phase;
        if reason.is_some() {
            self.reason = reason.map(String::from);
            self.message = message;
        }
    }

    /// The complete `status` to write through the status subresource. `qosClass` is left out:
    /// the API server set it when the Pod was created and kubelet never changes it.
    pub(super) fn status(&mut self) -> PodStatus {
        self.conditions = self.conditions();
        PodStatus {
            phase: Some(self.phase.as_str().into()),
            reason: self.reason.clone(),
            message: self.message.clone(),
            conditions: Some(self.conditions.clone()),
            host_ip: Some(POD_IP.into()),
            host_ips: Some(vec![HostIP { ip: POD_IP.into() }]),
            pod_ip: Some(POD_IP.into()),
            pod_ips: Some(vec![PodIP { ip: POD_IP.into() }]),
            start_time: Some(Time(self.start_time)),
            init_container_statuses: (!self.init.is_empty()).then(|| self.init.clone()),
            container_statuses: Some(self.main.clone()),
            ephemeral_container_statuses: (!self.ephemeral.is_empty()).then(|| self.ephemeral.clone()),
            ..Default::default()
        }
    }

    /// The kubelet conditions for the current state; a condition keeps its lastTransitionTime
    /// while its status does not change.
    fn conditions(&self) -> Vec<PodCondition> {
        let now = Timestamp::now();
        let initialized = self.init.iter().all(succeeded);
        let terminal = self.phase.is_terminal();
        let unready: Vec<&str> = self.main.iter().filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
        let ready = !terminal && unready.is_empty();
        let not_ready = if ready {
            (None, None)
        } else if terminal {
            (Some("PodCompleted".to_string()), None)
        } else {
            (
                Some("ContainersNotReady".to_string()),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            )
        };
        let incomplete: Vec<&str> = self
            .init
            .iter()
            .filter(|c| !succeeded(c))
            .map(|c| c.name.as_str())
            .collect();
        let init_cond = if initialized {
            (None, None)
        } else {
            (
                Some("ContainersNotInitialized".to_string()),
                Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
            )
        };
        let wanted = [
            ("PodReadyToStartContainers", true, (None, None)),
            ("Initialized", initialized, init_cond),
            ("Ready", ready, not_ready.clone()),
            ("ContainersReady", ready, not_ready),
            ("PodScheduled", true, (None, None)),
        ];
        wanted
            .into_iter()
            .map(|(type_, ok, (reason, message))| {
                let status = if ok { "True" } else { "False" };
                let since = self
                    .conditions
                    .iter()
                    .find(|c| c.type_ == type_ && c.status == status)
                    .and_then(|c| c.last_transition_time.clone())
                    .unwrap_or(Time(now));
                PodCondition {
                    type_: type_.into(),
                    status: status.into(),
                    reason,
                    message,
                    last_transition_time: Some(since),
                    ..Default::default()
                }
            })
            .collect()
    }
}

fn succeeded(c: &ContainerStatus) -> bool {
    c.state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

fn waiting_status(name: &str, image: &Option<String>, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        image: image.clone().unwrap_or_default(),
        // Images are not pulled, so there is no image digest to report.
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A terminated state as kubelet reports it: reason Completed for exit 0, Error otherwise.
pub(super) fn termination(exit_code: i32, started: Timestamp, finished: Timestamp) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code,
        reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
        started_at: Some(Time(started)),
        finished_at: Some(Time(finished)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    fn condition(s: &PodStatus, t: &str) -> (String, Option<String>) {
        let c = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn conditions_follow_the_lifecycle() {
        let mut book = Book::new(&pod());
        let s = book.status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            condition(&s, "Initialized"),
            ("False".into(), Some("ContainersNotInitialized".into()))
        );
        assert_eq!(condition(&s, "PodScheduled").0, "True");
        let now = Timestamp::now();
        book.terminated(Kind::Init, 0, termination(0, now, now));
        book.running(Kind::Main, 0, now);
        book.phase = Phase::Running;
        let s = book.status();
        assert_eq!(condition(&s, "Initialized").0, "True");
        assert_eq!(condition(&s, "Ready").0, "True");
        assert_eq!(condition(&s, "ContainersReady").0, "True");
        book.terminated(Kind::Main, 0, termination(2, now, now));
        book.finish(Phase::Failed, None, None);
        let s = book.status();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(condition(&s, "Ready"), ("False".into(), Some("PodCompleted".into())));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
    }
}
