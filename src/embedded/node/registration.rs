//! The Node object and its heartbeat, as kubelet keeps them: the Node is created (or taken over) at
//! start with a Ready condition, addresses and the kubelet endpoint's port; a Lease in
//! `kube-node-lease` is renewed every [`LEASE_RENEW`]; the Ready condition's heartbeat is refreshed
//! every [`STATUS_REFRESH`].
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

/// Field manager of the agent's writes.
const MANAGER: &str = "cdkube-node";
/// Namespace of node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// kubelet's default `nodeLeaseDurationSeconds`.
const LEASE_SECONDS: i32 = 40;
/// kubelet renews its Lease every quarter of the lease duration.
pub(super) const LEASE_RENEW: Duration = Duration::from_secs(10);
/// kubelet's `nodeStatusReportFrequency` when nothing changed is 5 minutes; a minute keeps the
/// condition's heartbeat fresh for readers without adding load.
pub(super) const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// What the Node says about this agent.
#[derive(Clone, Debug)]
pub(super) struct NodeFacts {
    /// The Node's name.
    pub(super) name: String,
    /// The address the API server reaches the kubelet endpoint at (`InternalIP`).
    pub(super) address: String,
    /// The kubelet endpoint's port (`status.daemonEndpoints.kubeletEndpoint.Port`).
    pub(super) port: u16,
}

/// Creates the Node if it is absent (an existing one is taken over, as a restarted kubelet does),
/// then writes its status.
pub(super) async fn register(client: &Client, facts: &NodeFacts) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": facts.name,
            "labels": {
                "kubernetes.io/hostname": facts.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "node.cdkube.dev/agent": "cdkube",
            },
        },
    }))
    .expect("a Node literal deserialises");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    report_status(client, facts).await
}

/// Writes the Node's status: Ready, addresses, capacity, the kubelet port and system info.
pub(super) async fn report_status(client: &Client, facts: &NodeFacts) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now().to_string();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let status = json!({
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "cdkube node agent is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": facts.address},
                {"type": "Hostname", "address": facts.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.port}},
            "capacity": {"cpu": cpus.to_string(), "memory": memory(), "pods": "110"},
            "allocatable": {"cpu": cpus.to_string(), "memory": memory(), "pods": "110"},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "cdkube node agent (local processes)",
                "containerRuntimeVersion": "cdkube://local-process",
                "kubeletVersion": concat!("cdkube-", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        }
    });
    nodes
        .patch_status(
            &facts.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(status_doc(status)),
        )
        .await
}

/// A server-side-apply body for the Node's status.
fn status_doc(status: serde_json::Value) -> serde_json::Value {
    let mut doc = json!({"apiVersion": "v1", "kind": "Node"});
    doc.as_object_mut()
        .expect("object")
        .extend(status.as_object().expect("object").clone());
    doc
}

/// The machine's memory as a quantity (`MemTotal` of /proc/meminfo), `0` when unknown.
fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().strip_suffix("kB").map(|k| format!("{}Ki", k.trim())))
        })
        .unwrap_or_else(|| "0".into())
}

/// Creates or renews the Node's Lease (owned by the Node, so it goes when the Node does).
pub(super) async fn renew_lease(client: &Client, node: &Node) -> kube::Result<Lease> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let name = node.metadata.name.clone().unwrap_or_default();
    let owner = node.controller_owner_ref(&()).map(|mut o| {
        o.controller = None;
        o
    });
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(),
        },
    });
    leases
        .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(lease))
        .await
}

/// Now as a MicroTime (`renewTime` carries microseconds).
fn micro_time() -> serde_json::Value {
    serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or_default()
}
