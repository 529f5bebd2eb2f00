//! The local pod runner driven through the embedded API server, as a user sees it: Pod status via
//! the real kube-rs client over HTTP, logs from the log files (and via the real `/usr/bin/kubectl`
//! where the kubectl view is the point), processes via /proc.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cdkube::embedded::runner::VolumeMode;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStateTerminated, ContainerStatus, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use support::cluster::Cluster;
use support::kubectl::{self, Kubectl};
use support::process::{WAIT, alive, wait_dead_async as wait_dead, wait_pid_async as wait_pid};

/// A test's cluster (API server and pod runner, from the shared toolkit) seen through its Pods.
struct PodCluster {
    cluster: Cluster,
    client: Client,
}

impl PodCluster {
    async fn start(mode: Option<VolumeMode>) -> PodCluster {
        let mut plane = PodCluster::server_only().await;
        plane.cluster.start_runner(mode).await;
        plane
    }

    /// The API server alone: Pods stay unscheduled until something binds them.
    async fn server_only() -> PodCluster {
        Self::server_in(&std::env::temp_dir()).await
    }

    /// The API server alone, its state directory under `parent`.
    async fn server_in(parent: &std::path::Path) -> PodCluster {
        // Runner warnings (failed API calls) show in the output of a failing test.
        cdkube::telemetry::init();
        let cluster = Cluster::start_in(parent, |_| {}).await;
        let client = cluster.client().await;
        PodCluster { cluster, client }
    }

    fn state_dir(&self) -> PathBuf {
        self.cluster.state_dir()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, pod: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods().create(&PostParams::default(), &pod).await.unwrap()
    }

    /// Waits (watching, with a timeout) until the Pod satisfies `cond`.
    async fn wait(&self, name: &str, what: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
        let waited = tokio::time::timeout(
            WAIT,
            await_condition(self.pods(), name, move |p: Option<&Pod>| p.is_some_and(&cond)),
        );
        match waited.await {
            Ok(Ok(Some(p))) => p,
            other => {
                let now = self.pods().get_opt(name).await.unwrap();
                panic!(
                    "Pod {name}: {what} not reached ({:?}); Pod is now {now:#?}",
                    other.err()
                );
            }
        }
    }

    async fn wait_phase(&self, name: &str, phase: &str) -> Pod {
        self.wait(name, &format!("phase {phase}"), |p| phase_of(p) == Some(phase))
            .await
    }

    async fn wait_gone(&self, name: &str) {
        let waited = tokio::time::timeout(WAIT, await_condition(self.pods(), name, |p: Option<&Pod>| p.is_none()));
        assert!(matches!(waited.await, Ok(Ok(_))), "Pod {name} still exists");
    }

    /// Reason strings of the Pod's Events (events.k8s.io view), oldest first.
    async fn event_reasons(&self, name: &str) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// kubectl against this cluster, or `None` when it is absent (see [`kubectl::present`]).
    fn kubectl(&self) -> Option<Kubectl> {
        kubectl::present("the kubectl part of this test").then(|| self.cluster.kubectl())
    }

