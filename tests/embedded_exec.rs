//! `pods/exec` of the embedded API server over WebSocket, run by the local pod runner's records,
//! as the real kube-rs client (`Api::exec`, with its `ws` feature) and the real `/usr/bin/kubectl`
//! see it; and the Events a Pod's life leaves.
mod support;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{AttachParams, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use support::cluster::Cluster;
use support::kubectl;
use support::process::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An API server and pod runner, seen through the default namespace's Pods.
struct Plane {
    cluster: Cluster,
    client: Client,
}

impl Plane {
    async fn start() -> Plane {
        cdkube::telemetry::init();
        let mut cluster = Cluster::start().await;
        cluster.start_runner(None).await;
        let client = cluster.client().await;
        Plane { cluster, client }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, pod: serde_json::Value) {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods().create(&PostParams::default(), &pod).await.unwrap();
    }

    /// Waits (watching, with a timeout) until the Pod is in `phase`.
    async fn wait_phase(&self, name: &str, phase: &str) {
        let want = phase.to_string();
        let cond = move |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some(want.as_str())
        };
        let waited = tokio::time::timeout(WAIT, await_condition(self.pods(), name, cond)).await;
        assert!(matches!(waited, Ok(Ok(Some(_)))), "Pod {name} did not reach {phase}");
    }

    /// Creates a Pod whose container `main` sleeps in the workspace volume `/workspace` (having
    /// written `marker` there), with `GREETING=hello`, and waits until it runs.
    async fn running_pod(&self, name: &str) {
        self.create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "ws", "emptyDir": {}}],
                "containers": [{
                    "name": "main", "image": "busybox",
                    "command": ["sh", "-c", "echo from-main > /workspace/marker; exec sleep 600"],
                    "workingDir": "/workspace",
                    "env": [{"name": "GREETING", "value": "hello"}],
                    "volumeMounts": [{"name": "ws", "mountPath": "/workspace"}],
                }],
            },
        }))
        .await;
        self.wait_phase(name, "Running").await;
    }

    /// A raw GET of an exec URL without an upgrade: the checks' status code and message.
    async fn exec_status(&self, path_and_query: &str) -> (u16, String) {
        let req = http::Request::get(path_and_query).body(Vec::new()).unwrap();
        match self.client.request_text(req).await {
            Err(kube::Error::Api(e)) => (e.code, e.message),
            other => panic!("expected an API error for {path_and_query}, got {other:?}"),
        }
    }
}

/// Everything a reader yields, with a timeout.
async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut out = String::new();
    tokio::time::timeout(WAIT, r.read_to_string(&mut out))
        .await
        .expect("output did not end in time")
        .expect("read output");
    out
}

#[tokio::test]
async fn kube_rs_exec_runs_in_the_container_with_its_env_workdir_and_stdin() {
    let plane = Plane::start().await;
    plane.running_pod("shell").await;
    let pods = plane.pods();

    let command = ["sh", "-c", "pwd; echo $GREETING; cat marker; echo oops >&2"];
    let mut p = pods.exec("shell", command, &AttachParams::default()).await.unwrap();
    let (out, err) = (p.stdout().unwrap(), p.stderr().unwrap());
    let status = p.take_status().unwrap();
    assert_eq!(read_all(out).await, "/workspace\nhello\nfrom-main\n");
    assert_eq!(read_all(err).await, "oops\n");
    let status = tokio::time::timeout(WAIT, status).await.unwrap().unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));

    // stdin, closed with v5's close message: cat sees its end and exits.
    let params = AttachParams::default().stdin(true).stderr(false);
    let mut p = pods.exec("shell", ["cat"], &params).await.unwrap();
    let mut stdin = p.stdin().unwrap();
    let out = p.stdout().unwrap();
    let status = p.take_status().unwrap();
    stdin.write_all(b"piped through\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(out).await, "piped through\n");
    let status = tokio::time::timeout(WAIT, status).await.unwrap().unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));

    // A non-zero exit: Failure, NonZeroExitCode, the code as the ExitCode cause.
    let mut p = pods
        .exec("shell", ["sh", "-c", "exit 7"], &AttachParams::default())
        .await
        .unwrap();
    let status = tokio::time::timeout(WAIT, p.take_status().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("7"));

    // A command that cannot start: an InternalError status.
    let mut p = pods
        .exec("shell", ["no-such-program-here"], &AttachParams::default())
        .await
        .unwrap();
    let status = tokio::time::timeout(WAIT, p.take_status().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
}

