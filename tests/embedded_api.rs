//! kube-rs over HTTPS against the embedded API server: the Kubernetes semantics the operator
//! relies on — CRUD, conflicts, generation, status isolation, finalizers, garbage collection,
//! selectors and pagination, patches and server-side apply, events, watches (replay, bookmarks,
//! 410 and the kube-rs watcher's recovery) and CRD validation.
mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Pod};
use k8s_openapi::api::events::v1::Event as NewEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    PropagationPolicy, WatchEvent, WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use support::cluster::{Cluster, gone, wait_for};
use support::fixtures::{crd_path, fixture, yaml_file};

const WAIT: Duration = Duration::from_secs(20);

fn pipeline_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("delivery.inge.4pr.es", "v1alpha1", "Pipeline");
    ApiResource::from_gvk_with_plural(&gvk, "pipelines")
}

fn pipelines(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "default", &pipeline_resource())
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(yaml_file(&crd_path())).expect("crd");
    crds.create(&PostParams::default(), &crd).await.expect("create CRD");
    let established = crds.get("pipelines.delivery.inge.4pr.es").await.expect("get CRD");
    let conditions = established.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
}

fn pipeline(name: &str) -> DynamicObject {
    let mut v = yaml_file(&fixture("doing-nothing.yaml"));
    v["metadata"] = json!({"name": name});
    serde_json::from_value(v).expect("pipeline")
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}),
    )
    .expect("pod")
}

