//! The garbage collector and namespace controller: deletes dependents whose owners are gone,
//! handles the `orphan` and `foregroundDeletion` finalizers, and empties terminating namespaces.
//! The serviceaccount controller's resync (a deleted `default` ServiceAccount comes back) and the
//! clusterrole-aggregation controller run with it.
//!
//! A pass runs after every write, so it reads the store in place: one scan that only looks at
//! objects with owners or being deleted, owners found by kind and name as the real collector
//! resolves them. Only what it changes is copied.
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::embedded::apiserver::resources::{ResourceType, StorageKey, View};
use crate::embedded::apiserver::storage::ops::{self, DeleteOpts, WriteOpts};
use crate::embedded::apiserver::storage::store::{Change, ChangeKind, State, Store, object_key};
use crate::embedded::apiserver::storage::{aggregation, serviceaccounts};

const MANAGER: &str = "generic-garbage-collector";
const NAMESPACE_CONTROLLER: &str = "namespace-controller";

/// Runs passes after writes that can concern it (and every second) until `shutdown` flips.
pub(crate) async fn run(store: Arc<Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut seen = 0;
    loop {
        let periodic = tokio::select! {
            _ = store.changed.notified() => false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
            _ = shutdown.changed() => return,
        };
        let mut st = store.lock();
        // A pass reads every object: skip it after writes that cannot concern it (most writes,
        // e.g. Events), unless changes were missed.
        let wanted = periodic
            || st
                .changes_since(seen)
                .is_none_or(|mut changes| changes.any(concerns_gc));
        if wanted {
            // Cascades (owner → dependent → its dependents) settle within a few passes.
            for _ in 0..8 {
                if !pass(&mut st) {
                    break;
                }
            }
            serviceaccounts::restore_defaults(&mut st);
            aggregation::reconcile(&mut st);
        }
        seen = st.rv();
    }
}

/// Whether a change can give the collector work: a deletion (its dependents may be orphans
/// now), an object being deleted (finalizers, namespaces) or an object with owners; or the
/// aggregation controller: a ClusterRole.
fn concerns_gc(c: &Change) -> bool {
    let meta = &c.object["metadata"];
    c.kind == ChangeKind::Deleted
        || (c.key.resource == "clusterroles" && c.key.group == "rbac.authorization.k8s.io")
        || !meta["deletionTimestamp"].is_null()
        || meta["ownerReferences"].as_array().is_some_and(|r| !r.is_empty())
}

/// A stored object, borrowed from the store during planning.
#[derive(Clone, Copy)]
struct Node<'a> {
    key: &'a StorageKey,
    obj: &'a Value,
}

impl Node<'_> {
    fn uid(&self) -> &str {
        self.obj["metadata"]["uid"].as_str().unwrap_or_default()
    }

    fn deleting(&self) -> bool {
        !self.obj["metadata"]["deletionTimestamp"].is_null()
    }

    fn finalizers(&self) -> Vec<&str> {
        self.obj["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn owner_refs(&self) -> &[Value] {
        self.obj["metadata"]["ownerReferences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn owned_by(&self, owner: &str) -> bool {
        self.owner_refs().iter().any(|r| r["uid"] == json!(owner))
    }

    /// A deletion of this object with a propagation policy.
    fn delete(&self, propagation: Option<&str>) -> Delete {
        let (ns, name) = object_key(self.obj);
        (self.key.clone(), ns, name, propagation.map(str::to_string))
    }

    /// This object without the finalizer `f`, to be written back.
    fn without_finalizer(&self, f: &str, manager: &'static str) -> Rewrite {
        let mut o = self.obj.clone();
        o["metadata"]["finalizers"] = json!(self.finalizers().into_iter().filter(|x| *x != f).collect::<Vec<_>>());
        (self.key.clone(), o, manager)
    }
}

/// A deletion to make: storage, namespace, name, propagation policy.
type Delete = (StorageKey, String, String, Option<String>);
/// An object to write back changed, and the field manager writing it.
type Rewrite = (StorageKey, Value, &'static str);

/// What one pass decided: objects to delete and objects to write back changed.
#[derive(Default)]
struct Plan {
    deletes: Vec<Delete>,
    rewrites: Vec<Rewrite>,
}

/// One collection pass. Returns whether it changed anything.
pub(crate) fn pass(st: &mut State) -> bool {
    let plan = plan(st);
    let changed = !plan.deletes.is_empty() || !plan.rewrites.is_empty();
    execute(st, plan);
    changed
}

fn plan(st: &State) -> Plan {
    let all = || st.objects().map(|(key, obj)| Node { key, obj });
    let mut plan = Plan::default();
    for n in all() {
        if !n.deleting() {
            if !n.owner_refs().is_empty() {
                dangling(st, n, &mut plan);
            }
            continue;
        }
        let fins = n.finalizers();
        if fins.contains(&"orphan") {
            orphan(n, all(), &mut plan);
        } else if fins.contains(&"foregroundDeletion") {
            foreground(n, all(), &mut plan);
        } else if n.key.group.is_empty() && n.key.resource == "namespaces" {
            namespace(n, all(), &mut plan);
        }
    }
    plan
}

/// Owner being deleted with the orphan finalizer: release its dependents, then itself.
fn orphan<'a>(n: Node<'a>, all: impl Iterator<Item = Node<'a>>, plan: &mut Plan) {
    let me = n.uid();
    for d in all.filter(|d| d.owned_by(me)) {
        let mut o = d.obj.clone();
        if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"] != json!(me));
        }
        plan.rewrites.push((d.key.clone(), o, MANAGER));
    }
    plan.rewrites.push(n.without_finalizer("orphan", MANAGER));
}

