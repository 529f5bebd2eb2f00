//! The `apiVersion` and `kind` of a request body, as kube-apiserver's decoders treat them: a
//! built-in type's body may leave them out (the endpoint's are assumed); another registered kind
//! cannot be converted; an unregistered one is unknown to the scheme. A custom resource's body
//! must name its kind, and exactly its group and version.
use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::resources::ResourceType;

/// Kinds kube-apiserver's scheme registers, by group/version (the common ones; any other
/// kind of these group/versions reads as unregistered).
const REGISTERED: &[(&str, &[&str])] = &[
    (
        "v1",
        &[
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
    ),
    (
        "apps/v1",
        &[
            "ControllerRevision",
            "DaemonSet",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
        ],
    ),
    ("batch/v1", &["CronJob", "Job"]),
    ("coordination.k8s.io/v1", &["Lease"]),
    ("events.k8s.io/v1", &["Event"]),
    (
        "rbac.authorization.k8s.io/v1",
        &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
    ),
    ("networking.k8s.io/v1", &["Ingress", "IngressClass", "NetworkPolicy"]),
    ("policy/v1", &["PodDisruptionBudget", "Eviction"]),
    ("apiextensions.k8s.io/v1", &["CustomResourceDefinition"]),
];

/// The Go package of a group's internal types, which conversion errors name.
pub(crate) fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        "apiextensions.k8s.io" => "apiextensions",
        "rbac.authorization.k8s.io" => "rbac",
        "coordination.k8s.io" => "coordination",
        other => other.split('.').next().unwrap_or(other),
    }
}

/// The internal kind a body's kind converts to (core/v1 and events.k8s.io/v1 Events are one).
fn internal(group: &str, kind: &str) -> (String, String) {
    (internal_package(group).to_string(), kind.to_string())
}

fn registered(api_version: &str, kind: &str) -> bool {
    // kube-apiserver's scheme has no apiextensions types, the CRD endpoint's scheme nothing else.
    REGISTERED
        .iter()
        .any(|(gv, kinds)| *gv == api_version && kinds.contains(&kind))
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Checks (and for built-in types completes) `apiVersion` and `kind` of a body for `rt`.
pub(crate) fn check(rt: &ResourceType, body: &mut Value) -> ApiResult<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    if rt.custom.is_some() {
        return check_custom(rt, body);
    }
    if body["kind"].as_str().is_none_or(str::is_empty) {
        body["kind"] = json!(rt.kind);
    }
    if body["apiVersion"].as_str().is_none_or(str::is_empty) {
        body["apiVersion"] = json!(rt.api_version());
    }
    let kind = body["kind"].as_str().unwrap_or_default().to_string();
    let api_version = body["apiVersion"].as_str().unwrap_or_default().to_string();
    if kind == rt.kind && api_version == rt.api_version() {
        return Ok(());
    }
    let (group, version) = split_api_version(&api_version);
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {}: {why}",
            rt.kind
        ))
    };
    let crd_endpoint = rt.group == "apiextensions.k8s.io";
    let known = registered(&api_version, &kind) && (crd_endpoint == (group == "apiextensions.k8s.io"));
    if !known {
        return Err(cannot(format!(
            "no kind {kind:?} is registered for version {api_version:?} in scheme \"pkg/runtime/scheme.go:111\""
        )));
    }
    if internal(group, &kind) != internal(&rt.group, &rt.kind) {
        let (package, _) = internal(&rt.group, &rt.kind);
        return Err(cannot(format!(
            "converting ({version}.{kind}) to ({package}.{}): unknown conversion",
            rt.kind
        )));
    }
    Err(ApiError::bad_request(format!(
        "the API version in the data ({api_version}) does not match the expected API version ({})",
        rt.api_version()
    )))
}

fn check_custom(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    let kind = body["kind"].as_str().unwrap_or_default();
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): Object 'Kind' is missing in '{body}'",
            rt.kind
        )));
    }
    if api_version != rt.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if kind != rt.kind {
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        let errs = [StatusCause::invalid(
            "kind",
            &json!(kind),
            &format!("must be {}", rt.kind),
        )];
        return Err(ApiError::invalid(&rt.group, kind, name, &errs));
    }
    Ok(())
}
