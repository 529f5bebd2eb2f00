//! Differential conformance of the embedded API server: one table of requests, each sent through
//! the same kube-rs code, as the admin, to a real kube-apiserver (tests/realkube, one plane per test
//! binary) and to the embedded one. The answers are compared by HTTP status, Status reason, the
//! causes of a failure (reason, field and first line of the message) and the body fields a case
//! names. Every case runs in a fresh namespace of the same name on both servers.
//!
//! A watch case starts from a resourceVersion its setup returned and ends by `timeoutSeconds`;
//! the writes it should see are setup steps (replayed) or `during` steps (sent while it is open),
//! so its events do not depend on timing. Cases run four at a time; the whole table takes seconds.
//!
//! A case the emulator answers differently on purpose names its deviation and the reason beside
//! it; the same list is in the "Deviations" doc of `src/embedded/apiserver/mod.rs`. Any other
//! difference fails the test, and so does a listed deviation that no longer differs.
mod support;

use std::time::Duration;

use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};
use support::cluster::Cluster;
use support::differential::{
    self as diff, APPLY, Answer, JSON_PATCH, MERGE, STRATEGIC, Step, Vars, get, patch, post, put,
};
use support::realkube;

/// One request sent to both servers.
struct Case {
    /// Unique; says what is sent.
    name: &'static str,
    /// Requests that prepare the case in its namespace; each must succeed on both servers.
    setup: Vec<Step>,
    /// The request whose answers are compared.
    request: Step,
    /// Requests sent while the request is open (a watch), in order; each must succeed.
    during: Vec<Step>,
    /// Body fields compared besides status, reason and causes (`differential::pick` paths).
    fields: &'static [&'static str],
    /// Why the embedded server may answer differently (also in the API server's Deviations doc).
    deviation: Option<&'static str>,
}

/// The defaults of a case: no setup, no extra fields, no deviation.
const CASE: Case = Case {
    name: "",
    setup: Vec::new(),
    request: Step {
        method: Method::GET,
        path: String::new(),
        content_type: "application/json",
        body: None,
        accept: "application/json",
    },
    during: Vec::new(),
    fields: &[],
    deviation: None,
};

const PODS: &str = "/api/v1/namespaces/{ns}/pods";
const POD: &str = "/api/v1/namespaces/{ns}/pods/p";
const CONFIGMAPS: &str = "/api/v1/namespaces/{ns}/configmaps";
const ROLEBINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings";
const CONFIGMAP: &str = "/api/v1/namespaces/{ns}/configmaps/cm";
const SECRETS: &str = "/api/v1/namespaces/{ns}/secrets";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l";
const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/{ns}/events";
const EVENT_V1: &str = "/apis/events.k8s.io/v1/namespaces/{ns}/events/e";
const CORE_EVENTS: &str = "/api/v1/namespaces/{ns}/events";
const NAMESPACES: &str = "/api/v1/namespaces";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const PIPELINES: &str = "/apis/delivery.inge.4pr.es/v1alpha1/namespaces/{ns}/pipelines";

/// The defaults a created Pod gets, compared on successful Pod writes.
const POD_DEFAULTS: &[&str] = &[
    "spec.restartPolicy",
    "spec.dnsPolicy",
    "spec.schedulerName",
    "spec.terminationGracePeriodSeconds",
    "spec.serviceAccountName",
    "spec.serviceAccount",
    "spec.enableServiceLinks",
    "spec.priority",
    "spec.preemptionPolicy",
    "spec.securityContext",
    "spec.tolerations",
    "spec.containers.0.imagePullPolicy",
    "spec.containers.0.terminationMessagePath",
    "spec.containers.0.terminationMessagePolicy",
    "spec.containers.0.resources",
    "status.phase",
    "status.qosClass",
    "metadata.generation",
];

/// A Pod `p` with one container `c` (busybox:1.36), changed by `edit`.
fn pod(edit: impl FnOnce(&mut Value)) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    edit(&mut p);
    p
}

/// POST of `pod(edit)`.
fn create_pod(edit: impl FnOnce(&mut Value)) -> Step {
    post(PODS, pod(edit))
}

/// Changes container `c` of a Pod.
fn container(p: &mut Value) -> &mut Value {
    &mut p["spec"]["containers"][0]
}

/// RoleBinding `b` of `kind/role` to ServiceAccount `default`.
fn role_binding(kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}]})
}

fn configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"a": "1"}}, "data": data})
}

fn lease(spec: Value) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": spec})
}

/// A valid events.k8s.io/v1 Event `e` about Pod `p`, changed by `edit`.
fn event_v1(edit: impl FnOnce(&mut Value)) -> Value {
    let mut e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
        "eventTime": "2026-01-02T03:04:05.000000Z", "type": "Normal", "reason": "Started", "action": "Start",
        "reportingController": "example.com/builder", "reportingInstance": "builder-1", "note": "started",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "{ns}"}});
    edit(&mut e);
    e
}

/// A Namespace `name` (cluster-scoped: the name carries `{ns}` to stay unique).
fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A CRD `widgets.{ns}.example.com` whose `spec` has `size` (integer) and `name` (string), with
/// `rules` on `spec`.
fn crd(rules: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.{ns}.example.com"},
        "spec": {"group": "{ns}.example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": rules,
                    "properties": {"size": {"type": "integer"}, "name": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}}}}}}}}]}})
}

/// A valid Pipeline `p` (the CRD of deploy/).
fn pipeline() -> Value {
    json!({"apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
        "spec": {"repo": "https://example.com/repo.git", "buildImage": "busybox", "buildCommands": ["true"],
            "targetName": "t", "targetVersion": "1"}})
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(pod_create_cases());
    all.extend(pod_field_cases());
    all.extend(pod_update_cases());
    all.extend(metadata_cases());
    all.extend(config_cases());
    all.extend(lease_cases());
    all.extend(event_cases());
    all.extend(watch_and_list_cases());
    all.extend(apply_cases());
    all.extend(crd_cases());
    all.extend(verb_cases());
    all.extend(surface_cases());
    all.extend(exec_and_ephemeral_cases());
    all
}

const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const SERVICES: &str = "/api/v1/namespaces/{ns}/services";

/// A Service `s` with `spec`.
fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec})
}

/// An Eviction of Pod `name`.
fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