    /// The log file of a container, as the runner wrote it (what `kubectl logs` serves).
    fn log(&self, pod: &str, container: &str) -> String {
        let path = cdkube::embedded::logs::container_log_path(&self.state_dir(), "default", pod, container);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A file the Pod wrote into its emptyDir volume `volume`.
    fn volume_file(&self, pod: &str, volume: &str, file: &str) -> PathBuf {
        cdkube::embedded::runner::PodDir::new(&self.state_dir(), "default", pod)
            .volume(volume)
            .join(file)
    }
}

fn phase_of(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

fn container(p: &Pod, init: bool, idx: usize) -> ContainerStatus {
    let s = p.status.clone().unwrap();
    let list = if init {
        s.init_container_statuses
    } else {
        s.container_statuses
    };
    list.unwrap()[idx].clone()
}

fn terminated(c: &ContainerStatus) -> ContainerStateTerminated {
    c.state
        .clone()
        .unwrap()
        .terminated
        .unwrap_or_else(|| panic!("{} not terminated: {c:?}", c.name))
}

fn condition(p: &Pod, type_: &str) -> String {
    let conds = p.status.as_ref().unwrap().conditions.clone().unwrap();
    conds
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
        .unwrap_or_default()
}

/// A Pod whose container records its pid in an emptyDir and sleeps.
fn sleeper(name: &str, extra_spec: serde_json::Value) -> serde_json::Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{
                "name": "sleep", "image": "busybox",
                // `$$$$` is `$$` after Kubernetes' $(VAR) expansion. Paths are relative to the
                // working directory so the Pod works in both volume modes.
                "workingDir": "/data",
                "command": ["sh", "-c", "echo $$$$ > pid; exec sleep 1000"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }]
        }
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_pod_succeeds_and_kubectl_logs_shows_the_line() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "doing-nothing-1"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "build", "image": "busybox",
                "command": ["echo"], "args": ["building something...", "now I'm done"]
            }]}
        }))
        .await;
    let pod = plane.wait_phase("doing-nothing-1", "Succeeded").await;
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("cdkube-dev"));
    let status = pod.status.clone().unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    let c = container(&pod, false, 0);
    let t = terminated(&c);
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert!(t.started_at.unwrap().0 <= t.finished_at.unwrap().0);
    assert_eq!(c.image, "busybox");
    assert_eq!(condition(&pod, "PodScheduled"), "True");
    assert_eq!(condition(&pod, "Initialized"), "True");
    assert_eq!(condition(&pod, "Ready"), "False");
    assert_eq!(
        plane.log("doing-nothing-1", "build"),
        "building something... now I'm done\n"
    );
    let kubectl = plane.kubectl();
    if let Some(k) = &kubectl {
        let out = k.ok(&["logs", "doing-nothing-1"]).await;
        assert_eq!(out, "building something... now I'm done\n");
    }
    let reasons = plane.event_reasons("doing-nothing-1").await;
    for expected in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} Event in {reasons:?}"
        );
    }
    if let Some(k) = &kubectl {
        let text = k.ok(&["describe", "pod", "doing-nothing-1"]).await;
        for expected in [
            "Node:             cdkube-dev",
            "Status:           Succeeded",
            "Exit Code:    0",
            "Successfully assigned default/doing-nothing-1 to cdkube-dev",
            "Container image \"busybox\" not pulled",
            "Started container build",
        ] {
            assert!(text.contains(expected), "kubectl describe lacks {expected:?}:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_command_fails_the_pod_with_its_exit_code() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fails"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo broken >&2; exit 3"],
                 "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
            ]}
        }))
        .await;
    let pod = plane.wait_phase("fails", "Failed").await;
    let t = terminated(&container(&pod, false, 0));
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    // The API server's qosClass survives the runner's status updates, as kubelet leaves it.
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.qos_class.as_deref()),
        Some("Guaranteed")
    );
    assert_eq!(plane.log("fails", "main"), "broken\n", "stderr belongs in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_finished_pod_removes_its_workspace_and_logs() {
    let plane = PodCluster::start(None).await;
    plane.create(ordered_init_pod("finished")).await;
    plane.wait_phase("finished", "Succeeded").await;
    let dir = cdkube::embedded::runner::PodDir::new(&plane.state_dir(), "default", "finished");
    assert!(dir.log("main").is_file());
    plane.pods().delete("finished", &DeleteParams::default()).await.unwrap();
    plane.wait_gone("finished").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while dir.path().exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} kept after deletion",
            dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_does_not_exist_is_a_start_error() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-such"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["cdkube-no-such-program"]}
            ]}
        }))
        .await;
    let pod = plane.wait_phase("no-such", "Failed").await;
    let t = terminated(&container(&pod, false, 0));
    assert_eq!((t.exit_code, t.reason.as_deref()), (128, Some("StartError")));
    assert!(t.message.unwrap_or_default().contains("cdkube-no-such-program"));
}

