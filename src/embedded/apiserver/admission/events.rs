//! Events: one storage (core/v1 form), two views. events.k8s.io/v1 renames fields the way the
//! apiserver's conversion does: regarding↔involvedObject, note↔message,
//! reportingController↔reportingComponent, deprecatedSource/FirstTimestamp/LastTimestamp/Count.
use serde_json::{Map, Value, json};

use crate::embedded::apiserver::admission::names::qualified_name;
use crate::embedded::apiserver::error::{StatusCause, go_struct};
use crate::embedded::apiserver::resources::{ResourceType, View};

/// (events.k8s.io/v1 name, core/v1 name) of the renamed fields.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, from_new: bool) -> Value {
    let Some(map) = obj.as_object() else { return obj.clone() };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = RENAMES.iter().find_map(|(new, old)| {
            if from_new && k == new {
                Some(*old)
            } else if !from_new && k == old {
                Some(*new)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    Value::Object(out)
}

/// Converts a request body of a served version into the storage form.
pub(crate) fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    match rt.view {
        View::Plain => obj,
        View::EventsV1 => {
            let mut out = rename(&obj, true);
            out["apiVersion"] = json!("v1");
            out
        }
    }
}

/// Renders a stored object through a served version.
pub(crate) fn to_view(rt: &ResourceType, obj: &Value) -> Value {
    let mut out = match rt.view {
        View::Plain => obj.clone(),
        View::EventsV1 => rename(obj, false),
    };
    if out.is_object() {
        out["apiVersion"] = json!(rt.api_version());
        out["kind"] = json!(rt.kind);
    }
    out
}

/// The field name a selector on the served version means in storage.
pub(crate) fn storage_field(rt: &ResourceType, field: &str) -> String {
    if rt.view != View::EventsV1 {
        return field.to_string();
    }
    for (new, old) in RENAMES {
        if field == *new {
            return old.to_string();
        }
        if let Some(rest) = field.strip_prefix(&format!("{new}.")) {
            return format!("{old}.{rest}");
        }
    }
    field.to_string()
}

/// Fields core/v1 Events may be selected by.
pub(crate) fn selectable(field: &str) -> bool {
    matches!(
        field,
        "involvedObject.kind"
            | "involvedObject.namespace"
            | "involvedObject.name"
            | "involvedObject.uid"
            | "involvedObject.apiVersion"
            | "involvedObject.resourceVersion"
            | "involvedObject.fieldPath"
            | "reason"
            | "reportingComponent"
            | "source"
            | "type"
    )
}

fn text<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj[field].as_str().unwrap_or_default()
}

/// `ValidateEventCreate`/`ValidateEventUpdate` (metadata aside) on the storage form: the lenient
/// rules of core/v1, and for events.k8s.io/v1 the new-style ones. Field names are the core/v1
/// ones either way (kube-apiserver validates its internal type), but for `reportingController`.
pub(crate) fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let v1 = rt.view == View::EventsV1;
    let mut errs = legacy(obj, v1);
    if !v1 {
        return errs;
    }
    match old {
        None => {
            errs.extend(series(obj));
            if text(obj, "eventTime").is_empty() {
                errs.push(StatusCause::required("eventTime", ""));
            }
            let kind = text(obj, "type");
            if kind != "Normal" && kind != "Warning" {
                errs.push(StatusCause::invalid(
                    "type",
                    &json!(""),
                    &format!("has invalid value: {kind}"),
                ));
            }
            for field in ["firstTimestamp", "lastTimestamp"] {
                if !text(obj, field).is_empty() {
                    errs.push(StatusCause::invalid(field, &json!(""), "needs to be unset"));
                }
            }
            if obj["count"].as_i64().unwrap_or(0) != 0 {
                errs.push(StatusCause::invalid("count", &json!(""), "needs to be unset"));
            }
            if !text(&obj["source"], "component").is_empty() || !text(&obj["source"], "host").is_empty() {
                errs.push(StatusCause::invalid("source", &json!(""), "needs to be unset"));
            }
        }
        Some(old) => {
            if obj["series"] != old["series"] {
                errs.extend(series(obj));
            }
            errs.extend(immutable(obj, old));
        }
    }
    errs
}