/// Metadata-only reads, eviction, Services, Nodes and EndpointSlices.
fn surface_cases() -> Vec<Case> {
    let cm = || post(CONFIGMAPS, configmap(json!({"k": "0"})));
    vec![
        Case {
            name: "surface: GET of a ConfigMap as PartialObjectMetadata",
            setup: vec![cm()],
            request: get(CONFIGMAP).accepting(METADATA),
            fields: &["kind", "apiVersion", "metadata.name", "metadata.labels", "has:data"],
            ..CASE
        },
        Case {
            name: "surface: GET of a ConfigMap as PartialObjectMetadataList",
            setup: vec![cm()],
            request: get(CONFIGMAP).accepting(METADATA_LIST),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: list of ConfigMaps as PartialObjectMetadataList",
            setup: vec![cm()],
            request: get(&format!("{CONFIGMAPS}?labelSelector=a%3D1")).accepting(METADATA_LIST),
            fields: &[
                "kind",
                "apiVersion",
                "items.*.kind",
                "items.*.metadata.name",
                "has:items.0.data",
            ],
            ..CASE
        },
        Case {
            name: "surface: list of ConfigMaps as PartialObjectMetadata",
            request: get(CONFIGMAPS).accepting(METADATA),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: GET as an unknown form",
            setup: vec![cm()],
            request: get(CONFIGMAP).accepting("application/json;as=Foo;g=meta.k8s.io;v=v1"),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: merge patch answered as PartialObjectMetadata",
            setup: vec![cm()],
            request: patch(CONFIGMAP, MERGE, json!({"metadata": {"labels": {"b": "2"}}})).accepting(METADATA),
            fields: &["kind", "metadata.labels", "has:data"],
            ..CASE
        },
        Case {
            name: "surface: eviction of an unbound Pod",
            setup: vec![create_pod(|_| {})],
            request: post(&format!("{POD}/eviction"), eviction("p")),
            fields: &["kind", "status", "code"],
            ..CASE
        },
        Case {
            name: "surface: eviction of a missing Pod",
            request: post(&format!("{POD}/eviction"), eviction("p")),
            fields: &["message", "details"],
            ..CASE
        },
        Case {
            name: "surface: eviction naming another Pod",
            setup: vec![create_pod(|_| {})],
            request: post(&format!("{POD}/eviction"), eviction("other")),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: GET of pods/eviction",
            setup: vec![create_pod(|_| {})],
            request: get(&format!("{POD}/eviction")),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: a Service gets its defaults",
            request: post(
                SERVICES,
                service(json!({"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80}]})),
            ),
            fields: &[
                "spec.type",
                "spec.sessionAffinity",
                "spec.ports",
                "spec.ipFamilies",
                "spec.ipFamilyPolicy",
                "spec.internalTrafficPolicy",
                "has:spec.clusterIP",
                "status",
            ],
            ..CASE
        },
        Case {
            name: "surface: a Service without ports",
            request: post(SERVICES, service(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: Service ports out of range, unnamed, unknown protocol",
            request: post(
                SERVICES,
                service(json!({"ports": [{"port": 0}, {"port": 70000, "protocol": "XYZ"}]})),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: a Service of an unknown type",
            request: post(SERVICES, service(json!({"type": "Foo", "ports": [{"port": 80}]}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: a Service asking for an IP outside the range",
            request: post(
                SERVICES,
                service(json!({"clusterIP": "1.2.3.4", "ports": [{"port": 80}]})),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: a Service asking for the kubernetes Service's IP",
            request: post(
                SERVICES,
                service(json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]})),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: changing a Service's ClusterIP",
            setup: vec![post(SERVICES, service(json!({"ports": [{"port": 80}]})))],
            request: patch(
                &format!("{SERVICES}/s"),
                MERGE,
                json!({"spec": {"clusterIP": "10.96.0.55", "clusterIPs": ["10.96.0.55"]}}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: PUT of a Service without its ClusterIP keeps it",
            setup: vec![post(SERVICES, service(json!({"ports": [{"port": 80}]})))],
            request: put(&format!("{SERVICES}/s"), service(json!({"ports": [{"port": 81}]}))),
            fields: &["spec.ports", "has:spec.clusterIP", "spec.type"],
            ..CASE
        },
        Case {
            name: "surface: a NodePort Service gets a node port",
            request: post(SERVICES, service(json!({"type": "NodePort", "ports": [{"port": 80}]}))),
            fields: &["spec.type", "has:spec.ports.0.nodePort", "spec.externalTrafficPolicy"],
            ..CASE
        },
        Case {
            name: "surface: an ExternalName Service",
            request: post(
                SERVICES,
                service(json!({"type": "ExternalName", "externalName": "example.com"})),
            ),
            fields: &["spec", "status"],
            ..CASE
        },
        Case {
            name: "surface: a headless Service",
            request: post(SERVICES, service(json!({"clusterIP": "None", "selector": {"a": "b"}}))),
            fields: &["spec", "status"],
            ..CASE
        },
        Case {
            name: "surface: Endpoints with an invalid IP and port",
            request: post(
                "/api/v1/namespaces/{ns}/endpoints",
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
                    "subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 0}]}]}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "surface: eviction with a stale uid precondition",
            setup: vec![create_pod(|_| {})],
            request: post(&format!("{POD}/eviction"), {
                let mut e = eviction("p");
                e["deleteOptions"] = json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
                e
            }),
            // The message names the Pod's random uid.
            fields: &["reason", "details.kind"],
            ..CASE
        },
        Case {
            name: "surface: a metadata-only watch carries PartialObjectMetadata",
            setup: vec![cm(), patch(CONFIGMAP, MERGE, json!({"data": {"k": "1"}}))],
            // From resourceVersion 0 (the current state): a watch from an earlier answer's version
            // depends on whether a fresh kube-apiserver's watch cache has started yet.
            request: get(&format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1&resourceVersion=0")).accepting(METADATA),
            fields: &[
                "events.*.type",
                "events.*.object.kind",
                "events.*.object.apiVersion",
                "events.*.object.data",
            ],
            ..CASE
        },
        Case {
            name: "surface: a watch asking for PartialObjectMetadataList",
            setup: vec![cm()],
            request: get(&format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1&resourceVersion=0"))
                .accepting(METADATA_LIST),
            fields: &["events"],
            ..CASE
        },
        Case {
            name: "surface: a Node is created",
            request: post(
                "/api/v1/nodes",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-{ns}"},
                "spec": {"podCIDR": "10.244.0.0/24", "unschedulable": true}}),
            ),
            fields: &["kind", "metadata.name", "spec.podCIDRs", "spec.unschedulable"],
            ..CASE
        },
        Case {
            name: "surface: a new Node's taints",
            request: post(
                "/api/v1/nodes",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "t-{ns}"}}),
            ),
            fields: &["spec.taints"],
            deviation: Some("no TaintNodesByCondition admission: a new Node gets no not-ready taint"),
            ..CASE
        },
        Case {
            name: "surface: a Node with an invalid name",
            request: post(
                "/api/v1/nodes",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "Bad_{ns}"}}),
            ),
            fields: &["shape:message"],
            ..CASE
        },
        Case {
            name: "surface: a Node with an invalid pod CIDR",
            request: post(
                "/api/v1/nodes",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-{ns}"}, "spec": {"podCIDR": "xyz"}}),
            ),
            fields: &["shape:message"],
            ..CASE
        },
        Case {
            name: "surface: an EndpointSlice without address type or addresses",
            request: post(
                "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"},
                    "endpoints": [{"addresses": []}]}),
            ),
            fields: &["message"],
            ..CASE
        },
    ]
}

/// The verbs themselves: PUT, DELETE and PATCH preconditions and errors, subresources, dry runs.
fn verb_cases() -> Vec<Case> {
    let cm = || post(CONFIGMAPS, configmap(json!({"k": "0"})));
    vec![
        Case {
            name: "verb: PUT of a Pod without the fields admission added",
            setup: vec![create_pod(|_| {})],
            request: put(POD, pod(|p| p["metadata"]["labels"] = json!({"x": "y"}))),
            fields: &["metadata.labels", "spec.tolerations"],
            ..CASE
        },
        Case {
            name: "verb: PUT of a ConfigMap without resourceVersion",
            setup: vec![cm()],
            request: put(CONFIGMAP, configmap(json!({"k": "1"}))),
            fields: &["data"],
            ..CASE
        },
        Case {
            name: "verb: POST of a body in text/plain",
            request: Step {
                content_type: "text/plain",
                ..post(CONFIGMAPS, configmap(json!({})))
            },
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: POST of a custom resource in text/plain",
            request: Step {
                content_type: "text/plain",
                ..post(PIPELINES, pipeline())
            },
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: strategic merge patch of a custom resource",
            setup: vec![post(PIPELINES, pipeline())],
            request: patch(&format!("{PIPELINES}/p"), STRATEGIC, json!({"spec": {"suspend": true}})),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: PUT with another name in the body",
            setup: vec![cm()],
            request: put(CONFIGMAP, {
                let mut c = configmap(json!({}));
                c["metadata"]["name"] = json!("other");
                c
            }),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: PUT of a missing ConfigMap",
            request: put(CONFIGMAP, configmap(json!({}))),
            fields: &["message", "details"],
            ..CASE
        },
        Case {
            name: "verb: GET of a missing ConfigMap",
            request: get(CONFIGMAP),
            fields: &["message", "details"],
            ..CASE
        },
        Case {
            name: "verb: DELETE with a stale resourceVersion precondition",
            setup: vec![cm()],
            request: Step {
                body: Some(
                    json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}}),
                ),
                ..diff::delete(CONFIGMAP)
            },
            fields: &["shape:message"],
            ..CASE
        },
        Case {
            name: "verb: DELETE with propagationPolicy Bogus",
            setup: vec![cm()],
            request: diff::delete(&format!("{CONFIGMAP}?propagationPolicy=Bogus")),
            ..CASE
        },
        Case {
            name: "verb: DELETE of a ConfigMap",
            setup: vec![cm()],
            request: diff::delete(CONFIGMAP),
            fields: &["kind", "status", "details.name", "details.kind"],
            ..CASE
        },
        Case {
            name: "verb: DELETE of an unbound Pod",
            setup: vec![create_pod(|_| {})],
            request: diff::delete(POD),
            fields: &["kind", "metadata.name"],
            ..CASE
        },
        Case {
            name: "verb: JSON patch whose test fails",
            setup: vec![cm()],
            request: patch(
                CONFIGMAP,
                JSON_PATCH,
                json!([{"op": "test", "path": "/data/k", "value": "9"}]),
            ),
            ..CASE
        },
        Case {
            name: "verb: merge patch that is a list",
            setup: vec![cm()],
            request: patch(CONFIGMAP, MERGE, json!([1])),
            ..CASE
        },
        Case {
            name: "verb: PATCH with an unsupported content type",
            setup: vec![cm()],
            request: patch(CONFIGMAP, "text/plain", json!({})),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: fieldValidation Bogus",
            request: post(&format!("{CONFIGMAPS}?fieldValidation=Bogus"), configmap(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: dryRun create",
            request: post(&format!("{CONFIGMAPS}?dryRun=All"), configmap(json!({"k": "1"}))),
            fields: &["data", "metadata.resourceVersion", "len:metadata.uid"],
            ..CASE
        },
        Case {
            name: "verb: dryRun Bogus",
            request: post(&format!("{CONFIGMAPS}?dryRun=Bogus"), configmap(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: a Pod's status through the main resource is ignored",
            setup: vec![create_pod(|_| {})],
            request: patch(
                POD,
                MERGE,
                json!({"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}}),
            ),
            fields: &["status.phase", "metadata.labels"],
            ..CASE
        },
        Case {
            name: "verb: pods/status changes the phase",
            setup: vec![create_pod(|_| {})],
            request: patch(&format!("{POD}/status"), MERGE, json!({"status": {"phase": "Running"}})),
            fields: &["status.phase"],
            ..CASE
        },
        Case {
            name: "verb: binding a Pod to a node",
            setup: vec![create_pod(|_| {})],
            request: post(
                &format!("{POD}/binding"),
                json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
            ),
            fields: &["kind", "status"],
            ..CASE
        },
        Case {
            name: "verb: binding a bound Pod again",
            setup: vec![create_pod(|p| p["spec"]["nodeName"] = json!("n1"))],
            request: post(
                &format!("{POD}/binding"),
                json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n2"}}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: PUT creates a missing core/v1 Event",
            request: put(
                "/api/v1/namespaces/{ns}/events/e",
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "{ns}"}, "message": "m"}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "verb: DELETE of a bound Pod is graceful",
            setup: vec![create_pod(|p| p["spec"]["nodeName"] = json!("n1"))],
            request: diff::delete(POD),
            fields: &[
                "kind",
                "metadata.deletionGracePeriodSeconds",
                "has:metadata.deletionTimestamp",
                "metadata.generation",
            ],
            ..CASE
        },
        Case {
            name: "verb: DELETE of a namespace",
            setup: vec![post(NAMESPACES, namespace("{ns}-gone"))],
            request: diff::delete(&format!("{NAMESPACES}/{{ns}}-gone")),
            fields: &[
                "kind",
                "status.phase",
                "spec.finalizers",
                "has:metadata.deletionTimestamp",
            ],
            ..CASE
        },
        Case {
            name: "verb: a Pipeline's status through /status",
            setup: vec![post(PIPELINES, pipeline())],
            request: patch(
                &format!("{PIPELINES}/p/status"),
                MERGE,
                json!({"status": {"phase": "Building", "observedGeneration": 1}, "spec": {"suspend": true}}),
            ),
            fields: &["status", "spec.suspend", "metadata.generation"],
            ..CASE
        },
        Case {
            name: "verb: a Lease by server-side apply",
            request: patch(
                &format!("{LEASE}?fieldManager=node&force=true"),
                APPLY,
                lease(json!({"holderIdentity": "n1", "leaseDurationSeconds": 40})),
            ),
            fields: &[
                "spec",
                "metadata.managedFields.0.manager",
                "metadata.managedFields.0.operation",
            ],
            ..CASE
        },
        Case {
            name: "verb: a list page and its continue token",
            setup: vec![
                cm(),
                post(CONFIGMAPS, {
                    let mut c = configmap(json!({}));
                    c["metadata"]["name"] = json!("cm2");
                    c
                }),
            ],
            request: get(&format!("{CONFIGMAPS}?labelSelector=a&limit=1")),
            fields: &[
                "items.*.metadata.name",
                "has:metadata.continue",
                "metadata.remainingItemCount",
            ],
            ..CASE
        },
    ]
}

/// The builder Pod the controller creates for run 1 of Pipeline `p` (owner uid made up).
fn builder_pod() -> Value {
    use cdkube::controller::pod::{PodTemplate, SourceRef};
    let mut p = pipeline();
    p["metadata"]["namespace"] = json!("{ns}");
    p["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
    p["spec"]["env"] = json!([{"name": "MODE", "value": "release"}]);
    p["spec"]["resources"] = json!({"limits": {"cpu": "1", "memory": "512Mi"}});
    let pipeline: cdkube::api::Pipeline = serde_json::from_value(p).expect("Pipeline");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let run: cdkube::api::Run = serde_json::from_value(json!({"run": 1, "commit": commit, "shortCommit": "0123456",
        "revision": format!("main@sha1:{commit}"), "targetVersion": "1", "pod": "p-1-0123456", "phase": "Pending",
        "trigger": "poll"}))
    .expect("Run");
    let source = SourceRef {
        url: "http://127.0.0.1:9/artifacts/a.tar.gz?expires=1&signature=x".into(),
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    let template = PodTemplate {
        fetch_image: "cdkube:test".into(),
    };
    serde_json::to_value(cdkube::controller::pod::builder_pod(
        &pipeline, &run, &source, &template,
    ))
    .expect("Pod")
}

fn pod_create_cases() -> Vec<Case> {
    vec![
        Case {
            name: "pod: the controller's builder Pod",
            request: post(PODS, builder_pod()),
            fields: &[
                "spec.initContainers",
                "spec.containers",
                "spec.securityContext",
                "spec.tolerations",
                "status.qosClass",
                "metadata.ownerReferences",
            ],
            ..CASE
        },
        Case {
            name: "pod: a minimal Pod is defaulted",
            request: create_pod(|_| {}),
            fields: POD_DEFAULTS,
            ..CASE
        },
        Case {
            name: "pod: an untagged image is pulled Always",
            request: create_pod(|p| container(p)["image"] = json!("busybox")),
            fields: &["spec.containers.0.imagePullPolicy"],
            ..CASE
        },
        Case {
            name: "pod: requests and limits make it Guaranteed",
            request: create_pod(|p| {
                container(p)["resources"] = json!({"limits": {"cpu": "100m", "memory": "64Mi"}});
            }),
            fields: &["spec.containers.0.resources", "status.qosClass"],
            ..CASE
        },
        Case {
            name: "pod: quantities are stored in canonical form",
            request: create_pod(|p| {
                container(p)["resources"] =
                    json!({"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"memory": "0.5Gi"}});
            }),
            fields: &["spec.containers.0.resources", "status.qosClass"],
            ..CASE
        },
        Case {
            name: "pod: a quantity that does not parse",
            request: create_pod(|p| container(p)["resources"] = json!({"limits": {"cpu": "lots"}})),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "pod: probes, ports, volumes and env references are defaulted",
            request: create_pod(|p| {
                // (No ServiceAccount token volume: tokens are another part's.)
                p["spec"]["automountServiceAccountToken"] = json!(false);
                p["spec"]["volumes"] = json!([{"name": "v"}, {"name": "w", "configMap": {"name": "cm"}},
                    {"name": "h", "hostPath": {"path": "/tmp"}}]);
                container(p)["ports"] = json!([{"containerPort": 80}]);
                container(p)["livenessProbe"] = json!({"httpGet": {"port": 80}});
                container(p)["env"] = json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
            }),
            fields: &[
                "spec.volumes",
                "spec.containers.0.ports",
                "spec.containers.0.livenessProbe",
                "spec.containers.0.env",
            ],
            ..CASE
        },
        Case {
            name: "serviceaccount: a Pod gets the token volume of its ServiceAccount",
            request: create_pod(|_| {}),
            fields: &[
                "spec.serviceAccountName",
                "spec.volumes.0.projected",
                "spec.containers.0.volumeMounts.0.mountPath",
                "spec.containers.0.volumeMounts.0.readOnly",
            ],
            ..CASE
        },
        Case {
            name: "serviceaccount: a Pod naming a missing ServiceAccount",
            request: create_pod(|p| p["spec"]["serviceAccountName"] = json!("ghost")),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "serviceaccount: a TokenRequest shorter than 10 minutes",
            request: post(
                "/api/v1/namespaces/{ns}/serviceaccounts/default/token",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "rbac: a RoleBinding's roleRef cannot change",
            setup: vec![post(ROLEBINDINGS, role_binding("Role", "a"))],
            request: put(&format!("{ROLEBINDINGS}/b"), role_binding("Role", "other")),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "rbac: a rule without verbs or resources",
            request: post(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
                    "rules": [{"apiGroups": [""]}]}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "rbac: a Role with non-resource URLs",
            request: post(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
                    "rules": [{"verbs": ["get"], "apiGroups": [""], "nonResourceURLs": ["/healthz", "/version"]}]}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "rbac: subjects of unknown kind and ServiceAccounts with an apiGroup",
            request: post(
                ROLEBINDINGS,
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
                    "subjects": [{"kind": "Robot", "name": "r"},
                        {"kind": "ServiceAccount", "name": "sa", "apiGroup": "rbac.authorization.k8s.io"}]}),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "pod: volumeMount names a missing volume",
            request: create_pod(|p| container(p)["volumeMounts"] = json!([{"name": "missing", "mountPath": "/a"}])),
            ..CASE
        },
        Case {
            name: "pod: two volumeMounts share a mountPath",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]);
                container(p)["volumeMounts"] =
                    json!([{"name": "v", "mountPath": "/a"}, {"name": "w", "mountPath": "/a"}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: volumeMount with an empty or relative mountPath",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
                container(p)["volumeMounts"] =
                    json!([{"name": "v", "mountPath": ""}, {"name": "v", "mountPath": "a/.."}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: env var with an empty name",
            request: create_pod(|p| container(p)["env"] = json!([{"name": "", "value": "x"}])),
            ..CASE
        },
        Case {
            name: "pod: env var names with '=' and a leading digit",
            request: create_pod(|p| {
                container(p)["env"] = json!([{"name": "A=B", "value": "x"}, {"name": "1A", "value": "y"}])
            }),
            ..CASE
        },
        Case {
            name: "pod: env var with value and valueFrom",
            request: create_pod(|p| {
                container(p)["env"] =
                    json!([{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: env valueFrom without a source",
            request: create_pod(|p| container(p)["env"] = json!([{"name": "A", "valueFrom": {}}])),
            ..CASE
        },
        Case {
            name: "pod: env valueFrom with two sources",
            request: create_pod(|p| {
                container(p)["env"] = json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"},
                    "secretKeyRef": {"name": "s", "key": "k"}}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: env fieldRef to an unsupported path",
            request: create_pod(|p| {
                container(p)["env"] = json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: env secretKeyRef without name and key",
            request: create_pod(|p| {
                container(p)["env"] = json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "", "key": ""}}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: envFrom configMapRef with a bad name",
            request: create_pod(|p| container(p)["envFrom"] = json!([{"configMapRef": {"name": "Bad_Name"}}])),
            ..CASE
        },
        Case {
            name: "pod: cpu limit below the request",
            request: create_pod(|p| {
                container(p)["resources"] = json!({"limits": {"cpu": "100m"}, "requests": {"cpu": "200m"}});
            }),
            ..CASE
        },
        Case {
            name: "pod: memory limit below the request",
            request: create_pod(|p| {
                container(p)["resources"] = json!({"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}});
            }),
            ..CASE
        },
        Case {
            name: "pod: negative quantities",
            request: create_pod(|p| {
                container(p)["resources"] = json!({"limits": {"cpu": "-1"}, "requests": {"memory": "-5Mi"}});
            }),
            ..CASE
        },
        Case {
            name: "pod: resource name without a domain",
            request: create_pod(|p| container(p)["resources"] = json!({"limits": {"gpus": "1"}})),
            ..CASE
        },
        Case {
            name: "pod: runAsUser -1 on the Pod",
            request: create_pod(|p| {
                p["spec"]["securityContext"] = json!({"runAsUser": -1, "runAsGroup": -2, "fsGroup": -3})
            }),
            ..CASE
        },
        Case {
            name: "pod: runAsUser -1 on the container",
            request: create_pod(|p| container(p)["securityContext"] = json!({"runAsUser": -1, "runAsGroup": -1})),
            ..CASE
        },
        Case {
            name: "pod: seccomp profile of an unknown type",
            request: create_pod(|p| p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "Nope"}})),
            ..CASE
        },
        Case {
            name: "pod: Localhost seccomp profile without a path",
            request: create_pod(|p| container(p)["securityContext"] = json!({"seccompProfile": {"type": "Localhost"}})),
            ..CASE
        },
        Case {
            name: "pod: privileged without privilege escalation",
            request: create_pod(|p| {
                container(p)["securityContext"] = json!({"privileged": true, "allowPrivilegeEscalation": false});
            }),
            ..CASE
        },
        Case {
            name: "pod: containerPort 70000",
            request: create_pod(|p| container(p)["ports"] = json!([{"containerPort": 70000}])),
            ..CASE
        },
        Case {
            name: "pod: containerPort 0, hostPort 70000, bad protocol",
            request: create_pod(|p| {
                container(p)["ports"] = json!([{"containerPort": 0, "hostPort": 70000, "protocol": "FOO"}])
            }),
            ..CASE
        },
        Case {
            name: "pod: port names invalid and duplicate",
            request: create_pod(|p| {
                container(p)["ports"] = json!([{"name": "HTTP", "containerPort": 80}, {"name": "web", "containerPort": 81},
                    {"name": "web", "containerPort": 82}, {"name": "a-very-long-port-name", "containerPort": 83}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: imagePullPolicy Sometimes",
            request: create_pod(|p| container(p)["imagePullPolicy"] = json!("Sometimes")),
            ..CASE
        },
        Case {
            name: "pod: dnsPolicy Bogus",
            request: create_pod(|p| p["spec"]["dnsPolicy"] = json!("Bogus")),
            ..CASE
        },
        Case {
            name: "pod: restartPolicy Sometimes",
            request: create_pod(|p| p["spec"]["restartPolicy"] = json!("Sometimes")),
            ..CASE
        },
        Case {
            name: "pod: terminationMessagePolicy Bogus",
            request: create_pod(|p| container(p)["terminationMessagePolicy"] = json!("Bogus")),
            ..CASE
        },
        Case {
            name: "pod: two sources in one volume",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/tmp"}}])
            }),
            ..CASE
        },
        Case {
            name: "pod: a volume without a source",
            request: create_pod(|p| p["spec"]["volumes"] = json!([{"name": "v"}])),
            ..CASE
        },
        Case {
            name: "pod: duplicate and invalid volume names",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}, {"name": "V_1", "emptyDir": {}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: hostPath without a path, of an unknown type",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "hostPath": {"path": "", "type": "Nope"}}])
            }),
            ..CASE
        },
        Case {
            name: "pod: configMap and secret volumes without names, bad modes",
            request: create_pod(|p| {
                p["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "", "defaultMode": 1000}},
                    {"name": "w", "secret": {"secretName": "", "items": [{"key": "", "path": "../x", "mode": -1}]}}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: emptyDir with a negative sizeLimit",
            request: create_pod(|p| p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {"sizeLimit": "-1Gi"}}])),
            ..CASE
        },
        Case {
            name: "pod: no containers",
            request: create_pod(|p| p["spec"]["containers"] = json!([])),
            ..CASE
        },
        Case {
            name: "pod: container names invalid, duplicate and missing; no image",
            request: create_pod(|p| {
                p["spec"]["containers"] = json!([{"name": "c", "image": "x"}, {"name": "c", "image": "x"},
                    {"name": "Bad_Name", "image": "x"}, {"name": "", "image": "x"}, {"name": "d"}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: init container and container share a name",
            request: create_pod(|p| p["spec"]["initContainers"] = json!([{"name": "c", "image": "x"}])),
            ..CASE
        },
        Case {
            name: "pod: init container restartPolicy Never",
            request: create_pod(|p| {
                p["spec"]["initContainers"] = json!([{"name": "i", "image": "x", "restartPolicy": "Never"}])
            }),
            ..CASE
        },
        Case {
            name: "pod: ephemeral containers on create",
            request: create_pod(|p| p["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "x"}])),
            ..CASE
        },
        Case {
            name: "pod: activeDeadlineSeconds 0 and negative terminationGracePeriodSeconds",
            request: create_pod(|p| {
                p["spec"]["activeDeadlineSeconds"] = json!(0);
                p["spec"]["terminationGracePeriodSeconds"] = json!(-1);
            }),
            ..CASE
        },
        Case {
            name: "pod: invalid nodeName, hostname and subdomain",
            request: create_pod(|p| {
                p["spec"]["nodeName"] = json!("Bad_Node");
                p["spec"]["hostname"] = json!("a.b");
                p["spec"]["subdomain"] = json!("-x");
            }),
            ..CASE
        },
        Case {
            name: "pod: tolerations with bad operator, effect and value",
            request: create_pod(|p| {
                p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Maybe"}, {"key": "k", "operator": "Exists", "value": "v"},
                    {"key": "k", "effect": "Sometimes"}, {"operator": "Equal", "value": "x"}, {"key": "Bad Key"}]);
            }),
            ..CASE
        },
        Case {
            name: "pod: nodeSelector with an invalid key and value",
            request: create_pod(|p| p["spec"]["nodeSelector"] = json!({"bad key": "v", "k": "bad value"})),
            ..CASE
        },
        Case {
            name: "pod: liveness probe without a handler, readiness probe with zero periods",
            request: create_pod(|p| {
                container(p)["livenessProbe"] = json!({"periodSeconds": 5});
                container(p)["readinessProbe"] =
                    json!({"exec": {"command": ["true"]}, "periodSeconds": -1, "successThreshold": 2});
            }),
            ..CASE
        },
        Case {
            name: "pod: imagePullSecrets without a name",
            request: create_pod(|p| p["spec"]["imagePullSecrets"] = json!([{"name": ""}])),
            ..CASE
        },
    ]
}

/// Decoding and type errors of Pod bodies (400s).
fn pod_field_cases() -> Vec<Case> {
    vec![
        Case {
            name: "pod: containers of the wrong type",
            request: create_pod(|p| p["spec"]["containers"] = json!("c")),
            ..CASE
        },
        Case {
            name: "pod: an unknown field under fieldValidation=Strict",
            request: post(
                &format!("{PODS}?fieldValidation=Strict"),
                pod(|p| p["spec"]["nope"] = json!(1)),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "pod: the body names another namespace",
            request: create_pod(|p| p["metadata"]["namespace"] = json!("elsewhere")),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "pod: the body is a ConfigMap",
            request: post(PODS, configmap(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "pod: a body without kind and apiVersion",
            request: post(
                PODS,
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
            ),
            fields: &["kind", "apiVersion", "metadata.name"],
            ..CASE
        },
        Case {
            name: "pod: a resourceVersion on create",
            request: create_pod(|p| p["metadata"]["resourceVersion"] = json!("5")),
            fields: &["message"],
            ..CASE
        },
    ]
}

/// Pod updates: images, activeDeadlineSeconds (added or lowered) and tolerations (added) only.
fn pod_update_cases() -> Vec<Case> {
    let with_deadline = || {
        create_pod(|p| {
            p["spec"]["activeDeadlineSeconds"] = json!(100);
            p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]);
        })
    };
    vec![
        Case {
            name: "pod update: a new image",
            setup: vec![create_pod(|_| {})],
            request: patch(
                POD,
                STRATEGIC,
                json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}),
            ),
            fields: &["spec.containers.0.image", "metadata.generation"],
            ..CASE
        },
        Case {
            name: "pod update: activeDeadlineSeconds added",
            setup: vec![create_pod(|_| {})],
            request: patch(POD, MERGE, json!({"spec": {"activeDeadlineSeconds": 100}})),
            fields: &["spec.activeDeadlineSeconds"],
            ..CASE
        },
        Case {
            name: "pod update: activeDeadlineSeconds lowered",
            setup: vec![with_deadline()],
            request: patch(POD, MERGE, json!({"spec": {"activeDeadlineSeconds": 50}})),
            fields: &["spec.activeDeadlineSeconds"],
            ..CASE
        },
        Case {
            name: "pod update: activeDeadlineSeconds raised",
            setup: vec![with_deadline()],
            request: patch(POD, MERGE, json!({"spec": {"activeDeadlineSeconds": 200}})),
            ..CASE
        },
        Case {
            name: "pod update: activeDeadlineSeconds removed",
            setup: vec![with_deadline()],
            request: patch(POD, MERGE, json!({"spec": {"activeDeadlineSeconds": null}})),
            ..CASE
        },
        Case {
            name: "pod update: activeDeadlineSeconds negative",
            setup: vec![with_deadline()],
            request: patch(POD, MERGE, json!({"spec": {"activeDeadlineSeconds": -5}})),
            ..CASE
        },
        Case {
            name: "pod update: a toleration added",
            setup: vec![with_deadline()],
            request: patch(
                POD,
                JSON_PATCH,
                json!([{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "j", "operator": "Exists", "effect": "NoExecute"}}]),
            ),
            fields: &["spec.tolerations"],
            ..CASE
        },
        Case {
            name: "pod update: all tolerations removed",
            setup: vec![with_deadline()],
            request: patch(POD, MERGE, json!({"spec": {"tolerations": null}})),
            ..CASE
        },
        Case {
            name: "pod update: a container's command",
            setup: vec![create_pod(|_| {})],
            request: patch(
                POD,
                STRATEGIC,
                json!({"spec": {"containers": [{"name": "c", "command": ["sh"]}]}}),
            ),
            ..CASE
        },
        Case {
            name: "pod update: restartPolicy",
            setup: vec![create_pod(|_| {})],
            request: patch(POD, MERGE, json!({"spec": {"restartPolicy": "Never"}})),
            ..CASE
        },
        Case {
            name: "pod update: labels",
            setup: vec![create_pod(|_| {})],
            request: patch(POD, MERGE, json!({"metadata": {"labels": {"x": "y"}}})),
            fields: &["metadata.labels"],
            ..CASE
        },
    ]
}

/// ObjectMeta rules: names, generateName, labels, annotations, owner references, finalizers.
fn metadata_cases() -> Vec<Case> {
    let big = "x".repeat(256 * 1024);
    vec![
        Case {
            name: "meta: annotations over 256 KiB",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["annotations"] = json!({"a": big});
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: label keys with bad prefixes",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["labels"] = json!({"bad_prefix/x": "1", "UPPER.com/x": "2", "/x": "3", "a/b/c": "4",
                    "example.com/": "5"});
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: label key name part over 63 and prefix over 253",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                let labels = json!({ long(64): "1", format!("{}/x", long(254)): "2" });
                cm["metadata"]["labels"] = labels;
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: label values invalid and too long",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["labels"] = json!({"a": "-x", "b": long(64), "c": "a b"});
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: annotation keys invalid",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["annotations"] = json!({"bad key": "1", "Example.COM/Key": "2", "-x": "3"});
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: an upper-case name",
            request: post(
                CONFIGMAPS,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad"}}),
            ),
            ..CASE
        },
        Case {
            name: "meta: a 254-character name",
            request: post(
                CONFIGMAPS,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": long(254)}}),
            ),
            ..CASE
        },
        Case {
            name: "meta: no name and no generateName",
            request: post(
                CONFIGMAPS,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            ),
            ..CASE
        },
        Case {
            name: "meta: generateName is cut to 58 characters",
            request: post(
                CONFIGMAPS,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": format!("{}-", long(70))}}),
            ),
            fields: &["len:metadata.name", "metadata.generateName"],
            ..CASE
        },
        Case {
            name: "meta: generateName with upper case",
            request: post(
                CONFIGMAPS,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "Bad-"}}),
            ),
            ..CASE
        },
        Case {
            name: "meta: owner references without fields, two controllers",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["ownerReferences"] = json!([
                    {"apiVersion": "", "kind": "", "name": "", "uid": ""},
                    {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "u1", "controller": true},
                    {"apiVersion": "v1", "kind": "Pod", "name": "b", "uid": "u2", "controller": true}]);
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: an Event as owner, a bad owner apiVersion",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["ownerReferences"] = json!([
                    {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u1"},
                    {"apiVersion": "a/b/c", "kind": "Pod", "name": "p", "uid": "u2"}]);
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: finalizers invalid and conflicting",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({}));
                cm["metadata"]["finalizers"] = json!(["bad finalizer", "orphan", "foregroundDeletion"]);
                cm
            }),
            ..CASE
        },
        Case {
            name: "meta: namespace names with upper case, dots and 64 characters",
            request: post(NAMESPACES, namespace("Bad.{ns}")),
            ..CASE
        },
        Case {
            name: "meta: a namespace named with 64 characters",
            request: post(NAMESPACES, namespace(&format!("{{ns}}-{}", long(50)))),
            ..CASE
        },
        Case {
            name: "meta: a new namespace is Active with its name label",
            request: post(NAMESPACES, namespace("{ns}-new")),
            fields: &["status.phase", "spec.finalizers", "metadata.labels"],
            ..CASE
        },
        Case {
            name: "meta: a ServiceAccount with a bad name",
            request: post(
                "/api/v1/namespaces/{ns}/serviceaccounts",
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "Bad_SA"}}),
            ),
            ..CASE
        },
    ]
}

/// ConfigMaps and Secrets: keys, immutability, types.
fn config_cases() -> Vec<Case> {
    vec![
        Case {
            name: "config: ConfigMap keys invalid",
            request: post(
                CONFIGMAPS,
                configmap(json!({"a b": "1", ".": "2", "..x": "3", long(254): "4"})),
            ),
            ..CASE
        },
        Case {
            name: "config: a key in data and binaryData",
            request: post(CONFIGMAPS, {
                let mut cm = configmap(json!({"k": "1"}));
                cm["binaryData"] = json!({"k": "MQ=="});
                cm
            }),
            ..CASE
        },
        Case {
            name: "config: an immutable ConfigMap's data changes",
            setup: vec![post(CONFIGMAPS, {
                let mut cm = configmap(json!({"k": "1"}));
                cm["immutable"] = json!(true);
                cm
            })],
            request: patch(CONFIGMAP, MERGE, json!({"data": {"k": "2"}})),
            ..CASE
        },
        Case {
            name: "config: Secret keys invalid",
            request: post(
                SECRETS,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a b": "MQ==", "..": "MQ=="}}),
            ),
            ..CASE
        },
        Case {
            name: "config: Secret data that is not base64",
            request: post(
                SECRETS,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}}),
            ),
            ..CASE
        },
        Case {
            name: "config: a Secret's type changes",
            setup: vec![post(
                SECRETS,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}),
            )],
            request: patch(
                "/api/v1/namespaces/{ns}/secrets/s",
                MERGE,
                json!({"type": "example.com/other"}),
            ),
            ..CASE
        },
        Case {
            name: "config: a kubernetes.io/basic-auth Secret without its keys",
            request: post(
                SECRETS,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {}}),
            ),
            ..CASE
        },
        Case {
            name: "config: stringData joins data",
            request: post(
                SECRETS,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "MQ=="}, "stringData": {"b": "2"}}),
            ),
            fields: &["data", "type", "stringData"],
            ..CASE
        },
    ]
}

