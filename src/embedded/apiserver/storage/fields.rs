//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply: who owns which
//! field, conflicts between managers, structured merge, removal of fields an applier dropped.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::ResourceType;

/// How a list merges: as a whole, as a set of scalars, or as a map keyed by some fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Set of scalars.
    Set,
    /// Associative list keyed by these fields.
    Map(Vec<String>),
}

/// Built-in list semantics (the `+listType`/`patchMergeKey` markers of the Go types), by path
/// pattern (`[]` stands for "each element").
fn builtin_list(pattern: &str) -> ListKind {
    let map = |keys: &[&str]| ListKind::Map(keys.iter().map(|k| k.to_string()).collect());
    let tail = pattern.rsplit('.').next().unwrap_or(pattern);
    match pattern {
        "metadata.finalizers" => return ListKind::Set,
        "metadata.ownerReferences" => return map(&["uid"]),
        "metadata.managedFields" => return ListKind::Atomic,
        _ => {}
    }
    let in_pod = pattern.starts_with("spec.") || pattern.starts_with("status.");
    if !in_pod {
        return ListKind::Atomic;
    }
    match tail {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => {
            map(&["name"])
        }
        "volumeMounts" => map(&["mountPath"]),
        "ports" => map(&["containerPort", "protocol"]),
        "conditions" => map(&["type"]),
        "podIPs" | "hostIPs" => map(&["ip"]),
        _ => ListKind::Atomic,
    }
}

/// The schema node at a path pattern of a custom resource.
fn schema_at<'a>(schema: &'a Value, pattern: &str) -> Option<&'a Value> {
    let mut node = schema;
    for part in pattern.split('.').filter(|p| !p.is_empty()) {
        let (name, items) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        node = match node["properties"].get(name) {
            Some(n) => n,
            None if node["additionalProperties"].is_object() => &node["additionalProperties"],
            None => return None,
        };
        if items {
            node = &node["items"];
        }
    }
    Some(node)
}

/// List semantics of a resource at a path pattern.
pub(crate) fn list_kind(rt: &ResourceType, pattern: &str) -> ListKind {
    if pattern.starts_with("metadata.") {
        return builtin_list(pattern);
    }
    let Some(custom) = &rt.custom else {
        return match (rt.group.as_str(), rt.plural.as_str(), pattern) {
            ("", "pods", _) => builtin_list(pattern),
            // ServiceSpec.ports: `+listMapKey=port, +listMapKey=protocol` (patch merge key `port`).
            ("", "services", "spec.ports") => ListKind::Map(vec!["port".into(), "protocol".into()]),
            ("", "nodes", "status.conditions") => ListKind::Map(vec!["type".into()]),
            _ => ListKind::Atomic,
        };
    };
    let Some(node) = schema_at(&custom.schema, pattern) else {
        return ListKind::Atomic;
    };
    match node["x-kubernetes-list-type"].as_str() {
        Some("set") => ListKind::Set,
        Some("map") => ListKind::Map(
            node["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        ),
        _ => ListKind::Atomic,
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Elem {
    Field(String),
    /// An element of an associative list, by its key fields (canonical JSON).
    Key(String),
    /// An element of a set, by value (JSON).
    Value(String),
}

type Path = Vec<Elem>;
type FieldSet = BTreeSet<Path>;

fn key_of(item: &Value, keys: &[String]) -> String {
    let m: Map<String, Value> = keys.iter().map(|k| (k.clone(), item[k].clone())).collect();
    Value::Object(m).to_string()
}

/// Fields the server owns and never attributes to a manager.
fn skipped(path: &[Elem]) -> bool {
    match path {
        [Elem::Field(f)] => f == "apiVersion" || f == "kind",
        [Elem::Field(m), Elem::Field(f), ..] if m == "metadata" => {
            !["labels", "annotations", "finalizers", "ownerReferences"].contains(&f.as_str())
        }
        _ => false,
    }
}

fn leaves(rt: &ResourceType, value: &Value, pattern: &str, prefix: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(Elem::Field(k.clone()));
                if !skipped(prefix) {
                    let sub = if pattern.is_empty() {
                        k.clone()
                    } else {
                        format!("{pattern}.{k}")
                    };
                    leaves(rt, v, &sub, prefix, out);
                }
                prefix.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(rt, pattern) {
            ListKind::Atomic => {
                out.insert(prefix.clone());
            }
            ListKind::Set => {
                for item in items {
                    prefix.push(Elem::Value(item.to_string()));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            }
            ListKind::Map(keys) => {
                for item in items {
                    prefix.push(Elem::Key(key_of(item, &keys)));
                    out.insert(prefix.clone());
                    leaves(rt, item, &format!("{pattern}[]"), prefix, out);
                    prefix.pop();
                }
            }
        },
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn field_set(rt: &ResourceType, obj: &Value, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    leaves(rt, obj, "", &mut Vec::new(), &mut out);
    if skip_status {
        out.retain(|p| p.first() != Some(&Elem::Field("status".into())));
    }
    out
}

/// Whether list `item` is the element a `Key` or `Value` step names (a `Field` step names none).
/// Steps come from FieldsV1 the server wrote; one that does not parse names nothing.
fn names(step: &Elem, item: &Value) -> bool {
    match step {
        Elem::Field(_) => false,
        Elem::Key(k) => {
            serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|key| key.iter().all(|(kk, kv)| &item[kk] == kv))
        }
        Elem::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want),
    }
}

fn value_at<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        cur = match elem {
            Elem::Field(f) => cur.get(f)?,
            _ => cur.as_array()?.iter().find(|item| names(elem, item))?,
        };
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &[Elem]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for elem in parent_path {
        let next = match elem {
            Elem::Field(f) => cur.get_mut(f),
            _ => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| names(elem, item))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Elem::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        _ => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|item| !names(last, item));
            }
        }
    }
}

