//! ObjectMeta rules every write satisfies, as apimachinery's `ValidateObjectMeta` and
//! `ValidateObjectMetaUpdate` state them: names and generateName, labels, annotations (and their
//! 256 KiB total), owner references and finalizers; plus the core API's finalizer-name rule.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names::{self, label_value, qualified_name};
use crate::embedded::apiserver::error::{StatusCause, go_json};
use crate::embedded::apiserver::resources::{ResourceType, View};

/// The total size of a object's annotations, keys and values (`TotalAnnotationSizeLimitB`).
const ANNOTATIONS_MAX: usize = 256 * 1024;

/// How a type's names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// RFC 1123 subdomain (most types).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Dns1035,
    /// Only what a URL path segment needs (core/v1 Events, RBAC objects).
    PathSegment,
}

/// The metadata rules of a type.
#[derive(Debug, Clone, Copy)]
struct Rules {
    name: NameRule,
    /// The core API's extra rule: a finalizer without a `/` must be a standard one.
    kube_finalizers: bool,
}

fn rules(rt: &ResourceType) -> Rules {
    let core = rt.group.is_empty() || rt.view == View::EventsV1;
    let name = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("", "events") => NameRule::PathSegment,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    };
    Rules {
        name,
        kube_finalizers: core && rt.custom.is_none() && !(rt.group.is_empty() && rt.plural == "events"),
    }
}

fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    match rule {
        NameRule::Subdomain => names::name_is_dns_subdomain(name, prefix),
        NameRule::Label => names::name_is_dns_label(name, prefix),
        NameRule::Dns1035 => names::name_is_dns1035_label(name, prefix),
        NameRule::PathSegment => names::path_segment_name(name, prefix),
    }
}

/// Metadata errors of a new object (its name already generated).
pub(crate) fn validate_create(rt: &ResourceType, obj: &Value) -> Vec<StatusCause> {
    let rules = rules(rt);
    let meta = &obj["metadata"];
    let mut errs = Vec::new();
    let generate = meta["generateName"].as_str().unwrap_or_default();
    if !generate.is_empty() {
        for msg in name_errors(rules.name, generate, true) {
            errs.push(StatusCause::invalid("metadata.generateName", &json!(generate), &msg));
        }
    }
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(StatusCause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_errors(rules.name, name, false) {
            errs.push(StatusCause::invalid("metadata.name", &json!(name), &msg));
        }
    }
    errs.extend(common(meta));
    errs.extend(finalizers(meta));
    if rules.kube_finalizers {
        errs.extend(kube_finalizers(meta));
    }
    errs
}

/// Metadata errors of an update (the server has already kept its own fields).
pub(crate) fn validate_update(rt: &ResourceType, obj: &Value, old: &Value) -> Vec<StatusCause> {
    let meta = &obj["metadata"];
    let mut errs = Vec::new();
    let (new_gen, old_gen) = (
        meta["generation"].as_i64().unwrap_or(0),
        old["metadata"]["generation"].as_i64().unwrap_or(0),
    );
    if new_gen < old_gen {
        errs.push(StatusCause::invalid(
            "metadata.generation",
            &json!(new_gen),
            "must not be decremented",
        ));
    }
    errs.extend(common(meta));
    if rules(rt).kube_finalizers {
        errs.extend(kube_finalizers(meta));
    }
    errs
}

/// Labels, annotations and owner references: checked on create and update alike.
fn common(meta: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        for msg in qualified_name(k) {
            errs.push(StatusCause::invalid("metadata.labels", &json!(k), &msg));
        }
        let v = v.as_str().unwrap_or_default();
        for msg in label_value(v) {
            errs.push(StatusCause::invalid("metadata.labels", &json!(v), &msg));
        }
    }
    let annotations = meta["annotations"].as_object();
    let mut size = 0;
    for (k, v) in annotations.into_iter().flatten() {
        // Annotation keys are qualified names in any case.
        for msg in qualified_name(&k.to_lowercase()) {
            errs.push(StatusCause::invalid("metadata.annotations", &json!(k), &msg));
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    if size > ANNOTATIONS_MAX {
        errs.push(StatusCause::too_long("metadata.annotations", ANNOTATIONS_MAX as u64));
    }
    errs.extend(owner_references(&meta["ownerReferences"]));
    errs
}

/// An owner reference as metav1 marshals it (field order and `omitempty` of its JSON tags).
fn owner_json(owner: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["apiVersion", "kind", "name", "uid"] {
        parts.push(format!(
            "\"{key}\":{}",
            go_json(&json!(owner[key].as_str().unwrap_or_default()))
        ));
    }
    for key in ["controller", "blockOwnerDeletion"] {
        if let Some(b) = owner[key].as_bool() {
            parts.push(format!("\"{key}\":{b}"));
        }
    }
    format!("{{{}}}", parts.join(","))
}

fn owner_references(owners: &Value) -> Vec<StatusCause> {
    let Some(list) = owners.as_array() else {
        return Vec::new();
    };
    let all = format!("[{}]", list.iter().map(owner_json).collect::<Vec<_>>().join(","));
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for (i, owner) in list.iter().enumerate() {
        let at = format!("metadata.ownerReferences[{i}]");
        let api_version = owner["apiVersion"].as_str().unwrap_or_default();
        let parsed = parse_group_version(api_version);
        if api_version.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.apiVersion"), "must not be empty"));
        } else if parsed.is_none() {
            errs.push(StatusCause::invalid(
                &format!("{at}.apiVersion"),
                &json!(api_version),
                "must be <group>/<version> or <version>",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if owner[field].as_str().unwrap_or_default().is_empty() {
                errs.push(StatusCause::required(&format!("{at}.{field}"), "must not be empty"));
            }
        }
        let kind = owner["kind"].as_str().unwrap_or_default();
        let (group, version) = parsed.unwrap_or_default();
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(StatusCause::invalid_rendered(
                &at,
                &owner_json(owner),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if owner["controller"] == json!(true) {
            let this = format!("{kind}/{}", owner["name"].as_str().unwrap_or_default());
            match &first_controller {
                Some(first) => errs.push(StatusCause::invalid_rendered(
                    "metadata.ownerReferences",
                    &all,
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    errs
}

/// `schema.ParseGroupVersion`: `""`, `v1` or `group/version`; `None` when it does not parse or
/// names no version.
fn parse_group_version(s: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = s.split('/').collect();
    let (group, version) = match parts.as_slice() {
        [v] => ("", *v),
        [g, v] => (*g, *v),
        _ => return None,
    };
    (!version.is_empty()).then(|| (group.to_string(), version.to_string()))
}

/// `ValidateFinalizers`: qualified names, and not both orphan and foregroundDeletion.
fn finalizers(meta: &Value) -> Vec<StatusCause> {
    let list: Vec<&str> = meta["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut errs = Vec::new();
    for f in &list {
        for msg in qualified_name(f) {
            errs.push(StatusCause::invalid("metadata.finalizers", &json!(f), &msg));
        }
    }
    if list.contains(&"orphan") && list.contains(&"foregroundDeletion") {
        errs.push(StatusCause::invalid(
            "metadata.finalizers",
            &meta["finalizers"],
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// The core API's `validateKubeFinalizerName`: an unqualified finalizer must be a standard one.
fn kube_finalizers(meta: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    for (i, f) in meta["finalizers"].as_array().into_iter().flatten().enumerate() {
        let f = f.as_str().unwrap_or_default();
        if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
            errs.push(StatusCause::invalid(
                &format!("metadata.finalizers[{i}]"),
                &json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}