/// Leases: required resourceVersion on update, spec validation, create on PUT.
fn lease_cases() -> Vec<Case> {
    let held = || {
        post(
            LEASES,
            lease(json!({"holderIdentity": "a", "leaseDurationSeconds": 15})),
        )
    };
    vec![
        Case {
            name: "lease: PUT without a resourceVersion",
            setup: vec![held()],
            request: put(LEASE, lease(json!({"holderIdentity": "b"}))),
            ..CASE
        },
        Case {
            name: "lease: PUT with a stale resourceVersion",
            setup: vec![held()],
            request: put(LEASE, {
                let mut l = lease(json!({"holderIdentity": "b"}));
                l["metadata"]["resourceVersion"] = json!("1");
                l
            }),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "lease: PUT with the current resourceVersion",
            setup: vec![held()],
            request: put(LEASE, {
                let mut l = lease(json!({"holderIdentity": "b"}));
                l["metadata"]["resourceVersion"] = json!("{rv0}");
                l
            }),
            fields: &["spec"],
            ..CASE
        },
        Case {
            name: "lease: PUT creates a missing Lease",
            request: put(LEASE, lease(json!({"holderIdentity": "a"}))),
            fields: &["spec"],
            ..CASE
        },
        Case {
            name: "lease: zero duration, negative transitions",
            request: post(
                LEASES,
                lease(json!({"leaseDurationSeconds": 0, "leaseTransitions": -1})),
            ),
            ..CASE
        },
        Case {
            name: "lease: preferredHolder without a strategy",
            request: post(LEASES, lease(json!({"preferredHolder": "a"}))),
            fields: &["spec"],
            ..CASE
        },
        Case {
            name: "lease: a renewTime that is not a time",
            request: post(LEASES, lease(json!({"renewTime": "yesterday"}))),
            ..CASE
        },
    ]
}

