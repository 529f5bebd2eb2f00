//! Events: one storage (core/v1 form), two views. events.k8s.io/v1 renames fields the way the
//! apiserver's conversion does: regarding↔involvedObject, note↔message,
//! reportingController↔reportingComponent, deprecatedSource/FirstTimestamp/LastTimestamp/Count.
use serde_json::{Map, Value, json};

use crate::embedded::apiserver::error::StatusCause;
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

/// The stricter validation of events created through events.k8s.io/v1 (storage form).
pub(crate) fn validate_v1(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let missing = |v: &Value| v.as_str().is_none_or(str::is_empty);
    if missing(&obj["eventTime"]) {
        errs.push(StatusCause::required("eventTime", ""));
    }
    for (field, name) in [
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("action", "action"),
        ("reason", "reason"),
    ] {
        if missing(&obj[field]) {
            errs.push(StatusCause::required(name, ""));
        }
    }
    let kind = obj["type"].as_str().unwrap_or_default();
    if kind != "Normal" && kind != "Warning" {
        errs.push(StatusCause::invalid(
            "type",
            &json!(kind),
            "has invalid value, must be one of [Normal Warning]",
        ));
    }
    if obj["message"].as_str().is_some_and(|m| m.len() > 1024) {
        errs.push(StatusCause::too_long("note", 1024));
    }
    if obj["series"].is_object() && obj["series"]["count"].as_i64().unwrap_or(0) < 2 {
        errs.push(StatusCause::invalid(
            "series.count",
            &obj["series"]["count"],
            "should be at least 2",
        ));
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