#[tokio::test]
async fn crud_conflicts_generation_and_status_isolation() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crd(&client).await;
    let api = pipelines(&client);

    let created = api
        .create(&PostParams::default(), &pipeline("p1"))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let rv1: u64 = created.resource_version().expect("rv").parse().expect("numeric rv");

    let dup = api_error(api.create(&PostParams::default(), &pipeline("p1")).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "pipelines.delivery.inge.4pr.es \"p1\" already exists");

    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));

    // Metadata-only change: new resourceVersion, same generation.
    let mut obj = created.clone();
    obj.labels_mut().insert("team".into(), "a".into());
    let relabeled = api.replace("p1", &PostParams::default(), &obj).await.expect("relabel");
    let rv2: u64 = relabeled.resource_version().expect("rv").parse().expect("rv");
    assert!(rv2 > rv1);
    assert_eq!(relabeled.metadata.generation, Some(1));

    // A write with the old resourceVersion is a 409 Conflict.
    let stale = api_error(api.replace("p1", &PostParams::default(), &obj).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    // Spec change bumps generation; status sent on the main resource is ignored.
    let mut obj = relabeled.clone();
    obj.data["spec"]["targetVersion"] = json!("0.2");
    obj.data["status"] = json!({"phase": "Succeeded"});
    let updated = api
        .replace("p1", &PostParams::default(), &obj)
        .await
        .expect("update spec");
    assert_eq!(updated.metadata.generation, Some(2));
    assert!(
        updated.data.get("status").is_none_or(Value::is_null),
        "status is a subresource: {:?}",
        updated.data
    );

    // Status subresource: status changes, generation and spec do not.
    let status = json!({"status": {"phase": "Building", "observedGeneration": 2}, "spec": {"targetVersion": "9"}});
    let patched = api
        .patch_status("p1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    assert_eq!(patched.data["status"]["phase"], "Building");
    assert_eq!(patched.data["spec"]["targetVersion"], "0.2");
    assert_eq!(patched.metadata.generation, Some(2));

    // A no-op update writes nothing.
    let same = api
        .replace("p1", &PostParams::default(), &patched)
        .await
        .expect("no-op");
    assert_eq!(same.resource_version(), patched.resource_version());

    // generateName.
    let mut generated = pipeline("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("build-".into());
    let named = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    assert!(named.name_any().starts_with("build-") && named.name_any().len() == "build-".len() + 5);

    // dryRun=All validates and returns the object but stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &pipeline("dry")).await.expect("dry run");
    assert!(api.get_opt("dry").await.expect("get").is_none());
}

#[tokio::test]
async fn crd_schema_and_cel_validation_name_the_field() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crd(&client).await;
    let api = pipelines(&client);

    let mut bad = pipeline("bad");
    bad.data["spec"]["historyLimit"] = json!(500);
    bad.data["spec"]["concurrencyPolicy"] = json!("Sometimes");
    let e = api_error(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("Pipeline.delivery.inge.4pr.es \"bad\" is invalid: ["),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(
            "spec.historyLimit: Invalid value: 500: spec.historyLimit in body should be less than or equal to 100"
        ),
        "{}",
        e.message
    );
    assert!(e.message.contains("spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Forbid\", \"Replace\", \"Allow\""), "{}", e.message);

    // The CRD's CEL rule (x-kubernetes-validations) runs too.
    let cel = serde_json::from_value(yaml_file(&fixture("invalid/interval-and-schedule.yaml"))).expect("fixture");
    let e = api_error(api.create(&PostParams::default(), &cel).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("spec: Forbidden: interval and schedule are mutually exclusive"),
        "{}",
        e.message
    );

    // Unknown fields: pruned with a warning by default, rejected with fieldValidation=Strict.
    let mut extra = pipeline("extra");
    extra.data["spec"]["bogus"] = json!(1);
    let stored = api.create(&PostParams::default(), &extra).await.expect("pruned");
    assert!(stored.data["spec"].get("bogus").is_none());
    let raw = serde_json::to_vec(&json!({"apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "strict"}, "spec": {"repo": "r", "buildImage": "b", "buildCommands": ["c"], "targetName": "t", "targetVersion": "1", "bogus": 1}}))
    .expect("json");
    let req =
        http::Request::post("/apis/delivery.inge.4pr.es/v1alpha1/namespaces/default/pipelines?fieldValidation=Strict")
            .header("content-type", "application/json")
            .body(raw)
            .expect("request");
    let e = api_error(client.request::<DynamicObject>(req).await.unwrap_err());
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "Pipeline in version \"v1alpha1\" cannot be handled as a Pipeline: strict decoding error: unknown field \"spec.bogus\""
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"a": "1"}}),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &cm).await.expect("create");
    let pending = cms.delete("held", &DeleteParams::default()).await.expect("delete");
    let obj = pending.left().expect("still present while a finalizer remains");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let e = api_error(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        e.message
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(cms.get_opt("held").await.expect("get").is_none());
}

#[tokio::test]
async fn garbage_collection_background_orphan_and_foreground() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crd(&client).await;
    let api = pipelines(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    async fn owned_pod(api: &Api<DynamicObject>, pods: &Api<Pod>, owner: &str, name: &str) {
        let p = api
            .create(&PostParams::default(), &pipeline(owner))
            .await
            .expect("owner");
        let mut pod = pod(name, json!({}));
        let owner_ref = json!({"apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline", "name": owner,
            "uid": p.uid(), "controller": true, "blockOwnerDeletion": true});
        pod.metadata.owner_references = Some(vec![serde_json::from_value(owner_ref).expect("ref")]);
        pods.create(&PostParams::default(), &pod).await.expect("pod");
    }

    // Background (default): the Pipeline goes at once, its Pod follows.
    owned_pod(&api, &pods, "bg", "bg-pod").await;
    api.delete("bg", &DeleteParams::default()).await.expect("delete");
    wait_for("bg-pod to be collected", WAIT, || async {
        gone(&pods, "bg-pod").await.then_some(())
    })
    .await;

    // Owners are resolved by kind and name and must have the referenced uid: a reference to a
    // kind the server does not serve cannot be resolved and is left alone; one whose owner was
    // recreated (same name, another uid) dangles. The first Pod exists before the second, so the
    // pass that collects the second has seen the first.
    let with_owner = |name: &str, owner: Value| {
        let mut p = pod(name, json!({}));
        p.metadata.owner_references = Some(vec![serde_json::from_value(owner).expect("ref")]);
        p
    };
    let unknown = json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "u-1"});
    pods.create(&PostParams::default(), &with_owner("unresolvable", unknown))
        .await
        .expect("pod");
    api.create(&PostParams::default(), &pipeline("re"))
        .await
        .expect("owner");
    let stale =
        json!({"apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline", "name": "re", "uid": "old-uid"});
    pods.create(&PostParams::default(), &with_owner("stale", stale))
        .await
        .expect("pod");
    wait_for("stale to be collected", WAIT, || async {
        gone(&pods, "stale").await.then_some(())
    })
    .await;
    assert!(pods.get_opt("unresolvable").await.expect("get").is_some());

    // Orphan: the Pod stays, without its owner reference.
    owned_pod(&api, &pods, "or", "or-pod").await;
    api.delete(
        "or",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .expect("delete");
    wait_for("pipeline or to go", WAIT, || async {
        gone(&api, "or").await.then_some(())
    })
    .await;
    let kept = pods.get("or-pod").await.expect("orphan kept");
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());

    // Foreground: the owner waits (deletionTimestamp + foregroundDeletion) until the Pod is gone.
    // A finalizer on the Pod holds it, so the waiting owner can be seen: were foreground deletion
    // to behave like background, the owner would be gone while its dependent still exists.
    owned_pod(&api, &pods, "fg", "fg-pod").await;
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    pods.patch("fg-pod", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .expect("hold fg-pod");
    api.delete("fg", &DeleteParams::foreground()).await.expect("delete");
    wait_for("fg-pod to be deleted by the collector", WAIT, || async {
        let pod = pods.get_opt("fg-pod").await.expect("get fg-pod");
        let pod = pod.expect("fg-pod went despite its finalizer");
        pod.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    let owner = api.get_opt("fg").await.expect("get fg");
    let owner = owner.expect("the owner went before its dependent");
    assert!(owner.metadata.deletion_timestamp.is_some(), "{owner:?}");
    assert!(
        owner.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "{:?}",
        owner.finalizers()
    );
    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("fg-pod", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("release fg-pod");
    wait_for("fg and fg-pod to go", WAIT, || async {
        (gone(&pods, "fg-pod").await && gone(&api, "fg").await).then_some(())
    })
    .await;
}

#[tokio::test]
async fn label_field_selectors_and_paginated_lists() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, labels) in [
        ("a", json!({"app": "web", "env": "prod"})),
        ("b", json!({"app": "api", "env": "dev"})),
        ("c", json!({"app": "db", "tier": "data"})),
        ("d", json!({"app": "web", "env": "dev"})),
        ("e", json!({})),
    ] {
        pods.create(&PostParams::default(), &pod(name, labels))
            .await
            .expect("create");
    }
    let names = |list: kube::core::ObjectList<Pod>| list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>();
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(pods.list(&sel("app in (web, api)")).await.expect("in")),
        ["a", "b", "d"]
    );
    assert_eq!(
        names(pods.list(&sel("app,env notin (prod)")).await.expect("notin")),
        ["b", "c", "d"]
    );
    assert_eq!(names(pods.list(&sel("!tier,app=web")).await.expect("!key")), ["a", "d"]);
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .expect("field")
        ),
        ["c"]
    );
    let bad = api_error(pods.list(&sel("app in (")).await.unwrap_err());
    assert_eq!(bad.code, 400);
    let bad = api_error(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.message, "field label not supported: spec.bogus");

    // limit + continue: a consistent snapshot even when objects are added between pages.
    let first = pods.list(&ListParams::default().limit(2)).await.expect("page 1");
    assert_eq!(names(first.clone()), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    pods.create(&PostParams::default(), &pod("bb", json!({})))
        .await
        .expect("create between pages");
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(names(second.clone()), ["c", "d"]);
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    let token = second.metadata.continue_.clone().expect("continue token");
    let third = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 3");
    assert_eq!(names(third.clone()), ["e"]);
    assert!(third.metadata.continue_.as_deref().is_none_or(str::is_empty));
}

