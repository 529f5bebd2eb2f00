//! Type-specific behaviour of writes: decoding built-in types, defaults, pruning and schema
//! validation of custom resources, CRD status, pod and namespace rules.
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::crd;
use crate::embedded::apiserver::admission::rbac;
use crate::embedded::apiserver::admission::schema;
use crate::embedded::apiserver::admission::{cel, events};
use crate::embedded::apiserver::admission::{config, leases, meta, network, nodes, pods};
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::resources::ResourceType;

/// How the server treats fields the schema does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FieldValidation {
    /// Reject with 400.
    Strict,
    /// Drop them and warn (the server's default).
    #[default]
    Warn,
    /// Drop them silently.
    Ignore,
}

/// Defaults, prunes and normalises an object before validation. Returns warnings.
pub(crate) fn prepare(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    validation: FieldValidation,
) -> ApiResult<Vec<String>> {
    let unknown = if let Some(custom) = &rt.custom {
        if old.is_none()
            && rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            // Status is written through the subresource only.
            m.remove("status");
        }
        let mut unknown = schema::prune(&custom.schema, obj);
        unknown.extend(custom_metadata(rt, obj)?);
        schema::apply_defaults(&custom.schema, obj);
        unknown
    } else {
        prepare_builtin(rt, obj, old)?
    };
    unknown_fields(rt, unknown, validation)
}

fn unknown_fields(rt: &ResourceType, unknown: Vec<String>, mode: FieldValidation) -> ApiResult<Vec<String>> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = unknown.iter().map(|p| format!("unknown field {p:?}")).collect();
    match mode {
        FieldValidation::Strict => Err(decode_error(rt, format!("strict decoding error: {}", lines.join(", ")))),
        FieldValidation::Warn => Ok(lines),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// 400 for a body that does not decode into the type, with the apiserver's wording.
fn decode_error(rt: &ResourceType, cause: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: {cause}",
        rt.kind, rt.version, rt.kind
    ))
}

/// A custom resource is unstructured except for its metadata, which is an ObjectMeta like any
/// object's: decoded (a field of the wrong type is a 400, as apiextensions-apiserver's coercion
/// makes it) and cleared of unknown fields, whose paths are returned. Everything that reads
/// metadata later (owner references for GC, finalizers, kube-rs clients) can rely on its shape.
fn custom_metadata(rt: &ResourceType, obj: &mut Value) -> ApiResult<Vec<String>> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let sent = obj["metadata"].take();
    let meta: ObjectMeta = serde_path_to_error::deserialize(sent.clone()).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "metadata".into()
        } else {
            format!("metadata.{path}")
        };
        decode_error(rt, format!("{field}: {}", e.inner()))
    })?;
    let back = serde_json::to_value(meta).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut unknown = Vec::new();
    collect_dropped(&sent, &back, "metadata", &mut unknown);
    obj["metadata"] = back;
    Ok(unknown)
}

/// Decodes a built-in object through its typed form, as the real server does: unknown fields
/// are dropped (and reported), wrong types are a 400.
fn prepare_builtin(rt: &ResourceType, obj: &mut Value, old: Option<&Value>) -> ApiResult<Vec<String>> {
    use k8s_openapi::api::{coordination::v1 as coord, core::v1 as core, discovery::v1 as disc, rbac::v1 as rbacv1};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
    let roundtrip = match rt.plural.as_str() {
        "pods" => typed::<core::Pod>(rt, obj),
        "namespaces" => typed::<core::Namespace>(rt, obj),
        "secrets" => typed::<core::Secret>(rt, obj),
        "configmaps" => typed::<core::ConfigMap>(rt, obj),
        "serviceaccounts" => typed::<core::ServiceAccount>(rt, obj),
        "events" => typed::<core::Event>(rt, obj),
        "leases" => typed::<coord::Lease>(rt, obj),
        "customresourcedefinitions" => typed::<ext::CustomResourceDefinition>(rt, obj),
        "roles" => typed::<rbacv1::Role>(rt, obj),
        "rolebindings" => typed::<rbacv1::RoleBinding>(rt, obj),
        "clusterroles" => typed::<rbacv1::ClusterRole>(rt, obj),
        "clusterrolebindings" => typed::<rbacv1::ClusterRoleBinding>(rt, obj),
        "nodes" => typed::<core::Node>(rt, obj),
        "services" => typed::<core::Service>(rt, obj),
        "endpoints" => typed::<core::Endpoints>(rt, obj),
        "endpointslices" => typed::<disc::EndpointSlice>(rt, obj),
        "apiservices" => typed::<apireg::APIService>(rt, obj),
        _ => Ok(obj.clone()),
    }?;
    let mut unknown = Vec::new();
    collect_dropped(obj, &roundtrip, "", &mut unknown);
    *obj = roundtrip;
    match rt.plural.as_str() {
        "pods" => pods::prepare(obj, old)?,
        "leases" => leases::prepare(obj, old),
        "namespaces" => prepare_namespace(obj, old),
        "secrets" => prepare_secret(obj),
        "customresourcedefinitions" => crd::prepare(obj, old),
        "services" => network::prepare_service(obj, old),
        "endpoints" => network::prepare_endpoints(obj),
        "nodes" => nodes::prepare(obj),
        _ if rbac::is_rbac(&rt.group) => rbac::prepare(&rt.kind, obj),
        _ => {}
    }
    Ok(unknown)
}

fn typed<T: DeserializeOwned + Serialize>(rt: &ResourceType, obj: &Value) -> ApiResult<Value> {
    let typed: T = serde_path_to_error::deserialize(obj.clone()).map_err(|e| decode_error(rt, e))?;
    let mut back = serde_json::to_value(typed).map_err(|e| ApiError::internal(e.to_string()))?;
    // Typed decoding loses empty maps the client sent; keep apiVersion/kind as sent.
    back["apiVersion"] = obj["apiVersion"].clone();
    back["kind"] = obj["kind"].clone();
    if back["metadata"].is_null() {
        back["metadata"] = json!({});
    }
    Ok(back)
}