/// `legacyValidateEvent`: namespaces agree; an Event with an eventTime names its reporter,
/// action and reason within their limits.
fn legacy(obj: &Value, v1: bool) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let ns = text(&obj["metadata"], "namespace");
    let involved = text(&obj["involvedObject"], "namespace");
    let mismatch = |value: &str| {
        StatusCause::invalid(
            "involvedObject.namespace",
            &json!(value),
            "does not match event.namespace",
        )
    };
    if text(obj, "eventTime").is_empty() {
        if involved.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch(""));
            }
        } else if ns != involved {
            errs.push(mismatch(involved));
        }
        return errs;
    }
    if involved.is_empty() && ns != "default" && ns != "kube-system" {
        errs.push(mismatch(""));
    }
    let reporter = if v1 {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let controller = text(obj, "reportingComponent");
    if controller.is_empty() {
        errs.push(StatusCause::required(reporter, ""));
    }
    for msg in qualified_name(controller) {
        errs.push(StatusCause::invalid(reporter, &json!(controller), &msg));
    }
    for field in ["reportingInstance", "action", "reason"] {
        let value = text(obj, field);
        if value.is_empty() {
            errs.push(StatusCause::required(field, ""));
        }
        if value.len() > 128 {
            errs.push(StatusCause::invalid(
                field,
                &json!(""),
                "can have at most 128 characters",
            ));
        }
    }
    if text(obj, "message").len() > 1024 {
        errs.push(StatusCause::invalid(
            "message",
            &json!(""),
            "can have at most 1024 characters",
        ));
    }
    errs
}

/// `validateV1EventSeries`.
fn series(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let series = &obj["series"];
    if series.is_object() {
        if series["count"].as_i64().unwrap_or(0) < 2 {
            errs.push(StatusCause::invalid("series.count", &json!(""), "should be at least 2"));
        }
        if text(series, "lastObservedTime").is_empty() {
            errs.push(StatusCause::required("series.lastObservedTime", ""));
        }
    }
    errs
}

/// An object reference as Go marshals the internal type.
fn reference_json(r: &Value) -> String {
    let fields = [
        ("Kind", "kind"),
        ("Namespace", "namespace"),
        ("Name", "name"),
        ("UID", "uid"),
        ("APIVersion", "apiVersion"),
        ("ResourceVersion", "resourceVersion"),
        ("FieldPath", "fieldPath"),
    ];
    let values: Vec<Value> = fields.iter().map(|(_, js)| json!(text(r, js))).collect();
    let pairs: Vec<(&str, &Value)> = fields.iter().zip(&values).map(|((go, _), v)| (*go, v)).collect();
    go_struct(&pairs)
}

/// The fields an events.k8s.io/v1 update may not change (`ValidateEventUpdate`).
fn immutable(obj: &Value, old: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let changed = |f: &str| obj[f] != old[f];
    let immutable = |f: &str, v: &Value| StatusCause::invalid(f, v, "field is immutable");
    if changed("involvedObject") {
        errs.push(StatusCause::invalid_rendered(
            "involvedObject",
            &reference_json(&obj["involvedObject"]),
            "field is immutable",
        ));
    }
    for f in ["reason", "message"] {
        if changed(f) {
            errs.push(immutable(f, &json!(text(obj, f))));
        }
    }
    if changed("source") {
        let source = go_struct(&[
            ("Component", &json!(text(&obj["source"], "component"))),
            ("Host", &json!(text(&obj["source"], "host"))),
        ]);
        errs.push(StatusCause::invalid_rendered("source", &source, "field is immutable"));
    }
    for f in ["firstTimestamp", "lastTimestamp"] {
        if changed(f) {
            errs.push(immutable(f, &obj[f]));
        }
    }
    if changed("count") {
        errs.push(immutable("count", &json!(obj["count"].as_i64().unwrap_or(0))));
    }
    if changed("type") {
        errs.push(immutable("type", &json!(text(obj, "type"))));
    }
    if changed("eventTime") {
        errs.push(immutable("eventTime", &obj["eventTime"]));
    }
    if changed("action") {
        errs.push(immutable("action", &json!(text(obj, "action"))));
    }
    if changed("related") {
        errs.push(immutable("related", &obj["related"]));
    }
    for (stored, name) in [
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        if changed(stored) {
            errs.push(immutable(name, &json!(text(obj, stored))));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::apiserver::resources::builtins;

    #[test]
    fn both_views_share_one_form() {
        let types = builtins();
        let new = types.iter().find(|t| t.group == "events.k8s.io").unwrap();
        let core = types
            .iter()
            .find(|t| t.group.is_empty() && t.plural == "events")
            .unwrap();
        let body = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "p"},
            "note": "hi", "reportingController": "c", "series": {"count": 2}});
        let stored = to_storage(new, body);
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "hi");
        let v1 = to_view(core, &stored);
        assert_eq!(v1["reportingComponent"], "c");
        assert_eq!(v1["apiVersion"], "v1");
        assert_eq!(to_view(new, &stored)["note"], "hi");
        assert_eq!(storage_field(new, "regarding.name"), "involvedObject.name");
    }
}