#[tokio::test]
async fn exec_errors_are_the_api_servers() {
    let plane = Plane::start().await;
    plane.running_pod("target").await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]},
        }))
        .await;
    plane.wait_phase("done", "Succeeded").await;
    let base = "/api/v1/namespaces/default/pods";
    struct Case {
        name: &'static str,
        path: String,
        code: u16,
        message: &'static str,
    }
    let cases = [
        Case {
            name: "missing Pod",
            path: format!("{base}/nope/exec?command=true&stdout=true"),
            code: 404,
            message: "pods \"nope\" not found",
        },
        Case {
            name: "unknown container",
            path: format!("{base}/target/exec?command=true&stdout=true&container=other"),
            code: 400,
            message: "container other is not valid for pod target",
        },
        Case {
            name: "completed Pod",
            path: format!("{base}/done/exec?command=true&stdout=true"),
            code: 400,
            message: "cannot exec into a container in a completed pod; current phase is Succeeded",
        },
        Case {
            name: "no command",
            path: format!("{base}/target/exec?stdout=true"),
            code: 400,
            message: "you must specify at least 1 command",
        },
        Case {
            name: "no upgrade",
            path: format!("{base}/target/exec?command=true&stdout=true"),
            code: 400,
            message: "Upgrade request required",
        },
    ];
    for case in cases {
        let (code, message) = plane.exec_status(&case.path).await;
        assert_eq!((code, message.as_str()), (case.code, case.message), "{}", case.name);
    }
}

#[tokio::test]
async fn kubectl_exec_prints_output_and_returns_the_exit_code() {
    if !kubectl::present("kubectl exec") {
        return;
    }
    let plane = Plane::start().await;
    plane.running_pod("work").await;
    let k = plane.cluster.kubectl();

    let out = k.run(&["exec", "work", "--", "sh", "-c", "echo hi; exit 3"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (3, "hi\n"), "stderr: {}", out.stderr);

    let out = k
        .run_stdin(&["exec", "-i", "work", "--", "sh", "-c", "tr a-z A-Z"], "shout\n")
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "SHOUT\n"),
        "stderr: {}",
        out.stderr
    );

    let err = k.fails(&["exec", "work", "-c", "other", "--", "true"]).await;
    assert!(err.contains("container other is not valid for pod work"), "{err}");
}

#[tokio::test]
async fn a_finished_pod_tells_its_story_in_events() {
    let plane = Plane::start().await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "build"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "compile", "image": "busybox", "command": ["sh", "-c", "echo built"]},
            ]},
        }))
        .await;
    plane.wait_phase("build", "Succeeded").await;

    // core/v1, as kubectl reads them: kubelet's fieldPath on container Events, each from its reporter.
    let events: Api<CoreEvent> = Api::namespaced(plane.client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap().items;
    let find = |reason: &str| {
        list.iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some("build"))
            .unwrap_or_else(|| panic!("no {reason} Event for Pod build in {list:#?}"))
    };
    struct Case {
        reason: &'static str,
        field_path: Option<&'static str>,
        controller: &'static str,
        message: &'static str,
    }
    let container = Some("spec.containers{compile}");
    let cases = [
        Case {
            reason: "Scheduled",
            field_path: None,
            controller: "default-scheduler",
            message: "Successfully assigned default/build to cdkube-dev",
        },
        Case {
            reason: "Pulled",
            field_path: container,
            controller: "kubelet",
            message: "Container image \"busybox\" not pulled: cdkube runs the container's command on this machine",
        },
        Case {
            reason: "Created",
            field_path: container,
            controller: "kubelet",
            message: "Created container: compile",
        },
        Case {
            reason: "Started",
            field_path: container,
            controller: "kubelet",
            message: "Started container compile",
        },
    ];
    for case in &cases {
        let e = find(case.reason);
        assert_eq!(
            e.involved_object.field_path.as_deref(),
            case.field_path,
            "{}",
            case.reason
        );
        assert_eq!(
            e.reporting_component.as_deref(),
            Some(case.controller),
            "{}",
            case.reason
        );
        assert_eq!(e.message.as_deref(), Some(case.message), "{}", case.reason);
        assert_eq!(e.type_.as_deref(), Some("Normal"), "{}", case.reason);
    }

    if !kubectl::present("kubectl describe pod / get events") {
        return;
    }
    let k = plane.cluster.kubectl();
    let described = k.ok(&["describe", "pod", "build"]).await;
    let get = k
        .ok(&["get", "events", "--field-selector", "involvedObject.name=build"])
        .await;
    for case in &cases {
        for (what, text) in [("describe pod", &described), ("get events", &get)] {
            assert!(
                text.contains(case.reason) && text.contains(case.message),
                "kubectl {what} lacks {} / {:?}:\n{text}",
                case.reason,
                case.message
            );
        }
    }
    assert!(described.contains("default-scheduler"), "{described}");
    assert!(get.contains("pod/build"), "{get}");
}