#[tokio::test]
async fn merge_json_strategic_patches_and_server_side_apply() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut two = pod("p", json!({"a": "1"}));
    two.spec
        .as_mut()
        .expect("spec")
        .containers
        .push(serde_json::from_value(json!({"name": "side", "image": "busybox"})).expect("c"));
    pods.create(&PostParams::default(), &two).await.expect("create");

    let merged = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})),
        )
        .await
        .expect("merge");
    assert_eq!(merged.labels().get("b").map(String::as_str), Some("2"));
    assert!(!merged.labels().contains_key("a"));

    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}}]))
            .expect("jp");
    let patched = pods
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .expect("json patch");
    assert_eq!(patched.annotations().get("x").map(String::as_str), Some("y"));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}])).expect("jp");
    let e = api_error(
        pods.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    // Strategic merge: containers merge by name (only `side` changes image).
    let smp = json!({"spec": {"containers": [{"name": "side", "image": "busybox:1.36"}]}});
    let s = pods
        .patch("p", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .expect("strategic");
    let images: Vec<_> = s
        .spec
        .expect("spec")
        .containers
        .into_iter()
        .map(|c| (c.name, c.image.unwrap_or_default()))
        .collect();
    assert_eq!(
        images,
        [
            ("main".to_string(), "busybox".to_string()),
            ("side".to_string(), "busybox:1.36".to_string())
        ]
    );

    // Server-side apply: create-if-absent, conflicts between managers, force.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "1", "only-a": "x"}});
    let a = PatchParams::apply("manager-a");
    let created = cms.patch("ssa", &a, &Patch::Apply(&cfg)).await.expect("apply creates");
    let mf = created.metadata.managed_fields.expect("managedFields");
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("manager-a"), Some("Apply"))
    );
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "2"}});
    let e = api_error(
        cms.patch("ssa", &PatchParams::apply("manager-b"), &Patch::Apply(&other))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"manager-a\"") && e.message.contains(".data.k"),
        "{}",
        e.message
    );
    let forced = cms
        .patch("ssa", &PatchParams::apply("manager-b").force(), &Patch::Apply(&other))
        .await
        .expect("force");
    assert_eq!(
        forced.data.as_ref().and_then(|d| d.get("k")).map(String::as_str),
        Some("2")
    );
    // manager-a drops a field it alone owned: it is removed.
    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = cms.patch("ssa", &a, &Patch::Apply(&again)).await.expect("re-apply");
    let data = after.data.unwrap_or_default();
    assert!(
        !data.contains_key("only-a") && data.get("k").map(String::as_str) == Some("2"),
        "{data:?}"
    );
}

