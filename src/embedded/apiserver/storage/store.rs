//! The object store: every object as JSON, one global resourceVersion counter, a bounded history
//! of changes for watch replay and consistent `continue` pages, and the watcher fan-out.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::resources::{self, ResourceType, StorageKey};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed.
    Deleted,
}

/// One entry of the change history, as watchers see it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Storage of the object.
    pub key: StorageKey,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for deletions: the last state, carrying `rv`).
    pub object: Arc<Value>,
    /// The object before the change, for updates and deletions.
    pub old: Option<Arc<Value>>,
}

/// Replayed changes and the receiver of later ones.
pub(crate) type Subscription = (Vec<Arc<Change>>, mpsc::UnboundedReceiver<Arc<Change>>);

/// `(namespace, name)`, ordered like etcd keys.
pub(crate) type ObjectKey = (String, String);

struct Watcher {
    key: StorageKey,
    tx: mpsc::UnboundedSender<Arc<Change>>,
}

/// Everything behind the store lock.
pub(crate) struct State {
    rv: u64,
    objects: HashMap<StorageKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
    /// Oldest resourceVersion a watch or continue token may start from.
    floor: u64,
    watchers: Vec<Watcher>,
    types: Vec<ResourceType>,
    /// PEM of the CA clients trust for this server (published in every namespace).
    root_ca: String,
}

/// The shared store.
pub(crate) struct Store {
    state: Mutex<State>,
    /// Woken after every write so background controllers (GC) can react.
    pub changed: Notify,
}

impl Store {
    /// An empty store keeping `history_cap` changes for replay.
    pub(crate) fn new(history_cap: usize) -> Self {
        let state = State {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            floor: 0,
            watchers: Vec::new(),
            types: resources::builtins(),
            root_ca: String::new(),
        };
        Self {
            state: Mutex::new(state),
            changed: Notify::new(),
        }
    }

    /// Locks the state. A poisoned lock (a panic while holding it) is recovered: every write
    /// leaves the state consistent before it can panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The current global resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// The CA certificate (PEM) that signs the serving certificate, as `kube-root-ca.crt` publishes it.
    pub(crate) fn root_ca(&self) -> &str {
        &self.root_ca
    }

    /// Sets the CA certificate [`State::root_ca`] returns.
    pub(crate) fn set_root_ca(&mut self, pem: &str) {
        self.root_ca = pem.to_string();
    }

    /// All served resource types.
    pub(crate) fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The served type for a group, version and plural.
    pub(crate) fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The served type for an apiVersion and kind (owner references, involvedObject).
    pub(crate) fn type_for_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    /// Re-derives the custom resource types from the stored CRDs.
    pub(crate) fn refresh_custom_types(&mut self) {
        let crd_key = StorageKey {
            group: "apiextensions.k8s.io".into(),
            resource: "customresourcedefinitions".into(),
        };
        let mut types = resources::builtins();
        if let Some(crds) = self.objects.get(&crd_key) {
            for crd in crds.values() {
                if crd["metadata"]["deletionTimestamp"].is_null() {
                    types.extend(resources::from_crd(crd));
                }
            }
        }
        // Watches of a resource no longer served end (after the changes already queued for them), as
        // kube-apiserver ends them when a CRD's storage is torn down; a client's next list gets 404.
        let served: Vec<StorageKey> = types.iter().map(|t| t.key().clone()).collect();
        let gone: Vec<StorageKey> = self
            .types
            .iter()
            .map(|t| t.key().clone())
            .filter(|k| !served.contains(k))
            .collect();
        self.watchers.retain(|w| !gone.contains(&w.key));
        self.types = types;
    }

    /// One object.
    pub(crate) fn get(&self, key: &StorageKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(key)?.get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a storage, optionally in one namespace, in key order.
    pub(crate) fn list(&self, key: &StorageKey, ns: Option<&str>) -> Vec<Value> {
        self.list_matching(key, ns, |_| true)
    }

    /// The objects of a storage (in namespace `ns`, if given) that `keep` accepts; only those are copied,
    /// so a selective list costs what it returns, not what is stored.
    pub(crate) fn list_matching(
        &self,
        key: &StorageKey,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let Some(map) = self.objects.get(key) else {
            return Vec::new();
        };
        map.iter()
            .filter(|((n, _), v)| ns.is_none_or(|want| want == n) && keep(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every stored object with its storage key, borrowed (a GC pass reads them all per write).
    pub(crate) fn objects(&self) -> impl Iterator<Item = (&StorageKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(key, map)| map.values().map(move |obj| (key, obj)))
    }

    /// The objects of a storage as they were at `rv`, rebuilt by undoing later history.
    pub(crate) fn list_at(&self, key: &StorageKey, ns: Option<&str>, rv: u64) -> ApiResult<Vec<Value>> {
        if rv < self.floor {
            return Err(expired_continue());
        }
        let mut map = self.objects.get(key).cloned().unwrap_or_default();
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            if &change.key != key {
                continue;
            }
            let obj_key = object_key(&change.object);
            match (&change.kind, &change.old) {
                (ChangeKind::Added, _) => {
                    map.remove(&obj_key);
                }
                (_, Some(old)) => {
                    map.insert(obj_key, (**old).clone());
                }
                (_, None) => {}
            }
        }
        Ok(map
            .into_iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, v)| v)
            .collect())
    }

    /// Stores a created or updated object under a new resourceVersion and records the change.
    pub(crate) fn put(&mut self, key: &StorageKey, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let obj_key = object_key(&obj);
        let old = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert(obj_key, obj.clone());
        let kind = if old.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(key, kind, obj.clone(), old);
        obj
    }

    /// Removes an object, recording a deletion that carries a new resourceVersion.
    pub(crate) fn remove(&mut self, key: &StorageKey, ns: &str, name: &str) -> Option<Value> {
        let old = self.objects.get_mut(key)?.remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut last = old.clone();
        last["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(key, ChangeKind::Deleted, last.clone(), Some(old));
        Some(last)
    }

    fn record(&mut self, key: &StorageKey, kind: ChangeKind, object: Value, old: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.rv,
            key: key.clone(),
            kind,
            object: Arc::new(object),
            old: old.map(Arc::new),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_cap {
            if let Some(evicted) = self.history.pop_front() {
                self.floor = evicted.rv;
            }
        }
        // Watchers of this storage get the change; any watcher whose stream ended is dropped.
        self.watchers
            .retain(|w| !w.tx.is_closed() && (w.key != *key || w.tx.send(change.clone()).is_ok()));
    }

    /// The changes after `rv`, oldest first; `None` when some of them already left the history.
    pub(crate) fn changes_since(&self, rv: u64) -> Option<impl Iterator<Item = &Change>> {
        (rv >= self.floor).then(|| self.history.iter().filter(move |c| c.rv > rv).map(|c| &**c))
    }

    /// Starts a watch on a storage: the changes after `from_rv` still in history, and a receiver
    /// for every later change. 410 Expired when `from_rv` is older than the history.
    pub(crate) fn subscribe(&mut self, key: &StorageKey, from_rv: u64) -> ApiResult<Subscription> {
        if from_rv < self.floor {
            return Err(ApiError::expired(format!(
                "too old resource version: {from_rv} ({})",
                self.floor + 1
            )));
        }
        let replay = self
            .history
            .iter()
            .filter(|c| c.rv > from_rv && &c.key == key)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(Watcher { key: key.clone(), tx });
        Ok((replay, rx))
    }
}

fn expired_continue() -> ApiError {
    ApiError::expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    )
}

/// `(namespace, name)` of an object.
pub(crate) fn object_key(obj: &Value) -> ObjectKey {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}