/// The state of ephemeral container `name` of the Pod, if reported.
fn ephemeral_state(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    let statuses = pod.status.as_ref()?.ephemeral_container_statuses.as_ref()?;
    statuses.iter().find(|s| s.name == name)?.state.clone()
}

impl Plane {
    /// Waits until ephemeral container `name` of Pod `pod` has terminated; its exit code.
    async fn ephemeral_exit(&self, pod: &str, name: &str) -> i32 {
        let n = name.to_string();
        let cond = move |p: Option<&Pod>| {
            p.and_then(|p| ephemeral_state(p, &n))
                .is_some_and(|s| s.terminated.is_some())
        };
        let waited = tokio::time::timeout(WAIT, await_condition(self.pods(), pod, cond)).await;
        let pod = match waited {
            Ok(Ok(Some(p))) => p,
            other => panic!("ephemeral container {name} did not end: {other:?}"),
        };
        ephemeral_state(&pod, name).unwrap().terminated.unwrap().exit_code
    }

    /// PATCHes `pods/NAME/ephemeralcontainers` with a strategic merge patch, as kubectl debug does.
    async fn patch_ephemeral(&self, pod: &str, patch: serde_json::Value) -> Result<Pod, kube::Error> {
        let pp = kube::api::PatchParams::default();
        self.pods()
            .patch_subresource("ephemeralcontainers", pod, &pp, &kube::api::Patch::Strategic(patch))
            .await
    }
}

#[tokio::test]
async fn ephemeral_containers_are_added_validated_and_run_in_the_workspace() {
    let plane = Plane::start().await;
    plane.running_pod("host").await;
    let debugger = json!({"name": "dbg", "image": "busybox", "targetContainerName": "main",
        "command": ["sh", "-c", "cat /proc/self/cwd/../workspace/marker 2>/dev/null; echo debugging; exit 4"]});
    let pod = plane
        .patch_ephemeral("host", json!({"spec": {"ephemeralContainers": [debugger]}}))
        .await
        .unwrap();
    assert_eq!(pod.spec.unwrap().ephemeral_containers.unwrap()[0].name, "dbg");
    assert_eq!(plane.ephemeral_exit("host", "dbg").await, 4);
    let log = cdkube::embedded::logs::container_log_path(&plane.cluster.state_dir(), "default", "host", "dbg");
    assert!(std::fs::read_to_string(&log).unwrap().ends_with("debugging\n"));

    // Existing ones are immutable, names unique, images required; nothing else of the spec moves.
    struct Case {
        name: &'static str,
        list: serde_json::Value,
        cause: &'static str,
    }
    let cases = [
        Case {
            name: "changed",
            list: json!([{"name": "dbg", "image": "alpine", "targetContainerName": "main",
                "command": ["sh", "-c", "cat /proc/self/cwd/../workspace/marker 2>/dev/null; echo debugging; exit 4"]}]),
            cause: "existing ephemeral containers \"dbg\" may not be changed",
        },
        Case {
            name: "duplicate of a container",
            list: json!([{"name": "main", "image": "busybox", "command": ["true"]}]),
            cause: "Duplicate value: \"main\"",
        },
        Case {
            name: "no image",
            list: json!([{"name": "second", "command": ["true"]}]),
            cause: "spec.ephemeralContainers[1].image: Required value",
        },
    ];
    let pods = plane.pods();
    for case in cases {
        let mut pod = pods.get("host").await.unwrap();
        let mut list = serde_json::to_value(pod.spec.as_ref().unwrap().ephemeral_containers.clone()).unwrap();
        match case.name {
            "changed" => list = case.list,
            _ => list
                .as_array_mut()
                .unwrap()
                .extend(case.list.as_array().unwrap().iter().cloned()),
        }
        pod.spec.as_mut().unwrap().ephemeral_containers = Some(serde_json::from_value(list).unwrap());
        let err = pods
            .replace_subresource("ephemeralcontainers", "host", &PostParams::default(), &pod)
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(e) => {
                assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{}", case.name);
                assert!(e.message.contains(case.cause), "{}: {}", case.name, e.message);
            }
            other => panic!("{}: {other:?}", case.name),
        }
    }
    // Through the Pod itself, ephemeral containers cannot change.
    let mut pod = pods.get("host").await.unwrap();
    pod.spec.as_mut().unwrap().ephemeral_containers = None;
    let err = pods.replace("host", &PostParams::default(), &pod).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 422), "{err:?}");
}