#[tokio::test]
async fn events_one_store_two_views() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "target"}})).expect("cm"),
        )
        .await
        .expect("cm");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "cdkube".into(),
            instance: Some("cdkube-0".into()),
        },
    );
    let ev = Event {
        type_: EventType::Warning,
        reason: "FetchFailed".into(),
        note: Some("cannot reach repo".into()),
        action: "Fetch".into(),
        secondary: None,
    };
    recorder.publish(&ev, &cm.object_ref(&())).await.expect("publish");
    recorder
        .publish(&ev, &cm.object_ref(&()))
        .await
        .expect("publish series");

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default()
        .fields("involvedObject.name=target,involvedObject.kind=ConfigMap,involvedObject.namespace=default");
    let seen = core
        .list(
            &lp.clone()
                .fields(&format!("involvedObject.uid={}", cm.uid().expect("uid"))),
        )
        .await
        .expect("core list");
    assert_eq!(seen.items.len(), 1);
    let e = &seen.items[0];
    assert_eq!(e.message.as_deref(), Some("cannot reach repo"));
    assert_eq!(e.reporting_component.as_deref(), Some("cdkube"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
    assert_eq!(e.type_.as_deref(), Some("Warning"));

    // A core/v1 event is visible through events.k8s.io/v1 with the renamed fields.
    let legacy: CoreEvent = serde_json::from_value(json!({"metadata": {"name": "legacy"}, "involvedObject": {"kind": "ConfigMap", "name": "target", "namespace": "default"},
        "reason": "Old", "message": "from v1", "type": "Normal", "count": 3, "source": {"component": "tester"}})).expect("event");
    core.create(&PostParams::default(), &legacy).await.expect("core create");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let v = new.get("legacy").await.expect("events.k8s.io view");
    assert_eq!(v.note.as_deref(), Some("from v1"));
    assert_eq!(v.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("target"));
    assert_eq!(v.deprecated_count, Some(3));
    assert_eq!(v.deprecated_source.and_then(|s| s.component).as_deref(), Some("tester"));
    let listed = new
        .list(&ListParams::default().fields("regarding.name=target"))
        .await
        .expect("selector by regarding");
    assert_eq!(listed.items.len(), 2);

    // events.k8s.io/v1 validation is stricter than core/v1: an eventTime is required (and with
    // one, the reporting fields; kube-apiserver checks those only once eventTime is set).
    let incomplete: NewEvent =
        serde_json::from_value(json!({"metadata": {"name": "incomplete"}, "reason": "X", "type": "Normal"}))
            .expect("ev");
    let e = api_error(new.create(&PostParams::default(), &incomplete).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(e.message.contains("eventTime: Required value"), "{}", e.message);
    let mut timed = incomplete.clone();
    timed.event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        "2026-01-02T03:04:05Z".parse().expect("time"),
    ));
    let e = api_error(new.create(&PostParams::default(), &timed).await.unwrap_err());
    assert!(
        e.message.contains("reportingController: Required value"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn watch_replay_bookmarks_and_410() {
    let cluster = Cluster::start_with(|c| {
        c.watch_history = 20;
        c.bookmark_interval = Duration::from_millis(200);
    })
    .await;
    let client = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |n: &str| {
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": n, "labels": {"w": "yes"}}})).expect("cm")
    };
    let first = cms.create(&PostParams::default(), &cm("one")).await.expect("one");
    let rv = first.resource_version().expect("rv");
    cms.create(&PostParams::default(), &cm("two")).await.expect("two");
    cms.delete("one", &DeleteParams::default()).await.expect("delete");

    // Replay from a resourceVersion: exactly the later changes, in order, then bookmarks.
    let wp = WatchParams::default().labels("w=yes").timeout(5);
    let mut stream = cms.watch(&wp, &rv).await.expect("watch").boxed();
    let mut seen = Vec::new();
    let mut bookmark = None;
    while let Some(ev) = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("event in time")
        .expect("watch event")
    {
        match ev {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.name_any())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.name_any())),
            WatchEvent::Bookmark(b) => {
                bookmark = Some(b.metadata.resource_version);
                break;
            }
            WatchEvent::Error(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(seen, ["ADDED two", "DELETED one"]);
    let bookmark: u64 = bookmark.expect("bookmark").parse().expect("rv");
    assert!(bookmark >= rv.parse::<u64>().expect("rv") + 2);

    // Push the start of the history past `rv`: a watch from it is 410 Expired, as an ERROR event.
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("filler-{i}")}})).expect("cm"),
        )
        .await
        .expect("filler");
    }
    let mut stream = cms.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version:"), "{}", e.message);
        }
        other => panic!("expected 410, got {other:?}"),
    }
    // A continue token older than the history is 410 too.
    let page = cms.list(&ListParams::default().limit(1)).await.expect("page");
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("more-{i}")}})).expect("cm"),
        )
        .await
        .expect("more");
    }
    let e = api_error(
        cms.list(
            &ListParams::default()
                .limit(1)
                .continue_token(page.metadata.continue_.as_deref().expect("token")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
}

type Events = futures::stream::BoxStream<'static, Result<watcher::Event<DynamicObject>, watcher::Error>>;

async fn next_event(events: &mut Events) -> Result<watcher::Event<DynamicObject>, watcher::Error> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("watcher event in time")
        .expect("stream open")
}

#[tokio::test]
async fn kube_rs_watcher_recovers_from_410() {
    let cluster = Cluster::start_with(|c| {
        c.watch_history = 10;
        c.bookmark_interval = Duration::from_secs(3600);
    })
    .await;
    let client = cluster.client().await;
    install_crd(&client).await;
    let api = pipelines(&client);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &pipeline("before"))
        .await
        .expect("before");

    // Each watch lasts 1s; the watcher then re-watches from the last version it saw.
    let mut events = watcher(api.clone(), watcher::Config::default().timeout(1)).boxed();
    let mut inits = 0;
    loop {
        if let Ok(watcher::Event::InitDone) = next_event(&mut events).await {
            inits += 1;
            break;
        }
    }
    // While the watcher's version falls out of the history, it gets 410 and must relist.
    for i in 0..30 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("churn-{i}")}})).expect("cm"),
        )
        .await
        .expect("churn");
    }
    let mut errors = 0;
    loop {
        match next_event(&mut events).await {
            Ok(watcher::Event::InitDone) => {
                inits += 1;
                break;
            }
            Ok(_) => {}
            Err(watcher::Error::WatchError(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
                errors += 1;
            }
            Err(other) => panic!("unexpected watcher error {other:?}"),
        }
    }
    assert_eq!((inits, errors), (2, 1), "the watcher saw 410 once and relisted");
    api.create(&PostParams::default(), &pipeline("after"))
        .await
        .expect("after");
    loop {
        if let Ok(watcher::Event::Apply(o)) = next_event(&mut events).await
            && o.name_any() == "after"
        {
            break;
        }
    }
}