/// Events: the events.k8s.io/v1 rules and the lenient core/v1 ones.
fn event_cases() -> Vec<Case> {
    vec![
        Case {
            name: "event v1: a valid Event",
            request: post(EVENTS_V1, event_v1(|_| {})),
            fields: &["note", "reportingController", "regarding", "type"],
            ..CASE
        },
        Case {
            name: "event v1: reportingController not a qualified name",
            request: post(
                EVENTS_V1,
                event_v1(|e| e["reportingController"] = json!("bad controller")),
            ),
            ..CASE
        },
        Case {
            name: "event v1: reportingInstance, action and reason over 128",
            request: post(
                EVENTS_V1,
                event_v1(|e| {
                    e["reportingInstance"] = json!(long(129));
                    e["action"] = json!(long(129));
                    e["reason"] = json!(long(129));
                }),
            ),
            ..CASE
        },
        Case {
            name: "event v1: a note over 1024",
            request: post(EVENTS_V1, event_v1(|e| e["note"] = json!(long(1025)))),
            ..CASE
        },
        Case {
            name: "event v1: missing eventTime, reason, action and reporting fields",
            request: post(
                EVENTS_V1,
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                    "regarding": {"kind": "Pod", "name": "p", "namespace": "{ns}"}}),
            ),
            ..CASE
        },
        Case {
            name: "event v1: type Bogus",
            request: post(EVENTS_V1, event_v1(|e| e["type"] = json!("Bogus"))),
            ..CASE
        },
        Case {
            name: "event v1: series with a count of 1",
            request: post(EVENTS_V1, event_v1(|e| e["series"] = json!({"count": 1}))),
            ..CASE
        },
        Case {
            name: "event v1: regarding another namespace",
            request: post(
                EVENTS_V1,
                event_v1(|e| e["regarding"]["namespace"] = json!("elsewhere")),
            ),
            ..CASE
        },
        Case {
            name: "event v1: deprecated fields set",
            request: post(
                EVENTS_V1,
                event_v1(|e| {
                    e["deprecatedCount"] = json!(3);
                    e["deprecatedSource"] = json!({"component": "c"});
                    e["deprecatedFirstTimestamp"] = json!("2026-01-01T00:00:00Z");
                }),
            ),
            ..CASE
        },
        Case {
            name: "event v1: update changes note, reason, action and regarding",
            setup: vec![post(EVENTS_V1, event_v1(|_| {}))],
            request: patch(
                EVENT_V1,
                MERGE,
                json!({"note": "other", "reason": "Other", "action": "Other", "regarding": {"name": "q"},
                    "reportingController": "example.com/other"}),
            ),
            ..CASE
        },
        Case {
            name: "event v1: update adds a series",
            setup: vec![post(EVENTS_V1, event_v1(|_| {}))],
            request: patch(
                EVENT_V1,
                MERGE,
                json!({"series": {"count": 2, "lastObservedTime": "2026-01-02T03:05:05.000000Z"}}),
            ),
            fields: &["series"],
            ..CASE
        },
        Case {
            name: "event core/v1: a minimal Event with any name",
            request: post(
                CORE_EVENTS,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "Any_Name.1"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "{ns}"}, "reason": "R", "message": "m"}),
            ),
            fields: &["reason", "involvedObject"],
            ..CASE
        },
        Case {
            name: "event core/v1: eventTime without reporting fields",
            request: post(
                CORE_EVENTS,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": "2026-01-02T03:04:05.000000Z",
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "{ns}"}}),
            ),
            ..CASE
        },
        Case {
            name: "event core/v1: involvedObject in another namespace",
            request: post(
                CORE_EVENTS,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "elsewhere"}}),
            ),
            ..CASE
        },
        Case {
            name: "event core/v1: update changes the message",
            setup: vec![post(
                CORE_EVENTS,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "{ns}"}, "message": "m"}),
            )],
            request: patch(
                "/api/v1/namespaces/{ns}/events/e",
                MERGE,
                json!({"message": "n", "count": 2}),
            ),
            fields: &["message", "count"],
            ..CASE
        },
    ]
}