/// Structured merge of `applied` into `live`.
fn merge(rt: &ResourceType, live: &mut Value, applied: &Value, pattern: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, v) in a {
                let sub = if pattern.is_empty() {
                    k.clone()
                } else {
                    format!("{pattern}.{k}")
                };
                match l.get_mut(k) {
                    Some(existing) if !v.is_null() => merge(rt, existing, v, &sub),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(rt, pattern) {
            ListKind::Atomic => *l = a.clone(),
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for item in a {
                    let id = key_of(item, &keys);
                    match l.iter_mut().find(|x| key_of(x, &keys) == id) {
                        Some(existing) => merge(rt, existing, item, &format!("{pattern}[]")),
                        None => l.push(item.clone()),
                    }
                }
            }
        },
        (live, applied) => *live = applied.clone(),
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: String,
    fields: FieldSet,
}

fn parse_elem(k: &str) -> Option<Elem> {
    if let Some(f) = k.strip_prefix("f:") {
        Some(Elem::Field(f.to_string()))
    } else if let Some(key) = k.strip_prefix("k:") {
        let v: Value = serde_json::from_str(key).ok()?;
        Some(Elem::Key(v.to_string()))
    } else {
        k.strip_prefix("v:").map(|v| Elem::Value(v.to_string()))
    }
}

fn from_fields_v1(node: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(map) = node.as_object() else { return };
    for (k, child) in map {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        let Some(elem) = parse_elem(k) else { continue };
        prefix.push(elem);
        if child.as_object().is_some_and(|m| m.is_empty()) {
            out.insert(prefix.clone());
        } else {
            from_fields_v1(child, prefix, out);
        }
        prefix.pop();
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for elem in path {
            let k = match elem {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
                Elem::Value(v) => format!("v:{v}"),
            };
            node = node
                .as_object_mut()
                .map(|m| m.entry(k).or_insert_with(|| json!({})))
                .expect("fields nodes are objects");
        }
        if matches!(path.last(), Some(Elem::Key(_))) {
            node["."] = json!({});
        }
    }
    root
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or_default().to_string(),
                operation: e["operation"].as_str().unwrap_or_default().to_string(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                time: e["time"].as_str().unwrap_or_default().to_string(),
                fields,
            }
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Records an Update operation: the manager takes the fields that changed.
pub(crate) fn track_update(rt: &ResourceType, obj: &mut Value, old: Option<&Value>, manager: &str, sub: Option<&str>) {
    if manager.is_empty() {
        return;
    }
    let mut entries = old.map(read_entries).unwrap_or_default();
    let new_set = field_set(rt, obj, false);
    let changed: FieldSet = match old {
        None => new_set.clone(),
        Some(old) => {
            let old_set = field_set(rt, old, false);
            new_set
                .iter()
                .filter(|p| value_at(obj, p) != value_at(old, p) || !old_set.contains(*p))
                .chain(old_set.iter().filter(|p| !new_set.contains(*p)))
                .cloned()
                .collect()
        }
    };
    if changed.is_empty() {
        write_entries(obj, &entries);
        return;
    }
    for e in &mut entries {
        e.fields.retain(|p| !changed.contains(p));
    }
    let subresource = sub.unwrap_or_default().to_string();
    let now = ids::now();
    let mine = entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource);
    let gained: FieldSet = changed.into_iter().filter(|p| new_set.contains(p)).collect();
    match mine {
        Some(e) => {
            e.fields.extend(gained);
            e.time = now;
            e.api_version = rt.api_version();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: rt.api_version(),
            subresource,
            time: now,
            fields: gained,
        }),
    }
    // Fields that no longer exist are owned by nobody.
    for e in &mut entries {
        e.fields.retain(|p| new_set.contains(p));
    }
    write_entries(obj, &entries);
}