#[tokio::test]
async fn namespaces_discovery_and_auth() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crd(&client).await;

    let discovery = kube::Discovery::new(client.clone()).run().await.expect("discovery");
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Pipeline")
        .expect("Pipeline discovered");
    assert_eq!((ar.plural.as_str(), ar.version.as_str()), ("pipelines", "v1alpha1"));
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "pipelines/status" || s.plural == "status"),
        "{:?}",
        caps.subresources
    );

    // Objects need an existing namespace; deleting a namespace empties it, then it goes.
    let nss: Api<Namespace> = Api::all(client.clone());
    let pods_missing: Api<Pod> = Api::namespaced(client.clone(), "ghost");
    let e = api_error(
        pods_missing
            .create(&PostParams::default(), &pod("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"ghost\" not found"));
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns"),
    )
    .await
    .expect("ns");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    pods.create(&PostParams::default(), &pod("x", json!({})))
        .await
        .expect("pod");
    nss.delete("team", &DeleteParams::default()).await.expect("delete ns");
    wait_for("namespace team to go", WAIT, || async {
        gone(&nss, "team").await.then_some(())
    })
    .await;
    assert!(
        pods.get_opt("x").await.expect("get").is_none(),
        "the namespace's Pod went with it"
    );
    let e = api_error(nss.delete("default", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(e.code, 403);

    // Wrong token: 401 with a Status body.
    let mut config = kube::Config::new(cluster.server.url().parse().expect("url"));
    config.root_cert = Some(vec![pem_to_der(cluster.server.ca_pem())]);
    config.auth_info.token = Some("wrong".to_string().into());
    let bad = Client::try_from(config).expect("client");
    let e = api_error(
        Api::<Pod>::namespaced(bad, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    // No token at all: 401 everywhere but the public version and health endpoints.
    let mut config = kube::Config::new(cluster.server.url().parse().expect("url"));
    config.root_cert = Some(vec![pem_to_der(cluster.server.ca_pem())]);
    let anonymous = Client::try_from(config).expect("client");
    let get = |path: &str| http::Request::get(path).body(Vec::new()).expect("request");
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        anonymous
            .request_text(get(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for path in ["/api", "/apis", "/openapi/v3", "/api/v1/namespaces/default/secrets"] {
        let e = api_error(anonymous.request_text(get(path)).await.unwrap_err());
        assert_eq!(e.code, 401, "{path}");
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("pem")
}

/// Sends a raw request with the client's credentials; the Status of the refusal.
async fn refused(client: &Client, method: &str, uri: &str, content_type: &str, body: &str) -> kube::core::Status {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("Content-Type", content_type)
        .body(body.as_bytes().to_vec())
        .expect("request");
    match client.request::<Value>(req).await {
        // A transport error (a dropped connection) would mean the server crashed on the request.
        Err(e) => api_error(e),
        Ok(v) => panic!("{method} {uri} with {body:?} was accepted: {v}"),
    }
}

#[tokio::test]
async fn malformed_requests_get_a_status_and_change_nothing() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crd(&client).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}})).expect("cm");
    let before = cms.create(&PostParams::default(), &cm).await.expect("cm");
    pipelines(&client)
        .create(&PostParams::default(), &pipeline("p"))
        .await
        .expect("pipeline");

    let cm_uri = "/api/v1/namespaces/default/configmaps/cm";
    let p_uri = "/apis/delivery.inge.4pr.es/v1alpha1/namespaces/default/pipelines/p";
    let (merge, json_patch, strategic) = (
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
    );
    /// One request the server must refuse, and how.
    struct Refusal {
        method: &'static str,
        uri: &'static str,
        content_type: &'static str,
        body: &'static str,
        code: u16,
        /// Words the Status message must contain.
        words: &'static str,
    }
    let cases = [
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: merge,
            body: r#"{"metadata": "x"}"#,
            code: 400,
            words: "metadata must be an object",
        },
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: strategic,
            body: r#"{"metadata": 5}"#,
            code: 400,
            words: "metadata must be an object",
        },
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: json_patch,
            body: r#"[{"op": "replace", "path": "/metadata", "value": [1]}]"#,
            code: 400,
            words: "metadata",
        },
        Refusal {
            method: "PATCH",
            uri: "/api/v1/namespaces/default/configmaps/cm?fieldManager=t",
            content_type: "application/apply-patch+yaml",
            body: "apiVersion: v1\nkind: ConfigMap\nmetadata: x\n",
            code: 400,
            words: "metadata must be an object",
        },
        Refusal {
            method: "PATCH",
            uri: p_uri,
            content_type: merge,
            body: r#"{"metadata": {"ownerReferences": "x"}}"#,
            code: 400,
            words: "metadata.ownerReferences",
        },
        Refusal {
            method: "PATCH",
            uri: p_uri,
            content_type: merge,
            body: r#"{"metadata": {"finalizers": [1]}}"#,
            code: 400,
            words: "metadata.finalizers[0]",
        },
        Refusal {
            method: "GET",
            uri: "/api/v1/namespaces/default/configmaps?limit=ten",
            content_type: merge,
            body: "",
            code: 400,
            words: "limit",
        },
        Refusal {
            method: "GET",
            uri: "/api/v1/configmaps?watch=true&resourceVersion=x",
            content_type: merge,
            body: "",
            code: 400,
            words: "resource version",
        },
        Refusal {
            method: "GET",
            uri: "/api/v1/configmaps?labelSelector=a%20in%20()",
            content_type: merge,
            body: "",
            code: 400,
            words: "unable to parse requirement",
        },
        Refusal {
            method: "GET",
            uri: "/api/v1/namespaces/default/pods/cm/binding",
            content_type: merge,
            body: "",
            code: 405,
            words: "does not allow",
        },
        Refusal {
            method: "DELETE",
            uri: cm_uri,
            content_type: "application/json",
            body: "[1]",
            code: 400,
            words: "DeleteOptions",
        },
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: "application/apply-patch+cbor",
            body: "\u{a0}",
            code: 415,
            words: "Unsupported Media Type",
        },
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: merge,
            body: r#"{"metadata": {"labels": {"a b": "c"}}}"#,
            code: 422,
            words: "metadata.labels",
        },
        Refusal {
            method: "PATCH",
            uri: cm_uri,
            content_type: merge,
            body: r#"{"data": {"a/b": "c"}}"#,
            code: 422,
            words: "data[a/b]",
        },
    ];
    for Refusal {
        method,
        uri,
        content_type,
        body,
        code,
        words,
    } in cases
    {
        let e = refused(&client, method, uri, content_type, body).await;
        assert_eq!(e.code, code, "{method} {uri} {body}: {}", e.message);
        assert!(e.message.contains(words), "{method} {uri} {body}: {}", e.message);
    }
    // A client that reads only protobuf gets 406, not JSON it cannot decode.
    let req = http::Request::get(cm_uri)
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .body(Vec::new())
        .expect("request");
    let e = api_error(client.request::<Value>(req).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (406, "NotAcceptable"), "{}", e.message);
    // A CRD whose schema cannot be enforced is refused, naming the field.
    let mut crd = yaml_file(&crd_path());
    crd["metadata"]["name"] = json!("widgets.example.com");
    crd["spec"]["group"] = json!("example.com");
    crd["spec"]["names"] = json!({"plural": "widgets", "kind": "Widget"});
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["repo"]["pattern"] =
        json!("((");
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let e = refused(&client, "POST", crds, "application/json", &crd.to_string()).await;
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(e.message.contains("properties[repo].pattern"), "{}", e.message);

    // Nothing was changed, and the server still answers.
    let after = cms.get("cm").await.expect("cm still there");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    let p = pipelines(&client).get("p").await.expect("pipeline still there");
    assert!(p.metadata.owner_references.is_none() && p.metadata.finalizers.is_none());
}

