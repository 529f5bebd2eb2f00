//! apiregistration.k8s.io/v1 APIServices for the served group/versions, as kube-apiserver's
//! autoregistration keeps its local ones: `<version>.<group>` (`v1.` for core), no `service`
//! (served locally), kube-apiserver's `groupPriorityMinimum`/`versionPriority` (1000/100 for
//! CRD groups), and an Available condition, True with reason Local. Built-in ones carry
//! `kube-aggregator.kubernetes.io/automanaged: onstart`, CRD ones `true` and go with their CRD.
//! The aggregation group lists no APIService for itself, as in kube-apiserver.
use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::store::State;

const GROUP: &str = "apiregistration.k8s.io";
const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

fn key() -> StorageKey {
    StorageKey {
        group: GROUP.into(),
        resource: "apiservices".into(),
    }
}

/// kube-apiserver's priorities of its built-in groups (`apiVersionPriorities`).
fn builtin_priority(group: &str) -> Option<(i64, i64)> {
    let group_min = match group {
        "" => return Some((18000, 1)),
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "apiextensions.k8s.io" | "admissionregistration.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" | "resource.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        _ => return None,
    };
    Some((group_min, 15))
}

fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

fn apiservice(group: &str, version: &str, custom: bool) -> Value {
    let (group_min, version_priority) = builtin_priority(group).filter(|_| !custom).unwrap_or((1000, 100));
    let mut spec = json!({"version": version, "groupPriorityMinimum": group_min, "versionPriority": version_priority});
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    let now = ids::now();
    json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {
            "name": name_of(group, version), "uid": ids::uuid(), "creationTimestamp": now,
            "labels": {AUTOMANAGED: if custom { "true" } else { "onstart" }},
        },
        "spec": spec,
        "status": {"conditions": [{
            "type": "Available", "status": "True", "lastTransitionTime": now,
            "reason": "Local", "message": "Local APIServices are always available",
        }]},
    })
}

/// Creates the APIServices of newly served group/versions and removes those of CRD versions no
/// longer served.
pub(crate) fn sync(st: &mut State) {
    let served: BTreeSet<(String, String, bool)> = st
        .types()
        .iter()
        .filter(|t| t.group != GROUP)
        .map(|t| (t.group.clone(), t.version.clone(), t.custom.is_some()))
        .collect();
    let names: BTreeSet<String> = served.iter().map(|(g, v, _)| name_of(g, v)).collect();
    let stale: Vec<String> = st
        .list(&key(), None)
        .iter()
        .filter(|a| a["metadata"]["labels"][AUTOMANAGED] == json!("true"))
        .filter_map(|a| a["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| !names.contains(n))
        .collect();
    for name in stale {
        st.remove(&key(), "", &name);
    }
    for (group, version, custom) in served {
        if st.get(&key(), "", &name_of(&group, &version)).is_none() {
            st.put(&key(), apiservice(&group, &version, custom));
        }
    }
}
