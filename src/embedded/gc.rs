//! The garbage collector and namespace controller: deletes dependents whose owners are gone,
//! handles the `orphan` and `foregroundDeletion` finalizers, and empties terminating namespaces.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::ops::{self, DeleteOpts, WriteOpts};
use super::resources::{ResourceType, StorageKey};
use super::store::{State, Store};

const MANAGER: &str = "generic-garbage-collector";

/// Runs passes after every write (and every second) until `shutdown` flips.
pub async fn run(store: Arc<Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = store.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let mut st = store.lock();
        // Cascades (owner → dependent → its dependents) settle within a few passes.
        for _ in 0..8 {
            if !pass(&mut st) {
                break;
            }
        }
    }
}

struct Node {
    key: StorageKey,
    obj: Value,
}

fn type_for_key(st: &State, key: &StorageKey) -> Option<ResourceType> {
    st.types()
        .iter()
        .find(|t| &t.storage == key && t.view == super::resources::View::Plain)
        .cloned()
}

fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A deletion to make: storage, namespace, name, propagation policy.
type Delete = (StorageKey, String, String, Option<String>);

/// What one pass decided: objects to delete and objects to write back changed.
#[derive(Default)]
struct Plan {
    deletes: Vec<Delete>,
    rewrites: Vec<(StorageKey, Value)>,
}

fn delete_of(n: &Node, propagation: Option<&str>) -> Delete {
    let (ns, name) = super::store::object_key(&n.obj);
    (n.key.clone(), ns, name, propagation.map(str::to_string))
}

fn owned_by(n: &Node, owner: &str) -> bool {
    n.obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == json!(owner))
}

/// One collection pass. Returns whether it changed anything.
pub fn pass(st: &mut State) -> bool {
    let mut nodes = Vec::new();
    for key in st.keys() {
        for obj in st.list(&key, None) {
            nodes.push(Node { key: key.clone(), obj });
        }
    }
    let by_uid: HashMap<&str, &Node> = nodes.iter().map(|n| (uid(&n.obj), n)).collect();
    let mut plan = Plan::default();
    for n in &nodes {
        let fins = finalizers(&n.obj);
        let deleting = !n.obj["metadata"]["deletionTimestamp"].is_null();
        if deleting && fins.iter().any(|f| f == "orphan") {
            orphan(n, &fins, &nodes, &mut plan);
        } else if deleting && fins.iter().any(|f| f == "foregroundDeletion") {
            foreground(n, &fins, &nodes, &mut plan);
        } else if !deleting {
            dangling(n, &by_uid, &mut plan);
        }
    }
    let namespace_work = namespaces(st, &nodes, &mut plan.deletes);
    let changed = !plan.deletes.is_empty() || !plan.rewrites.is_empty() || namespace_work;
    execute(st, plan);
    changed
}

/// Owner being deleted with the orphan finalizer: release its dependents, then itself.
fn orphan(n: &Node, fins: &[String], nodes: &[Node], plan: &mut Plan) {
    let me = uid(&n.obj);
    for d in nodes.iter().filter(|d| owned_by(d, me)) {
        let mut o = d.obj.clone();
        if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != json!(me));
        }
        plan.rewrites.push((d.key.clone(), o));
    }
    let mut o = n.obj.clone();
    o["metadata"]["finalizers"] = json!(fins.iter().filter(|f| *f != "orphan").collect::<Vec<_>>());
    plan.rewrites.push((n.key.clone(), o));
}

/// Foreground deletion: delete dependents first, finish when none blocks any more.
fn foreground(n: &Node, fins: &[String], nodes: &[Node], plan: &mut Plan) {
    let me = uid(&n.obj);
    let deps: Vec<&Node> = nodes.iter().filter(|d| owned_by(d, me)).collect();
    for d in deps.iter().filter(|d| d.obj["metadata"]["deletionTimestamp"].is_null()) {
        plan.deletes.push(delete_of(d, Some("Foreground")));
    }
    let blocking = deps.iter().any(|d| {
        d.obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["uid"] == json!(me) && r["blockOwnerDeletion"] == json!(true))
    });
    if !blocking {
        let mut o = n.obj.clone();
        o["metadata"]["finalizers"] = json!(fins.iter().filter(|f| *f != "foregroundDeletion").collect::<Vec<_>>());
        plan.rewrites.push((n.key.clone(), o));
    }
}

/// A dependent whose owners are all gone is deleted; dangling references are dropped.
fn dangling(n: &Node, by_uid: &HashMap<&str, &Node>, plan: &mut Plan) {
    let meta = &n.obj["metadata"];
    let refs: Vec<Value> = meta["ownerReferences"].as_array().cloned().unwrap_or_default();
    if refs.is_empty() {
        return;
    }
    let ns = meta["namespace"].as_str().unwrap_or_default();
    let alive: Vec<&Value> = refs
        .iter()
        .filter(|r| {
            by_uid.get(r["uid"].as_str().unwrap_or_default()).is_some_and(|o| {
                let om = &o.obj["metadata"];
                om["name"] == r["name"]
                    && (om["namespace"].as_str().unwrap_or_default() == ns || om["namespace"].is_null())
            })
        })
        .collect();
    if alive.is_empty() {
        plan.deletes.push(delete_of(n, None));
    } else if alive.len() < refs.len() {
        let mut o = n.obj.clone();
        o["metadata"]["ownerReferences"] = json!(alive);
        plan.rewrites.push((n.key.clone(), o));
    }
}

/// Applies a plan; a rewrite is skipped when its object changed since the pass read it.
fn execute(st: &mut State, plan: Plan) {
    let opts = WriteOpts {
        manager: MANAGER.into(),
        ..Default::default()
    };
    for (key, obj) in plan.rewrites {
        let Some(rt) = type_for_key(st, &key) else { continue };
        let (ns, name) = super::store::object_key(&obj);
        if let Some(current) = st.get(&key, &ns, &name).cloned()
            && current["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        {
            let _ = ops::replace(st, &rt, current, obj, None, &opts);
        }
    }
    for (key, ns, name, propagation) in plan.deletes {
        let Some(rt) = type_for_key(st, &key) else { continue };
        let opts = DeleteOpts {
            propagation,
            ..Default::default()
        };
        let _ = ops::delete(st, &rt, &ns, &name, &opts);
    }
}

/// Terminating namespaces: delete what they contain; drop the `kubernetes` finalizer once empty.
fn namespaces(st: &mut State, nodes: &[Node], deletes: &mut Vec<Delete>) -> bool {
    let ns_key = StorageKey {
        group: String::new(),
        resource: "namespaces".into(),
    };
    let mut changed = false;
    for n in nodes
        .iter()
        .filter(|n| n.key == ns_key && !n.obj["metadata"]["deletionTimestamp"].is_null())
    {
        let name = n.obj["metadata"]["name"].as_str().unwrap_or_default();
        let contents: Vec<&Node> = nodes
            .iter()
            .filter(|o| o.obj["metadata"]["namespace"].as_str() == Some(name))
            .collect();
        for o in contents
            .iter()
            .filter(|o| o.obj["metadata"]["deletionTimestamp"].is_null())
        {
            deletes.push(delete_of(o, None));
        }
        if contents.is_empty() && n.obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            let Some(rt) = type_for_key(st, &ns_key) else { continue };
            let mut o = n.obj.clone();
            o["spec"]["finalizers"] = json!([]);
            let opts = WriteOpts {
                manager: "namespace-controller".into(),
                ..Default::default()
            };
            let _ = ops::replace(st, &rt, n.obj.clone(), o, None, &opts);
            changed = true;
        }
    }
    changed
}
