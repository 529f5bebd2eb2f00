//! What only a real kube-apiserver can show (tests/realkube, started once for this file): deploy/ and
//! the CRD are accepted as they are, and `cdkube node` is a node the API server works with — a Ready
//! Node with a renewed Lease, Pods bound and run, `kubectl logs` through the API server.
mod support;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::cluster::wait_for;
use support::kubectl::Kubectl;
use support::realkube::Namespace;

const START: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_is_accepted_by_the_real_api_server() {
    let ns = Namespace::create().await;
    let kubectl = Kubectl::new(&ns.kubeconfig, ns.dir.path());
    let deploy = support::fixtures::repo_root().join("deploy");
    // Everything of deploy/, checked by the server's own validation and admission without being stored.
    let out = kubectl
        .ok(&["apply", "-k", deploy.to_str().unwrap(), "--dry-run=server"])
        .await;
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/pipelines.delivery.inge.4pr.es",
        "clusterrole.rbac.authorization.k8s.io/cdkube",
        "deployment.apps/cdkube",
        "networkpolicy.networking.k8s.io/cdkube",
        "service/cdkube",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    // The examples beside it (webhook Secret, a Service exposing the webhook port) are valid too.
    for example in ["webhook-secret.example.yaml", "webhook-service.example.yaml"] {
        let file = deploy.join(example);
        kubectl
            .ok(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
            .await;
    }
    // The invalid examples the CRD can tell are refused at apply, with the embedded server's words.
    for case in support::fixtures::REFUSED_BY_THE_CRD {
        let file = support::fixtures::fixture(&format!("invalid/{}", case.file));
        let err = kubectl
            .fails(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
            .await;
        assert!(
            err.contains(case.error),
            "{}: expected {:?} in:\n{err}",
            case.file,
            case.error
        );
    }
    // Every valid example Pipeline is accepted by the real server's CRD schema.
    let examples = support::fixtures::repo_root().join("fixtures/pipelines");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            kubectl
                .ok(&["apply", "--dry-run=server", "-f", path.to_str().unwrap()])
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdkube_node_is_a_node_the_api_server_works_with() {
    let ns = Namespace::create().await;
    let node_name = format!("cdkube-{}", ns.name);
    let mut agent = support::ChildGuard(
        support::cdkube_command(&["node", "--name", &node_name, "--listen", "127.0.0.1:0"])
            .args(["--namespace", &ns.name, "--kubeconfig"])
            .arg(&ns.kubeconfig)
            .arg("--state-dir")
            .arg(ns.dir.path().join("node"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cdkube node"),
    );

    let nodes: Api<Node> = Api::all(ns.client.clone());
    let node = wait_for("the Node to be Ready", START, || async {
        let node = nodes.get_opt(&node_name).await.ok().flatten()?;
        let ready = node
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(node)
    })
    .await;
    let status = node.status.unwrap();
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
        "{addresses:?}"
    );
    let port = status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port;
    assert_ne!(port, 0);
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), "kube-node-lease");
    let lease = wait_for("the node's Lease", START, || async {
        leases.get_opt(&node_name).await.ok().flatten()
    })
    .await;
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some(node_name.as_str()));

    // A Pod in the agent's namespace is bound to it, runs, and its log reaches kubectl through the API server.
    let pods: Api<Pod> = Api::default_namespaced(ns.client.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo one; echo two"]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("create Pod");
    let done = wait_for("the Pod to succeed", START, || async {
        let pod = pods.get("hello").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(pod)
    })
    .await;
    assert_eq!(done.spec.unwrap().node_name.as_deref(), Some(node_name.as_str()));
    let kubectl = Kubectl::new(&ns.kubeconfig, ns.dir.path());
    assert_eq!(kubectl.ok(&["logs", "hello"]).await, "one\ntwo\n");
    assert_eq!(kubectl.ok(&["logs", "hello", "--tail=1"]).await, "two\n");
    assert_eq!(kubectl.ok(&["logs", "-f", "hello"]).await, "one\ntwo\n");

    // SIGTERM: a graceful stop, exit 0.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let status = wait_for("cdkube node to exit", START, || {
        let exited = agent.0.try_wait().expect("wait");
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(0));
}

#[test]
fn cdkube_node_without_a_usable_kubeconfig_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.kubeconfig");
    let out = support::cdkube_command(&["node", "--kubeconfig", missing.to_str().unwrap()])
        .output()
        .expect("run cdkube node");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("cdkube node: reading kubeconfig"), "{stderr}");
}