/// Watches (replayed from a resourceVersion, ended by timeoutSeconds) and list options.
fn watch_and_list_cases() -> Vec<Case> {
    let labelled = || post(CONFIGMAPS, configmap(json!({"k": "1"})));
    let relabel = || {
        patch(
            CONFIGMAP,
            MERGE,
            json!({"metadata": {"labels": {"a": "2"}}, "data": {"k": "2"}}),
        )
    };
    let watch = |query: &str| get(&format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1&{query}"));
    vec![
        Case {
            name: "watch: an object leaving the selection is DELETED with its previous state",
            setup: vec![labelled(), relabel()],
            request: watch("labelSelector=a%3D1&resourceVersion={rv0}"),
            fields: &[
                "events.*.type",
                "events.*.object.metadata.labels",
                "events.*.object.data",
            ],
            ..CASE
        },
        Case {
            name: "watch: an object relabelled while watched leaves the selection",
            setup: vec![labelled()],
            request: get(&format!(
                "{CONFIGMAPS}?watch=true&timeoutSeconds=2&labelSelector=a%3D1&resourceVersion={{rv0}}"
            )),
            during: vec![relabel()],
            fields: &[
                "events.*.type",
                "events.*.object.metadata.labels",
                "events.*.object.data",
            ],
            ..CASE
        },
        Case {
            name: "watch: an object entering the selection is ADDED",
            setup: vec![labelled(), relabel()],
            request: watch("labelSelector=a%3D2&resourceVersion={rv0}"),
            fields: &[
                "events.*.type",
                "events.*.object.metadata.labels",
                "events.*.object.data",
            ],
            ..CASE
        },
        Case {
            name: "watch: a deletion inside the selection is DELETED",
            setup: vec![labelled(), relabel(), diff::delete(CONFIGMAP)],
            request: watch("labelSelector=a%3D2&resourceVersion={rv1}"),
            fields: &["events.*.type", "events.*.object.metadata.labels"],
            ..CASE
        },
        Case {
            name: "watch: sendInitialEvents without resourceVersionMatch",
            request: watch("sendInitialEvents=true"),
            ..CASE
        },
        Case {
            name: "watch: sendInitialEvents with NotOlderThan",
            setup: vec![labelled()],
            request: watch(
                "labelSelector=a&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            ),
            fields: &["events.*.type", "events.*.object.metadata.name"],
            ..CASE
        },
        Case {
            name: "watch: sendInitialEvents with Exact",
            request: watch("sendInitialEvents=true&resourceVersionMatch=Exact&allowWatchBookmarks=true"),
            ..CASE
        },
        Case {
            name: "watch: resourceVersionMatch without sendInitialEvents",
            request: watch("resourceVersionMatch=NotOlderThan&resourceVersion=0"),
            ..CASE
        },
        Case {
            name: "list: sendInitialEvents on a list",
            request: get(&format!("{CONFIGMAPS}?sendInitialEvents=true")),
            ..CASE
        },
        Case {
            name: "list: resourceVersionMatch without resourceVersion",
            request: get(&format!("{CONFIGMAPS}?resourceVersionMatch=NotOlderThan")),
            ..CASE
        },
        Case {
            name: "list: resourceVersionMatch Exact at resourceVersion 0",
            request: get(&format!("{CONFIGMAPS}?resourceVersionMatch=Exact&resourceVersion=0")),
            ..CASE
        },
        Case {
            name: "list: resourceVersionMatch Bogus",
            request: get(&format!("{CONFIGMAPS}?resourceVersionMatch=Bogus&resourceVersion=1")),
            ..CASE
        },
        Case {
            name: "list: NotOlderThan at resourceVersion 0",
            setup: vec![labelled()],
            request: get(&format!(
                "{CONFIGMAPS}?labelSelector=a&resourceVersionMatch=NotOlderThan&resourceVersion=0"
            )),
            fields: &["kind", "items.*.metadata.name"],
            ..CASE
        },
        Case {
            name: "list: a new namespace's ConfigMaps",
            request: get(CONFIGMAPS),
            fields: &["items.*.metadata.name"],
            ..CASE
        },
        Case {
            name: "list: a label selector that does not parse",
            request: get(&format!("{CONFIGMAPS}?labelSelector=a%3D%3D%3Db")),
            ..CASE
        },
        Case {
            name: "list: a field selector on an unsupported field",
            request: get(&format!("{CONFIGMAPS}?fieldSelector=data.k%3D1")),
            ..CASE
        },
        Case {
            name: "list: a continue token that does not decode",
            request: get(&format!("{CONFIGMAPS}?limit=1&continue=nonsense")),
            ..CASE
        },
    ]
}

/// Server-side apply.
fn apply_cases() -> Vec<Case> {
    let applied = |extra: Value| {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "1"}});
        json_patch::merge(&mut cm, &extra);
        cm
    };
    let apply_as = |manager: &str, body: Value| patch(&format!("{CONFIGMAP}?fieldManager={manager}"), APPLY, body);
    vec![
        Case {
            name: "apply: a stale metadata.resourceVersion",
            setup: vec![post(CONFIGMAPS, configmap(json!({"k": "0"})))],
            request: apply_as(
                "alice&force=true",
                applied(json!({"metadata": {"resourceVersion": "1"}})),
            ),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "apply: the current metadata.resourceVersion",
            setup: vec![post(CONFIGMAPS, configmap(json!({"k": "0"})))],
            request: apply_as(
                "alice&force=true",
                applied(json!({"metadata": {"resourceVersion": "{rv0}"}})),
            ),
            fields: &["data"],
            ..CASE
        },
        Case {
            name: "apply: a field an Update manager owns",
            setup: vec![post(CONFIGMAPS, configmap(json!({"k": "0"})))],
            request: apply_as("alice", applied(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "apply: creates a missing object",
            request: apply_as("alice", applied(json!({}))),
            fields: &[
                "data",
                "metadata.managedFields.0.manager",
                "metadata.managedFields.0.operation",
            ],
            ..CASE
        },
        Case {
            name: "apply: without a fieldManager",
            request: patch(CONFIGMAP, APPLY, applied(json!({}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "apply: a field another manager owns",
            setup: vec![apply_as("alice", applied(json!({})))],
            request: apply_as("bob", applied(json!({"data": {"k": "2"}}))),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "apply: a stale resourceVersion on a merge patch",
            setup: vec![post(CONFIGMAPS, configmap(json!({"k": "0"})))],
            request: patch(
                CONFIGMAP,
                MERGE,
                json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "1"}}),
            ),
            fields: &["message"],
            ..CASE
        },
    ]
}

/// CustomResourceDefinitions: CEL rules type-checked on creation; custom resource validation.
fn crd_cases() -> Vec<Case> {
    vec![
        Case {
            name: "crd: well-typed CEL rules",
            request: post(
                CRDS,
                crd(json!([{"rule": "self.size > 1"}, {"rule": "self.name.startsWith('a')"},
                    {"rule": "self.tags.all(t, size(t) < 10)"}, {"rule": "!has(self.name) || self.name != ''"}])),
            ),
            fields: &["metadata.name"],
            ..CASE
        },
        Case {
            name: "crd: a CEL rule names an undefined field",
            request: post(CRDS, crd(json!([{"rule": "self.missing > 1"}]))),
            ..CASE
        },
        Case {
            name: "crd: a CEL rule compares int with string",
            request: post(CRDS, crd(json!([{"rule": "self.size > 'a'"}]))),
            ..CASE
        },
        Case {
            name: "crd: a CEL rule that is not boolean",
            request: post(CRDS, crd(json!([{"rule": "self.size + 1"}]))),
            ..CASE
        },
        Case {
            name: "crd: a CEL rule that does not parse",
            request: post(CRDS, crd(json!([{"rule": "self.size >"}]))),
            ..CASE
        },
        Case {
            name: "crd: a CEL rule calls an unknown function",
            request: post(CRDS, crd(json!([{"rule": "self.name.nope()"}]))),
            ..CASE
        },
        Case {
            name: "crd: no storage version",
            request: post(CRDS, {
                let mut c = crd(json!([]));
                c["spec"]["versions"][0]["storage"] = json!(false);
                c
            }),
            ..CASE
        },
        Case {
            name: "crd: a name that is not plural.group",
            request: post(CRDS, {
                let mut c = crd(json!([]));
                c["metadata"]["name"] = json!("wrong.{ns}.example.com");
                c
            }),
            ..CASE
        },
        Case {
            name: "crd: an upper-case plural and a group without a dot",
            request: post(CRDS, {
                let mut c = crd(json!([]));
                c["metadata"]["name"] = json!("Widgets.example");
                c["spec"]["names"]["plural"] = json!("Widgets");
                c["spec"]["group"] = json!("example");
                c
            }),
            ..CASE
        },
        Case {
            name: "custom resource: a rule that fails",
            request: post(PIPELINES, {
                let mut p = pipeline();
                p["spec"]["interval"] = json!("1m");
                p["spec"]["schedule"] = json!("* * * * *");
                p
            }),
            ..CASE
        },
        Case {
            name: "custom resource: an unknown field is dropped",
            request: post(PIPELINES, {
                let mut p = pipeline();
                p["spec"]["nope"] = json!(1);
                p
            }),
            fields: &["spec.nope", "spec.repo", "metadata.generation"],
            ..CASE
        },
        Case {
            name: "custom resource: status through the main resource is ignored",
            request: post(PIPELINES, {
                let mut p = pipeline();
                p["status"] = json!({"phase": "Succeeded"});
                p
            }),
            fields: &["status"],
            ..CASE
        },
        Case {
            name: "custom resource: a body of another kind in its group",
            request: post(PIPELINES, {
                let mut p = pipeline();
                p["kind"] = json!("Nope");
                p
            }),
            ..CASE
        },
        Case {
            name: "custom resource: PUT without a resourceVersion",
            setup: vec![post(PIPELINES, pipeline())],
            request: put(&format!("{PIPELINES}/p"), pipeline()),
            ..CASE
        },
        Case {
            name: "custom resource: a Pipeline without repo",
            request: post(
                PIPELINES,
                json!({"apiVersion": "delivery.inge.4pr.es/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
                    "spec": {"buildImage": "busybox"}}),
            ),
            ..CASE
        },
    ]
}

/// What became of one case.
enum Outcome {
    /// Both servers answered alike.
    Match,
    /// They differed: the report lines (`-` real, `+` embedded).
    Mismatch(Vec<String>),
    /// The case could not run (setup failed, transport error).
    Broken(String),
}

struct Servers {
    real: kube::Client,
    embedded: kube::Client,
}

/// A fresh namespace on both servers; on the real one, with its default ServiceAccount (Pods need it).
async fn make_namespace(servers: &Servers, ns: &str) -> Result<(), String> {
    let vars = Vars {
        ns: ns.to_string(),
        rvs: Vec::new(),
    };
    let create = post(NAMESPACES, namespace("{ns}"));
    for (side, client) in [("real", &servers.real), ("embedded", &servers.embedded)] {
        let answer = diff::send(client, &create, &vars).await?;
        if answer.code != 201 {
            return Err(format!(
                "creating namespace {ns} on the {side} server: {} {}",
                answer.code, answer.body
            ));
        }
    }
    let sa = get("/api/v1/namespaces/{ns}/serviceaccounts/default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if diff::send(&servers.real, &sa, &vars).await?.code == 200 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "namespace {ns} got no default ServiceAccount on the real server"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the setup steps on one server, collecting resourceVersions; then the request.
async fn run_on(client: &kube::Client, case: &Case, ns: &str, side: &str) -> Result<(Answer, Vec<Step>), String> {
    let mut vars = Vars {
        ns: ns.to_string(),
        rvs: Vec::new(),
    };
    let mut cleanup = Vec::new();
    for (i, step) in case.setup.iter().enumerate() {
        let answer = succeed(client, step, &vars, &format!("setup step {i}"), side).await?;
        vars.rvs.push(answer.resource_version());
        cleanup.extend(cluster_scoped_leftover(step, &answer));
    }
    // A watch starts from a resourceVersion the setup returned, so what it reports does not
    // depend on whether the `during` steps land before or after it is registered.
    let during = async {
        for (i, step) in case.during.iter().enumerate() {
            succeed(client, step, &vars, &format!("step {i} during the request"), side).await?;
        }
        Ok::<_, String>(())
    };
    let (answer, during) = tokio::join!(diff::send(client, &case.request, &vars), during);
    let answer = answer?;
    during?;
    cleanup.extend(cluster_scoped_leftover(&case.request, &answer));
    Ok((answer, cleanup))
}

/// Sends a step that must succeed (2xx).
async fn succeed(client: &kube::Client, step: &Step, vars: &Vars, what: &str, side: &str) -> Result<Answer, String> {
    let answer = diff::send(client, step, vars).await?;
    if (200..300).contains(&answer.code) {
        Ok(answer)
    } else {
        Err(format!(
            "{what} failed on the {side} server: {} {}",
            answer.code, answer.body
        ))
    }
}

/// A DELETE for a cluster-scoped object a step created (namespaced ones go with their namespace).
fn cluster_scoped_leftover(step: &Step, answer: &Answer) -> Option<Step> {
    let name = answer.body["metadata"]["name"].as_str()?;
    let created = answer.code == 201 && step.method == Method::POST;
    let namespaced = answer.body["metadata"]["namespace"].is_string();
    (created && !namespaced).then(|| {
        let base = step.path.split('?').next().unwrap_or_default();
        diff::delete(&format!("{base}/{name}"))
    })
}

async fn run_case(servers: &Servers, case: &Case, ns: String) -> (Outcome, Vec<Step>) {
    if let Err(e) = make_namespace(servers, &ns).await {
        return (Outcome::Broken(e), Vec::new());
    }
    let (real, embedded) = tokio::join!(
        run_on(&servers.real, case, &ns, "real"),
        run_on(&servers.embedded, case, &ns, "embedded")
    );
    let ((real, cleanup), (embedded, _)) = match (real, embedded) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) | (_, Err(e)) => return (Outcome::Broken(e), Vec::new()),
    };
    let (a, b) = (diff::summary(&real, case.fields), diff::summary(&embedded, case.fields));
    let outcome = if a == b {
        Outcome::Match
    } else {
        Outcome::Mismatch(diff::diff_lines(&a, &b))
    };
    (outcome, cleanup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_api_server_answers_as_kube_apiserver() {
    let real = tokio::task::spawn_blocking(realkube::shared)
        .await
        .expect("start the real control plane");
    let cluster = Cluster::start().await;
    let embedded = cluster.client().await;
    cdkube::embedded::dev::install_crd(&embedded)
        .await
        .expect("install the Pipeline CRD");
    let servers = Servers {
        real: support::cluster::client_for(&real.kubeconfig).await,
        embedded,
    };
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");

    let run = uuid::Uuid::new_v4().simple().to_string();
    let results: Vec<(usize, Outcome, Vec<Step>)> = futures::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| {
            let ns = format!("conf-{}-{i}", &run[..8]);
            let servers = &servers;
            async move {
                let (outcome, cleanup) = run_case(servers, case, ns).await;
                (i, outcome, cleanup)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut results = results;
    results.sort_by_key(|(i, _, _)| *i);
    cleanup(&servers.real, &run, cases.len(), results.iter().flat_map(|(_, _, c)| c)).await;
    let failures = report(&cases, &results);
    assert!(failures.is_empty(), "conformance failures:\n{}", failures.join("\n"));
}

/// Prints the match count and every difference; returns what fails the test.
fn report(cases: &[Case], results: &[(usize, Outcome, Vec<Step>)]) -> Vec<String> {
    let matched = results.iter().filter(|(_, o, _)| matches!(o, Outcome::Match)).count();
    println!("conformance: {matched}/{} cases match", cases.len());
    let mut failures = Vec::new();
    for (i, outcome, _) in results {
        let case = &cases[*i];
        match (outcome, case.deviation) {
            (Outcome::Match, None) => {}
            (Outcome::Match, Some(_)) => failures.push(format!("{}: listed as a deviation but matches now", case.name)),
            (Outcome::Mismatch(lines), why) => {
                println!("mismatch: {} (- real, + embedded)\n{}", case.name, lines.join("\n"));
                match why {
                    Some(why) => println!("  documented deviation: {why}"),
                    None => failures.push(format!("{}: answers differ", case.name)),
                }
            }
            (Outcome::Broken(e), _) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    failures
}

/// Deletes what the cases left on the real server (it may be a user's cluster): their namespaces
/// and the cluster-scoped objects they created. Namespaces finish terminating on their own.
async fn cleanup<'a>(real: &kube::Client, run: &str, count: usize, leftovers: impl Iterator<Item = &'a Step>) {
    let vars = Vars::default();
    for step in leftovers {
        let _ = diff::send(real, step, &vars).await;
    }
    for i in 0..count {
        let ns = diff::delete(&format!("{NAMESPACES}/conf-{}-{i}", &run[..8]));
        let _ = diff::send(real, &ns, &vars).await;
    }
}

/// `pods/exec` checks made before any upgrade, and `pods/ephemeralcontainers` writes.
fn exec_and_ephemeral_cases() -> Vec<Case> {
    let exec = |query: &str| get(&format!("{POD}/exec?{query}"));
    let debugger = |name: &str, image: &str| json!({"name": name, "image": image, "command": ["true"]});
    let with_debugger = |p: &mut Value| p["spec"]["nodeName"] = json!("n1");
    let add = |list: Value| {
        patch(
            &format!("{POD}/ephemeralcontainers"),
            STRATEGIC,
            json!({"spec": {"ephemeralContainers": list}}),
        )
    };
    vec![
        Case {
            name: "exec: a missing Pod",
            request: exec("command=true&stdout=true"),
            ..CASE
        },
        Case {
            name: "exec: a container the Pod does not have",
            setup: vec![create_pod(with_debugger)],
            request: exec("command=true&stdout=true&container=other"),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "exec: a Pod without a node",
            setup: vec![create_pod(|_| {})],
            request: exec("command=true&stdout=true"),
            fields: &["message"],
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: GET is the Pod",
            setup: vec![create_pod(|_| {})],
            request: get(&format!("{POD}/ephemeralcontainers")),
            fields: &["kind", "metadata.name"],
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: a strategic merge patch adds one",
            setup: vec![create_pod(with_debugger)],
            request: add(json!([debugger("dbg", "busybox")])),
            fields: &["spec.ephemeralContainers", "spec.containers.0.name"],
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: an existing one changed",
            setup: vec![create_pod(with_debugger), add(json!([debugger("dbg", "busybox")]))],
            request: add(json!([debugger("dbg", "alpine")])),
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: a name taken by a container",
            setup: vec![create_pod(with_debugger)],
            request: add(json!([debugger("c", "busybox")])),
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: no image",
            setup: vec![create_pod(with_debugger)],
            request: add(json!([{"name": "dbg", "command": ["true"]}])),
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: a target that is not a container",
            setup: vec![create_pod(with_debugger)],
            request: add(json!([{"name": "dbg", "image": "busybox", "targetContainerName": "nope"}])),
            ..CASE
        },
        Case {
            name: "ephemeralcontainers: only they change",
            setup: vec![create_pod(with_debugger)],
            request: patch(
                &format!("{POD}/ephemeralcontainers"),
                MERGE,
                json!({"metadata": {"labels": {"a": "b"}}, "spec": {"activeDeadlineSeconds": 5}}),
            ),
            fields: &["metadata.labels", "spec.activeDeadlineSeconds"],
            ..CASE
        },
    ]
}
