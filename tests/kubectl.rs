//! The real `/usr/bin/kubectl` against the embedded API server: the user's workflows with the
//! Pipeline CRD (apply, get with printer columns, describe with events, explain, logs, delete)
//! and the errors a user sees (invalid manifests, missing token).
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::json;
use support::cluster::Cluster;
use support::fixtures::{crd_path, fixture};
use support::kubectl;
use tokio::io::AsyncBufReadExt;

/// What the suite's tests say when they skip.
const SUITE: &str = "the kubectl suite";

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The header and the row of `name` in kubectl's table output, split on runs of spaces.
fn table_row(output: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let split = |l: &str| {
        l.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut lines = output.lines();
    let header = split(lines.next().unwrap_or_default());
    let row = lines.find(|l| l.starts_with(name)).map(split).unwrap_or_default();
    (header, row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_runs_kubectl_matching_the_server_version() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    let out = k.ok(&["version", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("version json");
    assert_eq!(v["serverVersion"]["minor"], "32");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.4-cdkube");
    // The dispatcher asks /version anonymously and execs kubectl.1.<minor>; for 1.32 it is
    // itself a 1.32 kubectl and runs its own.
    let client = v["clientVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(client.starts_with("v1.32."), "dispatcher picked {client}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_workflow_apply_get_describe_explain_delete() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    let crd = crd_path();

    let out = k.ok(&["apply", "-f", path_str(&crd)]).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/pipelines.delivery.inge.4pr.es created"
    );
    let out = k.ok(&["apply", "-f", path_str(&crd)]).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/pipelines.delivery.inge.4pr.es unchanged"
    );

    let manifest = fixture("doing-nothing.yaml");
    let out = k.ok(&["apply", "-f", path_str(&manifest)]).await;
    assert_eq!(out.trim(), "pipeline.delivery.inge.4pr.es/doing-nothing created");

    // Update: a changed targetVersion is a client-side apply merge patch.
    let changed = cluster.dir.path().join("doing-nothing-v2.yaml");
    let text = std::fs::read_to_string(&manifest)
        .expect("fixture")
        .replace("targetVersion: \"0.1\"", "targetVersion: \"0.2\"");
    std::fs::write(&changed, text).expect("write");
    let out = k.ok(&["apply", "-f", path_str(&changed)]).await;
    assert_eq!(out.trim(), "pipeline.delivery.inge.4pr.es/doing-nothing configured");

    let yaml = k.ok(&["get", "pipeline", "doing-nothing", "-o", "yaml"]).await;
    assert!(yaml.contains("targetVersion: \"0.2\""), "{yaml}");
    assert!(yaml.contains("generation: 2"), "spec change bumps generation:\n{yaml}");
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );

    // The controller's view: status written through the status subresource.
    let status = json!({"status": {"phase": "Building", "builtShortCommit": "abc1234", "targetVersion": "0.1",
        "builtCommit": "abc1234def5678abc1234def5678abc1234def56"}});
    k.ok(&[
        "patch",
        "pipeline",
        "doing-nothing",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])
    .await;

    let out = k.ok(&["get", "pipelines"]).await;
    let (header, row) = table_row(&out, "doing-nothing");
    assert_eq!(header, ["NAME", "COMMIT", "VERSION", "PHASE", "AGE"], "{out}");
    assert_eq!(&row[..4], ["doing-nothing", "abc1234", "0.1", "Building"], "{out}");
    let out = k.ok(&["get", "pl", "-o", "wide"]).await;
    let (header, row) = table_row(&out, "doing-nothing");
    assert_eq!(
        header,
        ["NAME", "COMMIT", "VERSION", "PHASE", "AGE", "REPO", "BRANCH"],
        "{out}"
    );
    assert_eq!(row[5], "http://github.com/inge4pres/just-a-test", "{out}");
    let out = k.ok(&["get", "cdkube"]).await;
    assert_eq!(
        table_row(&out, "doing-nothing").1.first().map(String::as_str),
        Some("doing-nothing"),
        "category lookup:\n{out}"
    );

    // Events written by kube-rs's Recorder (events.k8s.io/v1) show up in describe (core/v1 view).
    let client = cluster.client().await;
    let pipelines: Api<cdkube::api::Pipeline> = Api::namespaced(client.clone(), "default");
    let pipeline = pipelines.get("doing-nothing").await.expect("get pipeline");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "cdkube".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "BuildStarted".into(),
        note: Some("Building commit abc1234 (0.1)".into()),
        action: "Build".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &pipeline.object_ref(&()))
        .await
        .expect("publish");
    recorder
        .publish(&event, &pipeline.object_ref(&()))
        .await
        .expect("publish again (series)");
    let out = k.ok(&["describe", "pipeline", "doing-nothing"]).await;
    assert!(out.contains("Name:         doing-nothing"), "{out}");
    assert!(out.contains("Phase:") && out.contains("Building"), "{out}");
    assert!(out.contains("Built Short Commit:  abc1234"), "{out}");
    let events = out
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section:\n{out}"));
    assert!(
        events.contains("BuildStarted") && events.contains("Building commit abc1234 (0.1)"),
        "{out}"
    );
    assert!(events.contains("Normal"), "{out}");

    let out = k.ok(&["explain", "pipeline.spec"]).await;
    assert!(out.contains("KIND:       Pipeline"), "{out}");
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    assert!(out.contains("repo\t<string> -required-"), "{out}");
    assert!(out.contains("historyLimit\t<integer>"), "{out}");

    let out = k.ok(&["delete", "-f", path_str(&manifest)]).await;
    assert_eq!(out.trim(), "pipeline.delivery.inge.4pr.es \"doing-nothing\" deleted");
    let err = k.fails(&["get", "pipeline", "doing-nothing"]).await;
    assert!(
        err.contains("pipelines.delivery.inge.4pr.es \"doing-nothing\" not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_and_updates() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    k.ok(&["apply", "--server-side", "-f", path_str(&crd_path())]).await;
    let manifest = fixture("doing-nothing.yaml");
    let out = k.ok(&["apply", "--server-side", "-f", path_str(&manifest)]).await;
    assert_eq!(
        out.trim(),
        "pipeline.delivery.inge.4pr.es/doing-nothing serverside-applied"
    );
    let out = k
        .ok(&[
            "get",
            "pl",
            "doing-nothing",
            "-o",
            "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}",
        ])
        .await;
    assert_eq!(out, "kubectl/Apply");
    // A second manager changing an owned field conflicts, until forced.
    let changed = cluster.dir.path().join("v2.yaml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&manifest)
            .expect("read")
            .replace("\"0.1\"", "\"0.3\""),
    )
    .expect("write");
    let err = k
        .fails(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            path_str(&changed),
        ])
        .await;
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".spec.targetVersion"),
        "{err}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        path_str(&changed),
    ])
    .await;
    let out = k
        .ok(&["get", "pl", "doing-nothing", "-o", "jsonpath={.spec.targetVersion}"])
        .await;
    assert_eq!(out, "0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_with_the_field_named() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    k.ok(&["apply", "-f", path_str(&crd_path())]).await;
    for case in support::fixtures::REFUSED_BY_THE_CRD {
        let err = k
            .fails(&["apply", "-f", path_str(&fixture(&format!("invalid/{}", case.file)))])
            .await;
        assert!(
            err.contains(case.error),
            "{}: expected {:?} in:\n{err}",
            case.file,
            case.error
        );
    }
    let out = k.ok(&["get", "pipelines"]).await;
    assert!(out.is_empty(), "nothing was created: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_finished_pod_and_its_status_column() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    let pod_file = cluster.dir.path().join("pod.yaml");
    std::fs::write(
        &pod_file,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: builder\nspec:\n  restartPolicy: Never\n  containers:\n  - name: build\n    image: busybox\n    command: [echo]\n    args: [\"building something...\", \"now I'm done\"]\n",
    )
    .expect("write pod");
    let out = k.ok(&["apply", "-f", path_str(&pod_file)]).await;
    assert_eq!(out.trim(), "pod/builder created");
    let err = k.fails(&["logs", "builder"]).await;
    assert!(err.contains("is waiting to start: ContainerCreating"), "{err}");

    // What the local runner does: append to the contract path, then report the container terminated.
    let log = cdkube::embedded::logs::container_log_path(&cluster.state_dir(), "default", "builder", "build");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "building something... now I'm done\n").expect("write log");
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "default");
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "build", "image": "busybox", "imageID": "",
        "ready": false, "restartCount": 0, "started": false,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}]}});
    pods.patch_status("builder", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");

    assert_eq!(k.ok(&["logs", "builder"]).await, "building something... now I'm done\n");
    assert_eq!(
        k.ok(&["logs", "-f", "builder", "-c", "build"]).await,
        "building something... now I'm done\n"
    );
    assert_eq!(
        k.ok(&["logs", "--tail=1", "pod/builder"]).await,
        "building something... now I'm done\n"
    );
    let out = k.ok(&["get", "pods"]).await;
    let (header, row) = table_row(&out, "builder");
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert_eq!(&row[..4], ["builder", "0/1", "Completed", "0"], "{out}");

    let out = k.ok(&["delete", "pod", "builder"]).await;
    assert_eq!(out.trim(), "pod \"builder\" deleted");
    let name = pods.get_opt("builder").await.expect("get").map(|p| p.name_any());
    assert_eq!(name, None);
}

