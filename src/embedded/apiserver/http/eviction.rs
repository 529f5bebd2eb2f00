//! `pods/eviction`: a policy/v1 Eviction deletes the Pod gracefully (its `deleteOptions` apply) and
//! answers 201 with a Status Success, as kube-apiserver does when no PodDisruptionBudget stands in
//! the way. PodDisruptionBudgets are not served, so every eviction is allowed.
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::response::json_response;
use crate::embedded::apiserver::http::target::Target;
use crate::embedded::apiserver::storage::ops::{self, DeleteOpts};

/// POST `pods/<name>/eviction`.
pub(super) fn evict(server: &Server, t: &Target, eviction: Value) -> ApiResult<Response> {
    let name = t.name.as_deref().unwrap_or_default();
    check_eviction(&eviction, name)?;
    let opts = delete_opts(&eviction["deleteOptions"])?;
    let ns = t.namespace.as_deref().unwrap_or_default();
    let mut st = server.store.lock();
    ops::delete(&mut st, &t.rt, ns, name, &opts)?;
    drop(st);
    server.store.changed.notify_one();
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(StatusCode::CREATED, &status, &[]))
}

/// 400 for a body that is not an Eviction, or names another Pod.
fn check_eviction(eviction: &Value, name: &str) -> ApiResult<()> {
    if !eviction.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    let kind = eviction["kind"].as_str().unwrap_or("Eviction");
    let api_version = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
    if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {api_version:?} cannot be handled as a Eviction: no kind {kind:?} is registered for version {api_version:?}"
        )));
    }
    let body_name = eviction["metadata"]["name"].as_str().unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

/// The Eviction's `deleteOptions` (grace period, preconditions, dry run).
fn delete_opts(options: &Value) -> ApiResult<DeleteOpts> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
    let doc: DeleteOptions = if options.is_null() {
        DeleteOptions::default()
    } else {
        serde_json::from_value(options.clone())
            .map_err(|e| ApiError::bad_request(format!("error decoding Eviction deleteOptions: {e}")))?
    };
    let preconditions = doc.preconditions.unwrap_or_default();
    Ok(DeleteOpts {
        propagation: doc.propagation_policy,
        grace: doc.grace_period_seconds,
        uid: preconditions.uid,
        resource_version: preconditions.resource_version,
        dry_run: doc.dry_run.is_some_and(|d| d.iter().any(|v| v == "All")),
    })
}