#[tokio::test]
async fn kubectl_debug_adds_a_container_whose_output_kubectl_logs_shows() {
    if !kubectl::present("kubectl debug") {
        return;
    }
    let plane = Plane::start().await;
    plane.running_pod("app").await;
    let k = plane.cluster.kubectl();
    let out = k
        .run(&[
            "debug",
            "app",
            "--image=busybox",
            "--profile=general",
            "--target=main",
            "--",
            "sh",
            "-c",
            "echo from-debug",
        ])
        .await;
    assert_eq!(out.code, 0, "kubectl debug failed: {}", out.stderr);
    let pod = plane.pods().get("app").await.unwrap();
    let name = pod.spec.unwrap().ephemeral_containers.unwrap()[0].name.clone();
    assert_eq!(plane.ephemeral_exit("app", &name).await, 0);
    assert_eq!(k.ok(&["logs", "app", "-c", &name]).await, "from-debug\n");
}

/// Grants ServiceAccount `default/name` the Role `name` with `rules` in the default namespace.
async fn grant(plane: &Plane, name: &str, rules: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let role: Role = serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
    }))
    .unwrap();
    let pp = PostParams::default();
    Api::<Role>::namespaced(plane.client.clone(), "default")
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(plane.client.clone(), "default")
        .create(&pp, &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_websocket_exec_needs_create_on_pods_exec_too() {
    if !kubectl::present("kubectl exec as a ServiceAccount") {
        return;
    }
    let plane = Plane::start().await;
    plane.running_pod("guarded").await;
    let read = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    let mut get_only = read.clone();
    get_only
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}));
    let mut both = read;
    both.as_array_mut()
        .unwrap()
        .push(json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]}));
    grant(&plane, "peeker", get_only).await;
    grant(&plane, "operator", both).await;
    let k = plane.cluster.kubectl();

    let peeker = plane.cluster.service_account_kubeconfig("default", "peeker").await;
    let out = k.run_with(&peeker, &["exec", "guarded", "--", "echo", "in"]).await;
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot create resource \"pods/exec\""),
        "{}",
        out.stderr
    );

    let operator = plane.cluster.service_account_kubeconfig("default", "operator").await;
    let out = k.run_with(&operator, &["exec", "guarded", "--", "echo", "in"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "in\n"), "{}", out.stderr);
}

#[tokio::test]
async fn attach_streams_what_the_container_writes_until_it_ends() {
    let plane = Plane::start().await;
    plane
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "ws", "emptyDir": {}}],
                "containers": [{
                    "name": "main", "image": "busybox",
                    "command": ["sh", "-c", "echo before; while [ ! -e /ws/go ]; do sleep 0.1; done; echo after-go"],
                    "volumeMounts": [{"name": "ws", "mountPath": "/ws"}],
                }],
            },
        }))
        .await;
    plane.wait_phase("talker", "Running").await;
    let pods = plane.pods();
    let params = AttachParams::default().stderr(false);
    let mut attached = pods.attach("talker", &params).await.unwrap();
    let out = attached.stdout().unwrap();
    let status = attached.take_status().unwrap();
    // Attached: now let the container go on (through exec, into the shared volume).
    let mut go = pods
        .exec("talker", ["touch", "/ws/go"], &AttachParams::default())
        .await
        .unwrap();
    let done = tokio::time::timeout(WAIT, go.take_status().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status.as_deref(), Some("Success"));
    assert_eq!(read_all(out).await, "after-go\n");
    let status = tokio::time::timeout(WAIT, status).await.unwrap().unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
}