async fn next_line(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("line in time")
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ends_when_the_container_terminates() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "default");
    let pod: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}),
    )
    .expect("pod");
    pods.create(&Default::default(), &pod).await.expect("create");
    let log = cdkube::embedded::logs::container_log_path(&cluster.state_dir(), "default", "runner", "main");
    std::fs::create_dir_all(log.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log, "line 1\n").expect("write");
    let running = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
        "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status("runner", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .expect("running");

    let mut follow = k
        .command(k.kubeconfig(), &["logs", "-f", "runner"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("line 1"));
    // Appends arrive while following; termination ends the stream.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
    std::io::Write::write_all(&mut f, b"line 2\n").expect("append");
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("line 2"));
    let done = json!({"status": {"phase": "Failed", "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error",
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}}}]}});
    pods.patch_status("runner", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("terminated");
    assert_eq!(next_line(&mut lines).await, None, "the stream ends after termination");
    let status = tokio::time::timeout(Duration::from_secs(30), follow.wait())
        .await
        .expect("follow ends")
        .expect("wait");
    assert!(status.success());
    let out = k.ok(&["get", "pod", "runner"]).await;
    assert_eq!(table_row(&out, "runner").1[2], "Error", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_get_401() {
    let cluster = Cluster::start().await;
    assert!(cluster.server.addr().ip().is_loopback());
    // The kubeconfig holds the token: user-only, whether or not kubectl is here to use it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cluster.server.kubeconfig_path())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    if !kubectl::present(SUITE) {
        return;
    }
    let k = cluster.kubectl();
    let no_token = cluster.dir.path().join("no-token.kubeconfig");
    let text = std::fs::read_to_string(cluster.server.kubeconfig_path()).expect("kubeconfig");
    std::fs::write(&no_token, text.replace(cluster.server.token(), "wrong-token")).expect("write");
    let out = k.run_with(&no_token, &["get", "pods"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("error: You must be logged in to the server"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_configmap_and_namespace_from_the_cli() {
    if !kubectl::present(SUITE) {
        return;
    }
    let cluster = Cluster::start().await;
    let k = cluster.kubectl();
    // kubectl's typed clients send these as protobuf.
    let out = k.ok(&["create", "namespace", "team"]).await;
    assert_eq!(out.trim(), "namespace/team created");
    let out = k
        .ok(&[
            "-n",
            "team",
            "create",
            "secret",
            "generic",
            "git-creds",
            "--from-literal=username=bot",
            "--from-literal=password=s3cr3t",
        ])
        .await;
    assert_eq!(out.trim(), "secret/git-creds created");
    let out = k
        .ok(&[
            "-n",
            "team",
            "get",
            "secret",
            "git-creds",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(out, "czNjcjN0");
    let out = k.ok(&["-n", "team", "get", "secrets"]).await;
    let (header, row) = table_row(&out, "git-creds");
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    assert_eq!(&row[..3], ["git-creds", "Opaque", "2"], "{out}");
    let out = k
        .ok(&["-n", "team", "create", "configmap", "settings", "--from-literal=a=1"])
        .await;
    assert_eq!(out.trim(), "configmap/settings created");
    let err = k.fails(&["create", "namespace", "team"]).await;
    assert!(err.contains("namespaces \"team\" already exists"), "{err}");
    let out = k.ok(&["delete", "namespace", "team"]).await;
    assert_eq!(out.trim(), "namespace \"team\" deleted");
    let err = k.fails(&["get", "namespace", "team"]).await;
    assert!(err.contains("namespaces \"team\" not found"), "{err}");
}