/// Paths present (non-null) in `sent` but missing after decoding.
fn collect_dropped(sent: &Value, kept: &Value, prefix: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get(k) {
                    Some(kv) => collect_dropped(v, kv, &path, out),
                    None if !is_empty(v) => out.push(path),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, kv)) in a.iter().zip(b).enumerate() {
                collect_dropped(v, kv, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `stringData` is write-only: merged into `data` (base64, winning over a `data` key of the same
/// name) as the Secret strategy does; `type` defaults to Opaque.
fn prepare_secret(obj: &mut Value) {
    use base64::Engine;
    if let Some(Value::Object(plain)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        for (k, v) in plain {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            obj["data"][k] = json!(encoded);
        }
    }
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
}

fn prepare_namespace(obj: &mut Value, old: Option<&Value>) {
    let name = obj["metadata"]["name"].clone();
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if old.is_none() {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
}

/// Validates the object after `prepare`; 422 with every field error.
pub(crate) fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut errs = match old {
        None => meta::validate_create(rt, obj),
        Some(old) => meta::validate_update(rt, obj, old),
    };
    if let Some(custom) = &rt.custom {
        errs.extend(schema::validate(&custom.schema, obj));
        if cel::has_rules(&custom.schema) {
            // As apiextensions-apiserver: CEL rules run only on an object without blocking errors.
            if errs.iter().any(blocks_rules) {
                errs.push(StatusCause::invalid(
                    "<nil>",
                    &Value::Null,
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            } else {
                errs.extend(cel::validate(&custom.schema, obj, old));
            }
        }
    } else {
        errs.extend(validate_builtin(rt, obj, old));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.group, &rt.kind, name, &errs))
    }
}

/// The error types after which apiextensions-apiserver skips CEL rules (`hasBlockingErr`).
fn blocks_rules(e: &StatusCause) -> bool {
    matches!(
        e.reason,
        "FieldValueNotSupported"
            | "FieldValueRequired"
            | "FieldValueTooLong"
            | "FieldValueTooMany"
            | "FieldValueTypeInvalid"
    )
}

/// The type rules of built-in types; on update the core types also re-check their create rules
/// (metadata included), as their `ValidateXUpdate` functions do.
fn validate_builtin(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let core = rt.group.is_empty();
    if let Some(old) = old
        && core
        && matches!(
            rt.plural.as_str(),
            "pods" | "configmaps" | "secrets" | "serviceaccounts"
        )
    {
        errs.extend(meta::validate_create(rt, obj));
        match rt.plural.as_str() {
            "configmaps" => errs.extend(config::validate_immutable(obj, old, &["data", "binaryData"])),
            "secrets" => {
                if old["type"] != obj["type"] {
                    errs.push(StatusCause::invalid("type", &obj["type"], "field is immutable"));
                }
                errs.extend(config::validate_immutable(obj, old, &["data"]));
            }
            _ => {}
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => errs.extend(pods::validate(obj, old)),
        ("", "configmaps") => errs.extend(config::validate_configmap(obj)),
        ("", "secrets") => errs.extend(config::validate_secret(obj)),
        (_, "events") => errs.extend(events::validate(rt, obj, old)),
        ("coordination.k8s.io", "leases") => errs.extend(leases::validate(obj)),
        (_, "customresourcedefinitions") => errs.extend(crd::validate(obj, old)),
        ("", "services") => errs.extend(network::validate_service(obj, old)),
        ("", "endpoints") => errs.extend(network::validate_endpoints(obj)),
        ("discovery.k8s.io", "endpointslices") => errs.extend(network::validate_endpoint_slice(obj)),
        ("", "nodes") => errs.extend(nodes::validate(obj)),
        (rbac::GROUP, _) => errs.extend(rbac::validate(&rt.kind, obj, old)),
        _ => {}
    }
    errs
}

/// Refuses deletions the real server refuses.
pub(crate) fn check_delete(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if rt.plural == "namespaces" && rt.group.is_empty() && ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            name,
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}

/// The grace period of a deletion: pods bound to a node terminate gracefully, the rest at once.
pub(crate) fn grace_period(rt: &ResourceType, obj: &Value, requested: Option<i64>) -> i64 {
    if rt.plural == "namespaces" && rt.group.is_empty() {
        // Namespaces always go through termination (the namespace controller empties them).
        return requested.unwrap_or(0);
    }
    if rt.plural != "pods" || !rt.group.is_empty() {
        return 0;
    }
    let phase = obj["status"]["phase"].as_str().unwrap_or_default();
    let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let default = obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    requested.unwrap_or(default).max(0)
}

/// Whether an object is still in graceful termination (the kubelet has not confirmed yet).
pub(crate) fn graceful_pending(rt: &ResourceType, obj: &Value) -> bool {
    rt.plural == "pods" && obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) > 0
}

/// Marks an object entering termination (namespaces get phase Terminating and their finalizer).
pub(crate) fn on_terminating(rt: &ResourceType, obj: &mut Value) {
    if rt.plural == "namespaces" && rt.group.is_empty() {
        obj["status"]["phase"] = json!("Terminating");
        if obj["metadata"]["deletionGracePeriodSeconds"].is_null() {
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
    }
}

/// Whether a namespace still has `spec.finalizers` (the namespace controller's own).
pub(crate) fn spec_finalizers(rt: &ResourceType, obj: &Value) -> bool {
    rt.plural == "namespaces"
        && rt.group.is_empty()
        && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}
