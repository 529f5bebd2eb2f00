//! CustomResourceDefinitions: defaulting, validation and the status the apiextensions
//! controllers would write (names accepted, established), done synchronously on write.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::cel;
use crate::embedded::apiserver::admission::schema;
use crate::embedded::apiserver::error::StatusCause;
use crate::embedded::apiserver::ids;

/// Defaults the CRD and sets its status.
pub(crate) fn prepare(obj: &mut Value, old: Option<&Value>) {
    let names = &mut obj["spec"]["names"];
    if let Some(kind) = names["kind"].as_str().map(str::to_string) {
        if names["singular"].is_null() {
            names["singular"] = json!(kind.to_lowercase());
        }
        if names["listKind"].is_null() {
            names["listKind"] = json!(format!("{kind}List"));
        }
    }
    if obj["spec"]["conversion"].is_null() {
        obj["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let storage = obj["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
        .and_then(|v| v["name"].as_str())
        .map(str::to_string);
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    if let Some(s) = storage
        && !stored.contains(&json!(s))
    {
        stored.push(json!(s));
    }
    let now = ids::now();
    let condition = |kind: &str, reason: &str, message: &str| {
        let since = old
            .and_then(|o| o["status"]["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == json!(kind)))
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now));
        json!({"type": kind, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
    };
    obj["status"] = json!({
        "acceptedNames": obj["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
}

/// Validates a CRD the way apiextensions does for the parts we serve.
pub(crate) fn validate(obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(StatusCause::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(StatusCause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(StatusCause::required("spec.names.plural", ""));
    }
    if spec["names"]["kind"].as_str().unwrap_or_default().is_empty() {
        errs.push(StatusCause::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(StatusCause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(StatusCause::not_supported(
            "spec.scope",
            &json!(scope),
            &["Cluster".into(), "Namespaced".into()],
        ));
    }
    validate_versions(spec, &mut errs);
    if let Some(old) = old {
        if old["spec"]["group"] != spec["group"] {
            errs.push(StatusCause::invalid("spec.group", &spec["group"], "field is immutable"));
        }
        if old["spec"]["names"]["plural"] != spec["names"]["plural"] {
            errs.push(StatusCause::invalid(
                "spec.names.plural",
                &spec["names"]["plural"],
                "field is immutable",
            ));
        }
    }
    errs
}

/// `spec.versions`: exactly one storage version, and schemas whose rules and patterns compile.
fn validate_versions(spec: &Value, errs: &mut Vec<StatusCause>) {
    let versions = spec["versions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if versions.is_empty() {
        errs.push(StatusCause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v["storage"] == json!(true)).count() != 1 {
        errs.push(StatusCause::invalid(
            "spec.versions",
            &json!("array"),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let (schema, path) = (
            &v["schema"]["openAPIV3Schema"],
            format!("spec.versions[{i}].schema.openAPIV3Schema"),
        );
        errs.extend(cel::compile_errors(schema, &path));
        errs.extend(schema::pattern_errors(schema, &path));
    }
}
