//! CustomResourceDefinitions: defaulting, validation and the status the apiextensions
//! controllers would write (names accepted, established), done synchronously on write.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::celcheck;
use crate::embedded::apiserver::admission::names::dns1035_label;
use crate::embedded::apiserver::admission::schema;
use crate::embedded::apiserver::error::{StatusCause, go_struct};
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
    validate_names(&spec["names"], &mut errs);
    validate_versions(spec, &mut errs);
    validate_stored_versions(obj, &mut errs);
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

/// `ValidateCustomResourceDefinitionNames` of `spec.names`.
fn validate_names(names: &Value, errs: &mut Vec<StatusCause>) {
    let text = |f: &str| names[f].as_str().unwrap_or_default();
    for field in ["plural", "singular"] {
        let v = text(field);
        let msgs = dns1035_label(v);
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(StatusCause::invalid(
                &format!("spec.names.{field}"),
                &json!(v),
                &msgs.join(","),
            ));
        }
    }
    for field in ["kind", "listKind"] {
        let v = text(field);
        let msgs = dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(StatusCause::invalid(
                &format!("spec.names.{field}"),
                &json!(v),
                &format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
            ));
        }
    }
    for field in ["shortNames", "categories"] {
        for (i, v) in names[field].as_array().into_iter().flatten().enumerate() {
            let v = v.as_str().unwrap_or_default();
            let msgs = dns1035_label(v);
            if !msgs.is_empty() {
                errs.push(StatusCause::invalid(
                    &format!("spec.names.{field}[{i}]"),
                    &json!(v),
                    &msgs.join(","),
                ));
            }
        }
    }
    if !text("kind").is_empty() && text("kind") == text("listKind") {
        errs.push(StatusCause::invalid(
            "spec.names.listKind",
            &names["listKind"],
            "kind and listKind may not be the same",
        ));
    }
}

/// `spec.versions`: exactly one storage version, and schemas whose rules and patterns compile.
fn validate_versions(spec: &Value, errs: &mut Vec<StatusCause>) {
    let versions = spec["versions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let storage = versions.iter().filter(|v| v["storage"] == json!(true)).count();
    if versions.is_empty() {
        errs.push(StatusCause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else if storage != 1 {
        errs.push(StatusCause::invalid_rendered(
            "spec.versions",
            &internal_versions(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    for (schema, path) in schemas(versions) {
        errs.extend(rule_errors(schema, &path));
        errs.extend(schema::pattern_errors(schema, &path));
    }
}

/// Whether the versions share one schema: kube-apiserver then validates it (and names it in
/// errors) as `spec.validation`, its internal form.
fn hoisted(versions: &[Value], field: &str) -> bool {
    versions.iter().all(|v| v[field] == versions[0][field])
}

/// The schemas to validate, with the paths errors name them by.
fn schemas(versions: &[Value]) -> Vec<(&Value, String)> {
    if versions.is_empty() {
        return Vec::new();
    }
    if hoisted(versions, "schema") {
        return vec![(
            &versions[0]["schema"]["openAPIV3Schema"],
            "spec.validation.openAPIV3Schema".into(),
        )];
    }
    versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                &v["schema"]["openAPIV3Schema"],
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
            )
        })
        .collect()
}

/// The versions as Go marshals the internal type (what kube-apiserver prints as the bad value);
/// the per-version parts all versions share are moved to the spec, so they print as null.
fn internal_versions(versions: &[Value]) -> String {
    let shared = |field: &str| hoisted(versions, field);
    let items: Vec<String> = versions
        .iter()
        .map(|v| {
            let per_version = |field: &str| if shared(field) { Value::Null } else { v[field].clone() };
            let (schema, sub, columns, selectable) = (
                per_version("schema"),
                per_version("subresources"),
                per_version("additionalPrinterColumns"),
                per_version("selectableFields"),
            );
            go_struct(&[
                ("Name", &json!(v["name"].as_str().unwrap_or_default())),
                ("Served", &json!(v["served"] == json!(true))),
                ("Storage", &json!(v["storage"] == json!(true))),
                ("Deprecated", &json!(v["deprecated"] == json!(true))),
                ("DeprecationWarning", &v["deprecationWarning"]),
                ("Schema", &schema),
                ("Subresources", &sub),
                ("AdditionalPrinterColumns", &columns),
                ("SelectableFields", &selectable),
            ])
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A validation rule as Go marshals the internal type.
fn rule_json(rule: &Value) -> String {
    let text = |f: &str| json!(rule[f].as_str().unwrap_or_default());
    go_struct(&[
        ("Rule", &text("rule")),
        ("Message", &text("message")),
        ("MessageExpression", &text("messageExpression")),
        ("Reason", &rule["reason"]),
        ("FieldPath", &text("fieldPath")),
        ("OptionalOldSelf", &rule["optionalOldSelf"]),
    ])
}

/// An error for each rule that does not parse or type-check against its schema node.
fn rule_errors(schema: &Value, path: &str) -> Vec<StatusCause> {
    let mut out = Vec::new();
    schema::visit(schema, path, &mut |node, at| {
        for (i, rule) in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(text) = rule["rule"].as_str().filter(|t| !t.trim().is_empty()) else {
                continue;
            };
            let detail = match cel::Program::compile(text) {
                Err(e) => Some(format!("compilation failed: {e}")),
                Ok(program) => celcheck::check_rule(&program, text, node, at == path),
            };
            if let Some(detail) = detail {
                let field = format!("{at}.x-kubernetes-validations[{i}].rule");
                out.push(StatusCause::invalid_rendered(&field, &rule_json(rule), &detail));
            }
        }
    });
    out
}

/// `ValidateCustomResourceDefinitionStoredVersions`.
fn validate_stored_versions(obj: &Value, errs: &mut Vec<StatusCause>) {
    let stored = obj["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    if stored.is_empty() {
        errs.push(StatusCause::invalid(
            "status.storedVersions",
            &Value::Null,
            "must have at least one stored version",
        ));
        return;
    }
    for v in obj["spec"]["versions"].as_array().into_iter().flatten() {
        if v["storage"] == json!(true) && !stored.contains(&v["name"]) {
            errs.push(StatusCause::invalid(
                "status.storedVersions",
                &json!(stored),
                &format!(
                    "must have the storage version {}",
                    v["name"].as_str().unwrap_or_default()
                ),
            ));
        }
    }
}