fn path_string(path: &[Elem]) -> String {
    let mut s = String::new();
    for elem in path {
        match elem {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let key: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Elem::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is created).
/// Returns the merged object with updated managedFields, or 409 listing the conflicts.
pub(crate) fn apply(
    rt: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    sub: Option<&str>,
) -> ApiResult<Value> {
    let skip_status = rt.status_subresource && sub.is_none();
    let mine = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: rt.api_version(),
        subresource: sub.unwrap_or_default().to_string(),
        time: ids::now(),
        fields: field_set(rt, applied, skip_status),
    };
    let Some(live) = live else {
        let mut obj = applied.clone();
        write_entries(&mut obj, &[mine]);
        return Ok(obj);
    };
    let mut entries = read_entries(live);
    let is_mine = |e: &Entry| e.manager == mine.manager && e.operation == "Apply" && e.subresource == mine.subresource;
    let conflicts = conflicts(&entries, &is_mine, &mine.fields, live, applied);
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    for c in &conflicts {
        for e in entries.iter_mut().filter(|e| e.manager == c.manager) {
            e.fields.remove(&c.path);
        }
    }
    let mut merged = live.clone();
    let mut body = applied.clone();
    if skip_status && let Some(m) = body.as_object_mut() {
        m.remove("status");
    }
    merge(rt, &mut merged, &body, "");
    let previous: FieldSet = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&mine.fields) {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !is_mine(e) && e.fields.iter().any(|q| q.starts_with(p)));
        if !owned_elsewhere {
            remove_at(&mut merged, p);
        }
    }
    entries.retain(|e| !is_mine(e));
    entries.push(mine);
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// A field another manager owns with a different value.
struct Conflict {
    /// The manager's name.
    manager: String,
    /// How conflict messages name it (`printManager`).
    printed: String,
    path: Path,
}

/// How kube-apiserver names a manager in a conflict (`printManager` over the manager's
/// identifier, which has no time): `"name"`, its subresource, and for an Update manager the
/// version it wrote with.
fn print_manager(e: &Entry) -> String {
    let mut out = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        out.push_str(&format!(" with subresource {:?}", e.subresource));
    }
    if e.operation == "Update" {
        out.push_str(&format!(" using {}", e.api_version));
    }
    out
}

fn conflicts(
    entries: &[Entry],
    is_mine: &dyn Fn(&Entry) -> bool,
    applied_set: &FieldSet,
    live: &Value,
    applied: &Value,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| !is_mine(e)) {
        for p in e.fields.intersection(applied_set) {
            // Owning a list item is not a value: only leaves conflict.
            let item = matches!(p.last(), Some(Elem::Key(_)));
            if !item && value_at(live, p) != value_at(applied, p) {
                out.push(Conflict {
                    manager: e.manager.clone(),
                    printed: print_manager(e),
                    path: p.clone(),
                });
            }
        }
    }
    out
}

/// 409 as `NewConflictError`: a cause per conflict; the message lists them by manager.
fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let n = conflicts.len();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.printed), "field": path_string(&c.path)}))
        .collect();
    let message = if n == 1 {
        let c = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.printed,
            path_string(&c.path)
        )
    } else {
        let mut managers: Vec<&Conflict> = conflicts.iter().collect();
        managers.sort_by(|a, b| a.printed.cmp(&b.printed));
        managers.dedup_by(|a, b| a.printed == b.printed);
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {}:", m.printed));
            for c in conflicts.iter().filter(|c| c.printed == m.printed) {
                lines.push(format!("- {}", path_string(&c.path)));
            }
        }
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::conflict("", "", "", "");
    e.message = message;
    e.details = Some(json!({ "causes": causes }));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::apiserver::resources::builtins;

    fn pods() -> ResourceType {
        builtins().into_iter().find(|t| t.plural == "pods").unwrap()
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let rt = pods();
        let first = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let live = apply(&rt, None, &first, "alice", false, None).unwrap();
        let fields = &live["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(
            fields["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"].is_object(),
            "{fields}"
        );

        let bob = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "y"}]}});
        let err = apply(&rt, Some(&live), &bob, "bob", false, None).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains("conflict with \"alice\""), "{}", err.message);
        let forced = apply(&rt, Some(&live), &bob, "bob", true, None).unwrap();
        assert_eq!(forced["spec"]["containers"][0]["image"], "y");

        // alice stops applying the label: it is removed because nobody else owns it.
        let alice2 = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}]}});
        let after = apply(&rt, Some(&forced), &alice2, "alice", false, None).unwrap();
        assert!(after["metadata"]["labels"].get("a").is_none(), "{after}");
        assert_eq!(after["spec"]["containers"][0]["image"], "y");
    }
}
