//! Type-specific behaviour of writes: decoding built-in types, defaults, pruning and schema
//! validation of custom resources, CRD status, pod and namespace rules.
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::crd;
use crate::embedded::apiserver::admission::names::{
    is_dns_label, is_dns_subdomain, valid_label_key, valid_label_value,
};
use crate::embedded::apiserver::admission::schema;
use crate::embedded::apiserver::admission::{cel, events};
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::resources::{ResourceType, View};

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
    unknown_fields(unknown, validation)
}

fn unknown_fields(unknown: Vec<String>, mode: FieldValidation) -> ApiResult<Vec<String>> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = unknown.iter().map(|p| format!("unknown field {p:?}")).collect();
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            lines.join(", ")
        ))),
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
    use k8s_openapi::api::{coordination::v1 as coord, core::v1 as core};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let roundtrip = match rt.plural.as_str() {
        "pods" => typed::<core::Pod>(rt, obj),
        "namespaces" => typed::<core::Namespace>(rt, obj),
        "secrets" => typed::<core::Secret>(rt, obj),
        "configmaps" => typed::<core::ConfigMap>(rt, obj),
        "serviceaccounts" => typed::<core::ServiceAccount>(rt, obj),
        "events" => typed::<core::Event>(rt, obj),
        "leases" => typed::<coord::Lease>(rt, obj),
        "customresourcedefinitions" => typed::<ext::CustomResourceDefinition>(rt, obj),
        _ => Ok(obj.clone()),
    }?;
    let mut unknown = Vec::new();
    collect_dropped(obj, &roundtrip, "", &mut unknown);
    *obj = roundtrip;
    match rt.plural.as_str() {
        "pods" => prepare_pod(obj, old),
        "namespaces" => prepare_namespace(obj, old),
        "secrets" => prepare_secret(obj),
        "customresourcedefinitions" => crd::prepare(obj, old),
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

fn prepare_pod(obj: &mut Value, old: Option<&Value>) {
    if let Some(old) = old {
        // Pod status only changes through pods/status, which copies it in afterwards.
        if obj["status"].is_null() {
            obj["status"] = old["status"].clone();
        }
        return;
    }
    let spec = &mut obj["spec"];
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
        ("priority", json!(0)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
    ] {
        if spec[field].is_null() {
            spec[field] = value;
        }
    }
    if spec["serviceAccountName"].is_null() {
        spec["serviceAccountName"] = json!("default");
    }
    if spec["serviceAccount"].is_null() {
        spec["serviceAccount"] = spec["serviceAccountName"].clone();
    }
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c["terminationMessagePath"].is_null() {
                c["terminationMessagePath"] = json!("/dev/termination-log");
            }
            if c["terminationMessagePolicy"].is_null() {
                c["terminationMessagePolicy"] = json!("File");
            }
            if c["imagePullPolicy"].is_null() {
                let image = c["image"].as_str().unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                let tagged = last.contains(':') && !image.ends_with(":latest");
                let policy = if tagged || image.contains('@') {
                    "IfNotPresent"
                } else {
                    "Always"
                };
                c["imagePullPolicy"] = json!(policy);
            }
        }
    }
    obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])});
}

fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let has = |c: &Value, kind: &str| c["resources"][kind].as_object().is_some_and(|m| !m.is_empty());
    if containers.iter().all(|c| !has(c, "requests") && !has(c, "limits")) {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        ["cpu", "memory"].iter().all(|r| !limits[r].is_null())
            && c["resources"]["requests"]
                .as_object()
                .is_none_or(|req| req.iter().all(|(k, v)| &limits[k] == v))
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
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

/// Keys of ConfigMap `data`/`binaryData` and Secret `data` (`[-._a-zA-Z0-9]+`, at most 253).
fn validate_config_keys(obj: &Value, errs: &mut Vec<StatusCause>) {
    for field in ["data", "binaryData"] {
        for k in obj[field].as_object().into_iter().flat_map(|m| m.keys()) {
            let ok =
                !k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            if !ok || k == "." || k == ".." {
                errs.push(StatusCause::invalid(
                    &format!("{field}[{k}]"),
                    &json!(k),
                    CONFIG_KEY_MSG,
                ));
            }
        }
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
    let mut errs = Vec::new();
    validate_meta(rt, obj, &mut errs);
    if let Some(custom) = &rt.custom {
        errs.extend(schema::validate(&custom.schema, obj));
        if errs.is_empty() {
            errs.extend(cel::validate(&custom.schema, obj, old));
        }
    } else {
        match rt.plural.as_str() {
            "pods" => validate_pod(obj, old, &mut errs),
            "customresourcedefinitions" => errs.extend(crd::validate(obj, old)),
            "events" if rt.view == View::EventsV1 => errs.extend(events::validate_v1(obj)),
            "secrets" => {
                validate_config_keys(obj, &mut errs);
                if let Some(old) = old
                    && old["type"] != obj["type"]
                {
                    errs.push(StatusCause::invalid("type", &obj["type"], "field is immutable"));
                }
            }
            "configmaps" => validate_config_keys(obj, &mut errs),
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.group, &rt.kind, name, &errs))
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const KEY_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn validate_meta(rt: &ResourceType, obj: &Value, errs: &mut Vec<StatusCause>) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let label_only = rt.plural == "namespaces";
    if label_only && !is_dns_label(name) {
        errs.push(StatusCause::invalid("metadata.name", &json!(name), LABEL_MSG));
    } else if !label_only && !is_dns_subdomain(name) {
        errs.push(StatusCause::invalid("metadata.name", &json!(name), SUBDOMAIN_MSG));
    }
    for (field, map) in [
        ("labels", &obj["metadata"]["labels"]),
        ("annotations", &obj["metadata"]["annotations"]),
    ] {
        if !(map.is_null() || map.as_object().is_some_and(|m| m.values().all(Value::is_string))) {
            errs.push(StatusCause::invalid(
                &format!("metadata.{field}"),
                map,
                "must be a map of strings",
            ));
        }
    }
    for field in ["labels", "annotations"] {
        for k in obj["metadata"][field].as_object().into_iter().flat_map(|m| m.keys()) {
            if !valid_label_key(k) {
                errs.push(StatusCause::invalid(&format!("metadata.{field}"), &json!(k), KEY_MSG));
            }
        }
    }
    for v in obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if !valid_label_value(v.as_str().unwrap_or_default()) {
            errs.push(StatusCause::invalid("metadata.labels", v, LABEL_VALUE_MSG));
        }
    }
    for (i, owner) in obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if owner[field].as_str().unwrap_or_default().is_empty() {
                errs.push(StatusCause::invalid(
                    &format!("metadata.ownerReferences[{i}].{field}"),
                    &json!(""),
                    &format!("{field} must not be empty"),
                ));
            }
        }
    }
    let controllers = obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| a.iter().filter(|o| o["controller"] == json!(true)).count())
        .unwrap_or(0);
    if controllers > 1 {
        errs.push(StatusCause::invalid(
            "metadata.ownerReferences",
            &obj["metadata"]["ownerReferences"],
            "Only one reference can have Controller set to true",
        ));
    }
}

/// `<path>.name` of a container or volume: required, a DNS label, unique among `seen`.
fn check_name(item: &Value, path: &str, seen: &mut Vec<String>, errs: &mut Vec<StatusCause>) {
    let name = item["name"].as_str().unwrap_or_default();
    let field = format!("{path}.name");
    if name.is_empty() {
        errs.push(StatusCause::required(&field, ""));
    } else if !is_dns_label(name) {
        errs.push(StatusCause::invalid(&field, &json!(name), LABEL_MSG));
    } else if seen.iter().any(|s| s == name) {
        errs.push(StatusCause::duplicate(&field, &json!(name)));
    }
    seen.push(name.to_string());
}

fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Vec<StatusCause>) {
    let spec = &obj["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        errs.push(StatusCause::required("spec.containers", ""));
    }
    // Container and volume names become file names on the runner's host: DNS labels only.
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let path = format!("spec.{list}[{i}]");
            check_name(c, &path, &mut names, errs);
            if c["image"].as_str().unwrap_or_default().is_empty() && old.is_none() {
                errs.push(StatusCause::required(&format!("{path}.image"), ""));
            }
        }
    }
    let mut volumes = Vec::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        check_name(v, &format!("spec.volumes[{i}]"), &mut volumes, errs);
    }
    let policy = spec["restartPolicy"].as_str().unwrap_or_default();
    if !["Always", "OnFailure", "Never"].contains(&policy) {
        errs.push(StatusCause::not_supported(
            "spec.restartPolicy",
            &json!(policy),
            &["Always".into(), "OnFailure".into(), "Never".into()],
        ));
    }
    if let Some(d) = spec["activeDeadlineSeconds"].as_i64()
        && d <= 0
    {
        errs.push(StatusCause::invalid(
            "spec.activeDeadlineSeconds",
            &json!(d),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(old) = old {
        // Only images, activeDeadlineSeconds and tolerations may change on a Pod.
        let mutable = |s: &Value| {
            let mut s = s.clone();
            for list in ["initContainers", "containers"] {
                for c in s[list].as_array_mut().into_iter().flatten() {
                    c["image"] = Value::Null;
                }
            }
            if let Some(m) = s.as_object_mut() {
                m.remove("activeDeadlineSeconds");
                m.remove("tolerations");
            }
            s
        };
        if mutable(&old["spec"]) != mutable(spec) {
            errs.push(StatusCause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }
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
