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
    let mut p = pods.exec("shell", ["sh", "-c", "exit 7"], &AttachParams::default()).await.unwrap();
    let status = tokio::time::timeout(WAIT, p.take_status().unwrap()).await.unwrap().unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("7"));

    // A command that cannot start: an InternalError status.
    let mut p = pods.exec("shell", ["no-such-program-here"], &AttachParams::default()).await.unwrap();
    let status = tokio::time::timeout(WAIT, p.take_status().unwrap()).await.unwrap().unwrap();
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

    let out = k.run_stdin(&["exec", "-i", "work", "--", "sh", "-c", "tr a-z A-Z"], "shout\n").await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "SHOUT\n"), "stderr: {}", out.stderr);

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
        assert_eq!(e.involved_object.field_path.as_deref(), case.field_path, "{}", case.reason);
        assert_eq!(e.reporting_component.as_deref(), Some(case.controller), "{}", case.reason);
        assert_eq!(e.message.as_deref(), Some(case.message), "{}", case.reason);
        assert_eq!(e.type_.as_deref(), Some("Normal"), "{}", case.reason);
    }

    if !kubectl::present("kubectl describe pod / get events") {
        return;
    }
    let k = plane.cluster.kubectl();
    let described = k.ok(&["describe", "pod", "build"]).await;
    let get = k.ok(&["get", "events", "--field-selector", "involvedObject.name=build"]).await;
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
