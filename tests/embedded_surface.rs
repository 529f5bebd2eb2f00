//! The embedded cluster's API surface for real tools, through the real kube-rs client and the real
//! `/usr/bin/kubectl`: metadata-only reads and watches, aggregated discovery and APIServices, the
//! `scale` subresource of custom resources, the runner's Node (Ready, Lease, cordon), Services with
//! their ClusterIPs and the `kubernetes` Service, and Pod eviction.
mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use support::cluster::{Cluster, gone, wait_for};
use support::kubectl;
use support::raw;

const SUITE: &str = "the embedded API surface suite";
const NODE: &str = cdkube::embedded::runner::DEFAULT_NODE_NAME;
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const WAIT: Duration = Duration::from_secs(60);

fn pod(name: &str, labels: serde_json::Value, command: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{"name": "main", "image": "busybox", "command": command}]},
    }))
    .expect("Pod")
}

async fn create_pod(client: &Client, name: &str, labels: serde_json::Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod(name, labels, &["sleep", "1000"]))
        .await
        .expect("create Pod")
}

async fn node_of(client: &Client, name: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get(name).await.expect("get Pod").spec.and_then(|s| s.node_name)
}

/// A cluster with the pod runner, once its Node is registered and Ready.
async fn cluster_with_node() -> Cluster {
    cdkube::telemetry::init();
    let mut cluster = Cluster::start().await;
    cluster.start_runner(None).await;
    let nodes: Api<Node> = Api::all(cluster.client().await);
    wait_for("the runner's Node to be Ready", WAIT, || async {
        let node = nodes.get_opt(NODE).await.expect("get Node")?;
        let conditions = node.status?.conditions?;
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_watcher_sees_pods_appear_and_go() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // kube 5's metadata watcher: an Api of PartialObjectMeta asks for metadata only.
    let metas: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(metas, watcher::Config::default()).boxed();
    // The watch is listening once its initial list is done.
    next_event(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    create_pod(&client, "watched", json!({"app": "watched"})).await;
    let seen = next_event(
        &mut events,
        "the Pod appearing",
        |e| matches!(e, watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("watched")),
    )
    .await;
    let watcher::Event::Apply(seen) = seen else {
        unreachable!()
    };
    assert_eq!(
        seen.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(seen.metadata.labels.unwrap_or_default()["app"], "watched");

    // The Pod is unbound (no runner): deleting it removes it at once.
    pods.delete("watched", &Default::default()).await.expect("delete Pod");
    next_event(
        &mut events,
        "the Pod going",
        |e| matches!(e, watcher::Event::Delete(o) if o.metadata.name.as_deref() == Some("watched")),
    )
    .await;
}

type MetaEvents = futures::stream::BoxStream<'static, watcher::Result<watcher::Event<PartialObjectMeta<Pod>>>>;

/// The next event of a metadata watch that `wanted` accepts (others are skipped), within [`WAIT`].
async fn next_event(
    events: &mut MetaEvents,
    what: &str,
    wanted: impl Fn(&watcher::Event<PartialObjectMeta<Pod>>) -> bool,
) -> watcher::Event<PartialObjectMeta<Pod>> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.expect("metadata watch event");
            if wanted(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the metadata watch ended before {what}"),
        Err(_) => panic!("no metadata watch event for {what} within {WAIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_get_list_and_patch() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "meta"}, "data": {"k": "v"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.expect("create");

    let got = cms.get_metadata("meta").await.expect("get_metadata");
    assert_eq!(
        got.types.as_ref().map(|t| t.api_version.as_str()),
        Some("meta.k8s.io/v1")
    );
    assert_eq!(got.metadata.name.as_deref(), Some("meta"));

    let listed = cms.list_metadata(&ListParams::default()).await.expect("list_metadata");
    let names: Vec<_> = listed.items.iter().filter_map(|o| o.metadata.name.clone()).collect();
    assert!(names.contains(&"meta".to_string()), "{names:?}");
    assert!(names.contains(&"kube-root-ca.crt".to_string()), "{names:?}");

    let patch = json!({"metadata": {"labels": {"patched": "yes"}}});
    let patched = cms
        .patch_metadata("meta", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch_metadata");
    assert_eq!(patched.metadata.labels.unwrap_or_default()["patched"], "yes");
    // Only the metadata changed.
    let full = cms.get("meta").await.expect("get");
    assert_eq!(full.data.unwrap_or_default()["k"], "v");

    // The raw answers: kinds, and 406 for a form that does not fit the request.
    let path = "/api/v1/namespaces/default/configmaps";
    let one = raw::get(&client, &format!("{path}/meta"), METADATA).await;
    assert_eq!(
        (one.status, one.body["kind"].as_str()),
        (200, Some("PartialObjectMetadata"))
    );
    assert!(one.body.get("data").is_none(), "only metadata: {}", one.body);
    let list = raw::get(&client, path, METADATA_LIST).await;
    assert_eq!(list.body["kind"], "PartialObjectMetadataList");
    assert_eq!(list.body["items"][0]["kind"], "PartialObjectMetadata");
    struct Refused {
        path: String,
        accept: &'static str,
        message: &'static str,
    }
    let refused = [
        Refused {
            path: format!("{path}/meta"),
            accept: METADATA_LIST,
            message: "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)",
        },
        Refused {
            path: path.to_string(),
            accept: METADATA,
            message: "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)",
        },
        Refused {
            path: path.to_string(),
            accept: "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v9",
            message: "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        },
    ];
    for r in refused {
        let reply = raw::get(&client, &r.path, r.accept).await;
        assert_eq!(reply.status, 406, "{} as {}: {}", r.path, r.accept, reply.body);
        assert_eq!(reply.body["reason"], "NotAcceptable");
        assert_eq!(reply.body["message"], r.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_discovery_and_apiservices() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    for (path, group) in [("/api", ""), ("/apis", "discovery.k8s.io")] {
        let reply = raw::get(&client, path, AGGREGATED).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.content_type,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        assert_eq!(reply.body["kind"], "APIGroupDiscoveryList");
        assert_eq!(reply.body["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = reply.body["items"].as_array().expect("items");
        let found = items
            .iter()
            .any(|g| g["metadata"]["name"].as_str().unwrap_or_default() == group);
        assert!(found, "{path} lists group {group:?}");
    }
    // Older clients still get the legacy documents.
    let legacy = raw::get(&client, "/apis", "application/json").await;
    assert_eq!(legacy.body["kind"], "APIGroupList");

    if !kubectl::present(SUITE) {
        return;
    }
    let k = cluster.kubectl();
    let resources = k.ok(&["api-resources"]).await;
    for name in ["nodes", "services", "endpoints", "endpointslices", "apiservices"] {
        assert!(
            resources.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} in:\n{resources}"
        );
    }
    let apiservices = k.ok(&["get", "apiservices"]).await;
    let row = apiservices
        .lines()
        .find(|l| l.starts_with("v1.discovery.k8s.io "))
        .unwrap_or_else(|| panic!("no v1.discovery.k8s.io in:\n{apiservices}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..3], &["Local", "True"], "{row}");
    let core = k.ok(&["get", "apiservice", "v1.", "-o", "json"]).await;
    let core: serde_json::Value = serde_json::from_str(&core).expect("json");
    assert_eq!(core["spec"]["groupPriorityMinimum"], 18000);
    assert_eq!(core["status"]["conditions"][0]["reason"], "Local");
}

fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_of_a_custom_resource() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    cdkube::embedded::dev::apply_manifests(&client, &widget_crd().to_string(), "crd")
        .await
        .expect("CRD");
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"replicas": 1}}))
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.expect("create Widget");
    let status = json!({"status": {"replicas": 1, "selector": "app=w1"}});
    widgets
        .patch_status("w1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");

    let scale = widgets.get_scale("w1").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    let st = scale.status.expect("scale status");
    assert_eq!((st.replicas, st.selector.as_deref()), (1, Some("app=w1")));

    let patched = widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("patch scale");
    assert_eq!(patched.spec.and_then(|s| s.replicas), Some(2));
    // A PUT of the Scale, with the resourceVersion it was read at as its precondition.
    let mut wanted = widgets.get_scale("w1").await.expect("get scale");
    wanted.spec = Some(k8s_openapi::api::autoscaling::v1::ScaleSpec { replicas: Some(3) });
    let replaced = widgets
        .replace_scale("w1", &PostParams::default(), &wanted)
        .await
        .expect("replace scale");
    assert_eq!(replaced.spec.and_then(|s| s.replicas), Some(3));
    let stale = widgets
        .replace_scale("w1", &PostParams::default(), &wanted)
        .await
        .expect_err("a stale resourceVersion");
    assert!(matches!(stale, kube::Error::Api(ref s) if s.code == 409), "{stale}");
    let bad = widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas");
    match bad {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message
                    .contains(".spec.replicas: Invalid value: -1: should be a non-negative integer"),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
    let missing = widgets.get_scale("nope").await.expect_err("missing");
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404), "{missing}");

    if !kubectl::present(SUITE) {
        return;
    }
    let k = cluster.kubectl();
    k.ok(&["scale", "widget/w1", "--replicas=5"]).await;
    let w = widgets.get("w1").await.expect("get Widget");
    assert_eq!(w.data["spec"]["replicas"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_node_is_ready_with_a_lease_and_respects_cordon() {
    let cluster = cluster_with_node().await;
    let client = cluster.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait_for("the node's Lease", WAIT, || async {
        leases.get_opt(NODE).await.expect("get Lease")
    })
    .await;
    let node: Api<Node> = Api::all(client.clone());
    let capacity = node
        .get(NODE)
        .await
        .unwrap()
        .status
        .unwrap()
        .capacity
        .unwrap_or_default();
    assert!(
        capacity.contains_key("cpu") && capacity.contains_key("pods"),
        "{capacity:?}"
    );
    if !kubectl::present(SUITE) {
        return;
    }
    let k = cluster.kubectl();
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(
        nodes.lines().any(|l| l.split_whitespace().take(2).eq([NODE, "Ready"])),
        "{nodes}"
    );

    k.ok(&["cordon", NODE]).await;
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    create_pod(&client, "waiting", json!({})).await;
    // The runner reports it cannot place the Pod, and leaves it unbound.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("a FailedScheduling Event for the Pod", WAIT, || async {
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("waiting")
        })
    })
    .await;
    assert_eq!(node_of(&client, "waiting").await, None, "bound while cordoned");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for("PodScheduled False (Unschedulable)", WAIT, || async {
        let status = pods.get("waiting").await.expect("get").status?;
        status
            .conditions?
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .then_some(())
    })
    .await;

    k.ok(&["uncordon", NODE]).await;
    wait_for("the Pod to be bound after uncordon", WAIT, || async {
        (node_of(&client, "waiting").await.as_deref() == Some(NODE)).then_some(())
    })
    .await;
    pods.delete("waiting", &Default::default()).await.expect("delete");
    wait_for("the Pod to go", WAIT, || async {
        gone(&pods, "waiting").await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_deletes_the_pod() {
    let cluster = cluster_with_node().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&client, "evicted", json!({"app": "evicted"})).await;
    wait_for("the Pod to run", WAIT, || async {
        let p = pods.get("evicted").await.expect("get");
        (p.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(())
    })
    .await;
    let status = pods.evict("evicted", &EvictParams::default()).await.expect("evict");
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    wait_for("the evicted Pod to go", WAIT, || async {
        gone(&pods, "evicted").await.then_some(())
    })
    .await;
    let missing = pods.evict("evicted", &EvictParams::default()).await.expect_err("gone");
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404), "{missing}");

    if !kubectl::present(SUITE) {
        return;
    }
    create_pod(&client, "drained", json!({"app": "drained"})).await;
    let k = cluster.kubectl();
    k.ok(&[
        "drain",
        NODE,
        "--pod-selector",
        "app=drained",
        "--force",
        "--grace-period=1",
        "--timeout=60s",
    ])
    .await;
    wait_for("the drained Pod to go", WAIT, || async {
        gone(&pods, "drained").await.then_some(())
    })
    .await;
    k.ok(&["uncordon", NODE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_cluster_ips_and_kubernetes_exists() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = services.get("kubernetes").await.expect("the kubernetes Service");
    let spec = kubernetes.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let port = &spec.ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 443));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
            i32::from(cluster.server.addr().port())
        ))
    );
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = endpoints.get("kubernetes").await.expect("Endpoints");
    assert_eq!(ep.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices.get("kubernetes").await.expect("EndpointSlice");
    assert_eq!(slice.address_type, "IPv4");

    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}))
    .unwrap();
    let created = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create Service");
    let ip: std::net::Ipv4Addr = created.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    assert_eq!(
        u32::from(ip) >> 20,
        u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20,
        "{ip} in 10.96.0.0/12"
    );

    struct Bad {
        spec: serde_json::Value,
        message: &'static str,
    }
    let bad = [
        Bad {
            spec: json!({}),
            message: "Service \"bad\" is invalid: spec.ports: Required value",
        },
        Bad {
            spec: json!({"ports": [{"port": 80}, {"port": 81}]}),
            message: "Service \"bad\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]",
        },
        Bad {
            spec: json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}),
            message: "Service \"bad\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.1\"]: failed to allocate IP 10.96.0.1: provided IP is already allocated",
        },
    ];
    for b in bad {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": b.spec})).unwrap();
        match services.create(&PostParams::default(), &svc).await {
            Err(kube::Error::Api(s)) => assert_eq!((s.code, s.message.as_str()), (422, b.message)),
            other => panic!("{:?}", other.map(|s| s.spec)),
        }
    }
    if !kubectl::present(SUITE) {
        return;
    }
    let k = cluster.kubectl();
    // `kubectl create service` sends protobuf; a NodePort Service gets a node port.
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]).await;
    let np = services.get("np").await.expect("np").spec.unwrap();
    let node_port = np.ports.unwrap()[0].node_port.expect("a node port");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    // A second client-side apply merges the ports by port number: the name stays.
    let manifest = |target: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: applied}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: {target}}}]\n"
        )
    };
    for target in [8080, 9090] {
        let out = k.run_stdin(&["apply", "-f", "-"], &manifest(target)).await;
        assert!(out.success(), "{}", out.stderr);
    }
    let applied = services
        .get("applied")
        .await
        .expect("applied")
        .spec
        .unwrap()
        .ports
        .unwrap();
    assert_eq!(applied[0].name.as_deref(), Some("http"));
    assert_eq!(
        applied[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
    let out = k.ok(&["get", "services"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("kubernetes ") && l.contains("10.96.0.1") && l.contains("443/TCP")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_metadata_through_raw_requests_carries_partial_objects() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = cms
        .watch_metadata(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch_metadata")
        .boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "watched"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.expect("create");
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.next().await {
            if let kube::api::WatchEvent::Added(obj) = ev.expect("event")
                && obj.metadata.name.as_deref() == Some("watched")
            {
                return obj;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("saw the ConfigMap");
    assert_eq!(found.types.map(|t| t.kind), Some("PartialObjectMetadata".to_string()));
}