/// Foreground deletion: delete dependents first, finish when none blocks any more.
fn foreground<'a>(n: Node<'a>, all: impl Iterator<Item = Node<'a>>, plan: &mut Plan) {
    let me = n.uid();
    let mut blocking = false;
    for d in all.filter(|d| d.owned_by(me)) {
        if !d.deleting() {
            plan.deletes.push(d.delete(Some("Foreground")));
        }
        blocking |= d
            .owner_refs()
            .iter()
            .any(|r| r["uid"] == json!(me) && r["blockOwnerDeletion"] == json!(true));
    }
    if !blocking {
        plan.rewrites.push(n.without_finalizer("foregroundDeletion", MANAGER));
    }
}

/// A dependent whose owners are all gone is deleted; dangling references are dropped. An owner
/// is resolved by apiVersion, kind and name and must have the referenced uid; a kind the server
/// does not serve cannot be resolved and keeps its reference, as in the real collector.
fn dangling(st: &State, n: Node<'_>, plan: &mut Plan) {
    let refs = n.owner_refs();
    let ns = n.obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let alive: Vec<&Value> = refs
        .iter()
        .filter(|r| {
            let (api_version, kind) = (r["apiVersion"].as_str(), r["kind"].as_str());
            let Some(t) = api_version.zip(kind).and_then(|(a, k)| st.type_for_kind(a, k)) else {
                return true;
            };
            let owner_ns = if t.namespaced { ns } else { "" };
            let name = r["name"].as_str().unwrap_or_default();
            st.get(t.key(), owner_ns, name)
                .is_some_and(|o| o["metadata"]["uid"] == r["uid"])
        })
        .collect();
    if alive.is_empty() {
        plan.deletes.push(n.delete(None));
    } else if alive.len() < refs.len() {
        let mut o = n.obj.clone();
        o["metadata"]["ownerReferences"] = json!(alive);
        plan.rewrites.push((n.key.clone(), o, MANAGER));
    }
}

/// A terminating namespace: delete what it contains; drop the `kubernetes` finalizer once empty.
fn namespace<'a>(n: Node<'a>, all: impl Iterator<Item = Node<'a>>, plan: &mut Plan) {
    let name = n.obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut empty = true;
    for o in all.filter(|o| o.obj["metadata"]["namespace"].as_str() == Some(name)) {
        empty = false;
        if !o.deleting() {
            plan.deletes.push(o.delete(None));
        }
    }
    if empty && n.obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
        let mut o = n.obj.clone();
        o["spec"]["finalizers"] = json!([]);
        plan.rewrites.push((n.key.clone(), o, NAMESPACE_CONTROLLER));
    }
}

fn type_for_key(st: &State, key: &StorageKey) -> Option<ResourceType> {
    st.types()
        .iter()
        .find(|t| &t.storage == key && t.view == View::Plain)
        .cloned()
}

/// Applies a plan; a rewrite is skipped when its object changed since the pass read it.
fn execute(st: &mut State, plan: Plan) {
    for (key, obj, manager) in plan.rewrites {
        let Some(rt) = type_for_key(st, &key) else { continue };
        let (ns, name) = object_key(&obj);
        if let Some(current) = st.get(&key, &ns, &name).cloned()
            && current["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        {
            let opts = WriteOpts {
                manager: manager.into(),
                ..Default::default()
            };
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