#[tokio::test]
async fn a_shorter_grace_period_moves_the_deletion_deadline_earlier() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("graceful", json!({})))
        .await
        .expect("pod");
    // A Pod bound to a node terminates gracefully (no runner here confirms it).
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "graceful"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n"}});
    pods.create_subresource::<_, Value>("binding", "graceful", &PostParams::default(), &binding)
        .await
        .expect("bind");
    let deadline = |p: &Pod| {
        let m = &p.metadata;
        (
            m.deletion_timestamp.clone().expect("deletionTimestamp").0,
            m.deletion_grace_period_seconds,
        )
    };
    pods.delete("graceful", &DeleteParams::default().grace_period(30))
        .await
        .expect("delete");
    let (first, grace) = deadline(&pods.get("graceful").await.expect("still there"));
    assert_eq!(grace, Some(30));
    // A longer one changes nothing; a shorter one moves the deadline by the difference.
    pods.delete("graceful", &DeleteParams::default().grace_period(60))
        .await
        .expect("delete again");
    assert_eq!(deadline(&pods.get("graceful").await.expect("pod")), (first, Some(30)));
    pods.delete("graceful", &DeleteParams::default().grace_period(10))
        .await
        .expect("delete sooner");
    let (second, grace) = deadline(&pods.get("graceful").await.expect("pod"));
    assert_eq!((first.duration_since(second).as_secs(), grace), (20, Some(10)));
    // Grace 0 (the kubelet's confirmation) removes it.
    pods.delete("graceful", &DeleteParams::default().grace_period(0))
        .await
        .expect("final delete");
    assert!(pods.get_opt("graceful").await.expect("get").is_none());
}

#[tokio::test]
async fn secret_string_data_is_written_into_data() {
    use k8s_openapi::api::core::v1::Secret;
    let cluster = Cluster::start().await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client().await, "default");
    let secret = serde_json::from_value(json!({"metadata": {"name": "git"},
        "data": {"username": "b2xk", "password": "b2xk"}, "stringData": {"password": "s3cr3t"}}))
    .expect("secret");
    let created = secrets.create(&PostParams::default(), &secret).await.expect("create");
    let data = created.data.expect("data");
    let text = |k: &str| String::from_utf8(data[k].0.clone()).expect("utf-8");
    // stringData is write-only and wins over data, as in kube-apiserver.
    assert_eq!(
        (text("username"), text("password")),
        ("old".to_string(), "s3cr3t".to_string())
    );
    assert!(created.string_data.is_none());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
}
