//! `POST /api/v1/namespaces/NS/pods/NAME/binding`: how a scheduler assigns a Pod to a node.
//! `spec.nodeName` cannot be changed by an update, so this is the only way a Pod created without a
//! node gets one, as in kube-apiserver (pkg/registry/core/pod/storage, BindingREST).
use k8s_openapi::api::core::v1::Binding;
use serde_json::{Value, json};

use crate::embedded::apiserver::decode;
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::ResourceType;
use crate::embedded::apiserver::storage::store::State;

/// Binds Pod `ns/name` to the node named by the `v1 Binding` in `body`: sets `spec.nodeName`,
/// copies the Binding's annotations, and marks the PodScheduled condition True. Returns the
/// Status the real server answers with (201).
pub(crate) fn bind(st: &mut State, rt: &ResourceType, ns: &str, name: &str, body: &[u8]) -> ApiResult<Value> {
    // Decoded typed, as the real server does (a kind or apiVersion other than v1 Binding is refused
    // there too): whatever is copied into the Pod has the Pod's types.
    let binding: Binding = decode::json(body, "invalid Binding body")?;
    if binding.metadata.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    let node = binding.target.name.as_deref().unwrap_or_default();
    let kind = binding.target.kind.as_deref().unwrap_or_default();
    let mut errors = Vec::new();
    if node.is_empty() {
        errors.push(StatusCause::invalid("target.name", &json!(node), "must not be empty"));
    }
    if !kind.is_empty() && kind != "Node" {
        errors.push(StatusCause::invalid(
            "target.kind",
            &json!(kind),
            "must be empty or 'Node'",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, &errors));
    }
    let current = st
        .get(rt.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    if !current["metadata"]["deletionTimestamp"].is_null() {
        let why = format!("pod {name} is being deleted, cannot be assigned to a host");
        return Err(ApiError::conflict("", "pods/binding", name, &why));
    }
    if let Some(assigned) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        let why = format!("pod {name} is already assigned to node {assigned:?}");
        return Err(ApiError::conflict("", "pods/binding", name, &why));
    }
    let mut pod = current;
    pod["spec"]["nodeName"] = json!(node);
    for (k, v) in binding.metadata.annotations.into_iter().flatten() {
        pod["metadata"]["annotations"][k] = json!(v);
    }
    set_scheduled(&mut pod);
    st.put(rt.key(), pod);
    Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}

/// Sets the PodScheduled condition to True (kept as is when it already is).
fn set_scheduled(pod: &mut Value) {
    let now = ids::now();
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}),
        None => conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now})),
    }
}
