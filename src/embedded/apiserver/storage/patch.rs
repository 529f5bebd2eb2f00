//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch
//! for built-in types (lists merge by their patch merge key, `$patch`/`$retainKeys`/
//! `$deleteFromPrimitiveList`/`$setElementOrder` directives).
use serde_json::{Map, Value, json};

use crate::embedded::apiserver::decode;
use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::resources::ResourceType;
use crate::embedded::apiserver::storage::fields::{ListKind, list_kind};

/// The patch types the server understands, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Maps a Content-Type to a patch type; 415 for anything else.
    pub(crate) fn from_content_type(ct: &str, rt: &ResourceType) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        let t = match base {
            "application/merge-patch+json" => Self::Merge,
            "application/json-patch+json" => Self::Json,
            "application/strategic-merge-patch+json" if rt.custom.is_none() => Self::Strategic,
            "application/apply-patch+yaml" => Self::Apply,
            // Built-in types' routes refuse other types before their handler (go-restful).
            _ if rt.custom.is_none() => {
                return Err(ApiError::unsupported_media_type("415: Unsupported Media Type").with_details(json!({})));
            }
            _ => {
                let mut accepted = vec!["application/json-patch+json", "application/merge-patch+json"];
                if rt.custom.is_none() {
                    accepted.push("application/strategic-merge-patch+json");
                }
                accepted.push("application/apply-patch+yaml");
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    accepted.join(", ")
                )));
            }
        };
        Ok(t)
    }
}

/// Applies a merge, JSON or strategic merge patch (decoded, see [`decode`]) to an object.
pub(crate) fn apply_patch(kind: PatchType, rt: &ResourceType, current: &Value, patch: &Value) -> ApiResult<Value> {
    let mut doc = current.clone();
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal non-object into Go value of type map[string]interface {}",
                ));
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchType::Json => json_patch_ops(&mut doc, patch)?,
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the body of a strategic merge patch must be a JSON object",
                ));
            }
            doc = strategic(rt, &doc, patch, "");
        }
        PatchType::Apply => return Err(ApiError::internal("apply patches are handled by server-side apply")),
    }
    if !doc.is_object() {
        return Err(ApiError::bad_request("the patched object is not a JSON object"));
    }
    decode::check_depth(&doc)?;
    Ok(doc)
}

/// As kube-apiserver: at most 10 000 operations (413), and `copy` operations may add at most
/// 3 MiB in all (`JSONPatchMaxCopyBytes`; 422), since copying a subtree into itself doubles it.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

fn json_patch_ops(doc: &mut Value, patch: &Value) -> ApiResult<()> {
    use serde::Deserialize;
    let ops = json_patch::Patch::deserialize(patch)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(decode::entity_too_large(&format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let invalid = |message: String| {
        let mut err = ApiError::bad_request(message);
        err.code = 422;
        err.reason = "Invalid";
        err
    };
    let mut copied = 0;
    for op in ops.iter() {
        if let json_patch::PatchOperation::Copy(copy) = op {
            let from = doc.pointer(copy.from.as_str()).unwrap_or(&Value::Null);
            copied += json_size_upto(from, MAX_JSON_PATCH_COPY_BYTES + 1);
            if copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(invalid(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                )));
            }
        }
        // One at a time without an undo log: on an error the caller drops `doc`.
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

/// Length of `value` as JSON, counted up to `cap` (so a huge subtree costs no more than `cap`).
fn json_size_upto(value: &Value, cap: usize) -> usize {
    struct Counter {
        bytes: usize,
        cap: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len();
            if self.bytes > self.cap {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { bytes: 0, cap };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.bytes
}

fn sub_pattern(pattern: &str, key: &str) -> String {
    if pattern.is_empty() {
        key.to_string()
    } else {
        format!("{pattern}.{key}")
    }
}

/// Strategic merge of a patch map into an original map.
fn strategic(rt: &ResourceType, original: &Value, patch: &Value, pattern: &str) -> Value {
    let Some(p) = patch.as_object() else {
        return patch.clone();
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut out = p.clone();
        out.remove("$patch");
        return Value::Object(out);
    }
    let mut out: Map<String, Value> = original.as_object().cloned().unwrap_or_default();
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (out.get_mut(field).and_then(Value::as_array_mut), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        let sub = sub_pattern(pattern, k);
        if v.is_null() {
            out.remove(k);
            continue;
        }
        if v.as_object().and_then(|m| m.get("$patch")).and_then(Value::as_str) == Some("delete") {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (Some(orig @ Value::Object(_)), Value::Object(_)) => strategic(rt, orig, v, &sub),
            (Some(Value::Array(orig)), Value::Array(items)) => merge_list(rt, orig, items, &sub),
            (None, Value::Object(_)) => strategic(rt, &Value::Object(Map::new()), v, &sub),
            (None, Value::Array(items)) => merge_list(rt, &[], items, &sub),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = out.get_mut(&field) {
            reorder(rt, list, &order, &sub_pattern(pattern, &field));
        }
    }
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        out.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)));
    }
    Value::Object(out)
}

fn merge_list(rt: &ResourceType, original: &[Value], patch: &[Value], pattern: &str) -> Value {
    match list_kind(rt, pattern) {
        ListKind::Atomic => Value::Array(patch.iter().filter(|x| !is_directive(x)).cloned().collect()),
        ListKind::Set => {
            let mut out = original.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Value::Array(out)
        }
        ListKind::Map(keys) => {
            let key = keys.first().cloned().unwrap_or_default();
            if patch
                .iter()
                .any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Value::Array(patch.iter().filter(|x| !is_directive(x)).cloned().collect());
            }
            let mut out = original.to_vec();
            for item in patch {
                let id = &item[&key];
                let pos = out.iter().position(|o| &o[&key] == id);
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.retain(|o| &o[&key] != id);
                    continue;
                }
                match pos {
                    Some(i) => out[i] = strategic(rt, &out[i], item, &format!("{pattern}[]")),
                    None => out.push(strategic(rt, &Value::Object(Map::new()), item, &format!("{pattern}[]"))),
                }
            }
            Value::Array(out)
        }
    }
}

fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("$patch"))
}

fn reorder(rt: &ResourceType, list: &mut [Value], order: &[Value], pattern: &str) {
    let key = match list_kind(rt, pattern) {
        ListKind::Map(keys) => keys.first().cloned(),
        _ => None,
    };
    let rank = |item: &Value| {
        order
            .iter()
            .position(|o| match &key {
                Some(k) => o[k] == item[k],
                None => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|x| rank(x));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::apiserver::resources::builtins;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let rt = builtins().into_iter().find(|t| t.plural == "pods").unwrap();
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [
            {"name": "b", "image": "z"}, {"name": "a", "env": [{"name": "J", "value": "2"}]}]}});
        let out = apply_patch(PatchType::Strategic, &rt, &pod, &patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
        assert_eq!(out["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let del = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        let out = apply_patch(PatchType::Strategic, &rt, &out, &del).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    }
}