/// Two init containers append to a shared emptyDir in order; the main container reads it. The
/// first writes a line, pauses, and writes another: had the second started before the first ended,
/// its line would sit between them.
fn ordered_init_pod(name: &str) -> serde_json::Value {
    let mount = json!([{"name": "work", "mountPath": "/work"}]);
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "first", "image": "busybox", "workingDir": "/work",
                 "command": ["sh", "-c", "echo first starts >> order; sleep 0.3; echo first ends >> order"],
                 "volumeMounts": mount},
                {"name": "second", "image": "busybox", "workingDir": "/work",
                 "command": ["sh", "-c", "echo second >> order"], "volumeMounts": mount}
            ],
            "containers": [
                {"name": "main", "image": "busybox", "command": ["cat", "/work/order"], "volumeMounts": mount}
            ]
        }
    })
}

async fn init_containers_share_an_empty_dir(mode: VolumeMode) {
    let plane = PodCluster::start(Some(mode)).await;
    plane.create(ordered_init_pod("ordered")).await;
    let pod = plane.wait_phase("ordered", "Succeeded").await;
    let first = terminated(&container(&pod, true, 0));
    let second = terminated(&container(&pod, true, 1));
    assert_eq!((first.exit_code, second.exit_code), (0, 0));
    assert_eq!(
        plane.log("ordered", "main"),
        "first starts\nfirst ends\nsecond\n",
        "init containers ran out of order or overlapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_share_an_empty_dir_in_a_mount_namespace() {
    let probe = tempfile::tempdir().unwrap();
    if !cdkube::embedded::runner::namespaces_permitted(probe.path()) {
        eprintln!("SKIPPED: mount namespaces are not permitted here; the rewrite-mode test covers this");
        return;
    }
    init_containers_share_an_empty_dir(VolumeMode::Namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_share_an_empty_dir_with_path_rewriting() {
    init_containers_share_an_empty_dir(VolumeMode::Rewrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_fails_the_pod_and_the_containers_never_start() {
    let plane = PodCluster::start(None).await;
    let mut pod = ordered_init_pod("init-fails");
    pod["spec"]["initContainers"][0]["command"] = json!(["sh", "-c", "exit 7"]);
    plane.create(pod).await;
    let pod = plane.wait_phase("init-fails", "Failed").await;
    assert_eq!(terminated(&container(&pod, true, 0)).exit_code, 7);
    let second = container(&pod, true, 1);
    let main = container(&pod, false, 0);
    assert!(
        second.state.unwrap().terminated.is_none(),
        "the second init container ran"
    );
    assert_eq!(
        main.state.unwrap().waiting.unwrap().reason.as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(condition(&pod, "Initialized"), "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_value_from_fields_secrets_and_config_maps_with_var_expansion() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "env-pod", "labels": {"app": "demo"}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "busybox",
                "command": ["echo"],
                "args": ["$(POD)", "$(APP)", "$(TOKEN)", "$(COLOR)", "$(GREETING)", "$$(POD)", "$(UNDEFINED)"],
                "env": [
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                    {"name": "GREETING", "value": "hello-$(POD)"}
                ]
            }]}
        }))
        .await;
    // The Secret does not exist yet: kubelet waits with CreateContainerConfigError.
    plane
        .wait("env-pod", "CreateContainerConfigError", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c[0].state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CreateContainerConfigError")
                })
        })
        .await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "data": {"token": "czNjcjN0"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(plane.client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"color": "blue"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(plane.client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    plane.wait_phase("env-pod", "Succeeded").await;
    assert_eq!(
        plane.log("env-pod", "main"),
        "env-pod demo s3cr3t blue hello-env-pod $(POD) $(UNDEFINED)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdkube_command_runs_the_cdkube_binary() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "self"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "ghcr.io/example/cdkube:latest", "command": ["/usr/local/bin/cdkube", "version"]}
            ]}
        }))
        .await;
    plane.wait_phase("self", "Succeeded").await;
    assert_eq!(
        plane.log("self", "main"),
        format!("cdkube {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_kills_a_long_sleeper() {
    let plane = PodCluster::start(None).await;
    // The deadline counts from the runner taking the Pod, so it must leave the container time to
    // start on a loaded machine; the exit code below shows the runner's SIGTERM ended it.
    plane
        .create(sleeper("deadline", json!({"activeDeadlineSeconds": 4})))
        .await;
    let pid = wait_pid(&plane.volume_file("deadline", "data", "pid")).await;
    let pod = plane.wait_phase("deadline", "Failed").await;
    let status = pod.status.clone().unwrap();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    wait_dead(pid).await;
    let pod = plane
        .wait("deadline", "container terminated", |p| {
            container(p, false, 0).state.is_some_and(|s| s.terminated.is_some())
        })
        .await;
    assert_eq!(
        terminated(&container(&pod, false, 0)).exit_code,
        128 + 15,
        "SIGTERM ends the sleeper"
    );
    let reasons = plane.event_reasons("deadline").await;
    assert!(reasons.iter().any(|r| r == "DeadlineExceeded"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Killing"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_pod_kills_its_processes_and_removes_it() {
    let plane = PodCluster::start(None).await;
    plane.create(sleeper("doomed", json!({}))).await;
    let pid = wait_pid(&plane.volume_file("doomed", "data", "pid")).await;
    plane.wait_phase("doomed", "Running").await;
    plane.pods().delete("doomed", &DeleteParams::default()).await.unwrap();
    plane.wait_gone("doomed").await;
    wait_dead(pid).await;
    assert!(
        !plane.volume_file("doomed", "data", "pid").exists(),
        "the Pod's workspace was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_running_when_the_runner_died_is_failed_by_the_next_runner() {
    runner_restart_fails_running_pods(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_running_when_the_runner_died_is_failed_by_the_next_runner_with_path_rewriting() {
    runner_restart_fails_running_pods(Some(VolumeMode::Rewrite)).await;
}

async fn runner_restart_fails_running_pods(mode: Option<VolumeMode>) {
    let mut plane = PodCluster::start(mode).await;
    plane.create(sleeper("orphan", json!({}))).await;
    let pid = wait_pid(&plane.volume_file("orphan", "data", "pid")).await;
    plane.wait_phase("orphan", "Running").await;
    // The premise: the runner recorded its process before dying (right after starting it; the
    // sleeper may have written its own pid first).
    let recorded = cdkube::embedded::runner::PodDir::new(&plane.state_dir(), "default", "orphan").pid_file("sleep");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&recorded).is_ok_and(|t| t.starts_with(&format!("{pid} "))) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never recorded {pid}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Dropping the runner aborts it like a crash: its processes keep running.
    drop(plane.cluster.runner.take());
    assert!(alive(pid));
    plane.cluster.start_runner(mode).await;
    let pod = plane.wait_phase("orphan", "Failed").await;
    assert_eq!(pod.status.clone().unwrap().reason.as_deref(), Some("RunnerRestarted"));
    let t = terminated(&container(&pod, false, 0));
    assert_eq!(t.reason.as_deref(), Some("ContainerStatusUnknown"));
    wait_dead(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_on_failure_restarts_until_success() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flaky"},
            "spec": {
                "restartPolicy": "OnFailure",
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{
                    "name": "main", "image": "busybox",
                    "workingDir": "/data",
                    "command": ["sh", "-c", "if [ -f ran ]; then echo second; else touch ran; echo first; exit 1; fi"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }]
            }
        }))
        .await;
    let pod = plane.wait_phase("flaky", "Succeeded").await;
    let c = container(&pod, false, 0);
    assert_eq!(c.restart_count, 1);
    assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(terminated(&container(&pod, false, 0)).exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_volume_fails_the_pod_with_the_reason() {
    let plane = PodCluster::start(None).await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nfs"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "share", "nfs": {"server": "127.0.0.1", "path": "/x"}}],
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]
            }
        }))
        .await;
    let pod = plane.wait_phase("nfs", "Failed").await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("FailedMount"));
    assert!(status.message.unwrap().contains("nfs volumes are not supported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binding_subresource_assigns_a_node_once_as_the_scheduler_does() {
    let plane = PodCluster::server_only().await;
    plane.create(sleeper("unscheduled", json!({}))).await;
    let binding = |pod: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let pp = PostParams::default();
    let api = plane.pods();
    // An update may not change spec.nodeName: binding is the only way.
    let patch = json!({"spec": {"nodeName": "node-a"}});
    let refused = api
        .patch(
            "unscheduled",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 422),
        "{refused:?}"
    );
    let bad = api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            "unscheduled",
            &pp,
            &json!({
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "unscheduled"}, "target": {"kind": "Node"}
            }),
        )
        .await;
    assert!(
        matches!(bad, Err(kube::Error::Api(ref e)) if e.code == 422 && e.message.contains("target.name")),
        "{bad:?}"
    );
    // Annotations are copied into the Pod: a non-string one would make it unreadable to clients.
    let mut poisoned = binding("unscheduled", "node-a");
    poisoned["metadata"]["annotations"] = json!({"a": 1});
    let refused = api
        .create_subresource::<_, serde_json::Value>("binding", "unscheduled", &pp, &poisoned)
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 400),
        "{refused:?}"
    );
    api.create_subresource::<_, serde_json::Value>("binding", "unscheduled", &pp, &binding("unscheduled", "node-a"))
        .await
        .unwrap();
    let pod = api.get("unscheduled").await.unwrap();
    assert_eq!(pod.spec.clone().unwrap().node_name.as_deref(), Some("node-a"));
    assert_eq!(condition(&pod, "PodScheduled"), "True");
    let again = api
        .create_subresource::<_, serde_json::Value>("binding", "unscheduled", &pp, &binding("unscheduled", "node-b"))
        .await;
    assert!(
        matches!(again, Err(kube::Error::Api(ref e)) if e.code == 409 && e.message.contains("already assigned to node \"node-a\"")),
        "{again:?}"
    );
    let missing = api
        .create_subresource::<_, serde_json::Value>("binding", "no-such-pod", &pp, &binding("no-such-pod", "node-a"))
        .await;
    assert!(
        matches!(missing, Err(kube::Error::Api(ref e)) if e.code == 404),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bound_to_another_node_are_left_alone() {
    let plane = PodCluster::start(None).await;
    plane
        .create(sleeper("elsewhere", json!({"nodeName": "some-other-node"})))
        .await;
    plane.create(sleeper("here", json!({}))).await;
    plane.wait_phase("here", "Running").await;
    let pod = plane.pods().get("elsewhere").await.unwrap();
    assert!(pod.status.and_then(|s| s.phase).is_none_or(|p| p == "Pending"));
    assert!(!plane.volume_file("elsewhere", "data", "pid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_a_mount_namespace_sees_the_host_read_only_and_not_the_state_directory() {
    let probe = tempfile::tempdir().unwrap();
    if !cdkube::embedded::runner::namespaces_permitted(probe.path()) {
        eprintln!("SKIPPED: mount namespaces are not permitted here; README says what Rewrite mode exposes");
        return;
    }
    // A host directory the user may write, outside /tmp (which Pods may write too): /var is read-only to Pods.
    let mut plane = PodCluster::server_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
    plane.cluster.start_runner(Some(VolumeMode::Namespace)).await;
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let kubeconfig = plane.cluster.kubeconfig();
    let script = format!(
        "if touch '{host}/written' 2>/dev/null; then echo host-writable; else echo host-read-only; fi; \
         if [ -e '{kubeconfig}' ]; then echo kubeconfig-visible; else echo kubeconfig-hidden; fi",
        host = host.path().display(),
        kubeconfig = kubeconfig.display(),
    );
    plane
        .create(json!({
            "metadata": {"name": "nosy"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", script]}
            ]}
        }))
        .await;
    plane.wait_phase("nosy", "Succeeded").await;
    assert_eq!(plane.log("nosy", "main"), "host-read-only\nkubeconfig-hidden\n");
    assert!(!host.path().join("written").exists());
    assert!(kubeconfig.exists(), "hidden from the Pod, not removed");
}
