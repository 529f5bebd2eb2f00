//! kube-controller-manager's clusterrole-aggregation controller: a ClusterRole with an
//! `aggregationRule` gets, as its rules, the rules of every other ClusterRole whose labels match
//! one of its `clusterRoleSelectors` (ClusterRoles by name, rules without duplicates). Runs with
//! the garbage collector after writes.
use serde_json::{Value, json};

use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::ops::{self, WriteOpts};
use crate::embedded::apiserver::storage::selector::{LabelSelector, labels_of};
use crate::embedded::apiserver::storage::store::State;

const MANAGER: &str = "clusterrole-aggregation-controller";

fn key() -> StorageKey {
    StorageKey {
        group: "rbac.authorization.k8s.io".into(),
        resource: "clusterroles".into(),
    }
}

/// A `metav1.LabelSelector` in the text form [`LabelSelector::parse`] reads; `None` if malformed.
fn selector_text(sel: &Value) -> Option<String> {
    let mut terms = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        terms.push(format!("{k}={}", v.as_str()?));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let k = e["key"].as_str()?;
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match e["operator"].as_str()? {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.to_string(),
            "DoesNotExist" => format!("!{k}"),
            _ => return None,
        });
    }
    Some(terms.join(","))
}

/// The rules an aggregated ClusterRole should have, from the ClusterRoles `all` (sorted by name).
fn aggregated_rules(role: &Value, all: &[Value]) -> Vec<Value> {
    let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| LabelSelector::parse(&selector_text(s)?).ok())
        .collect();
    let mut rules: Vec<Value> = Vec::new();
    for other in all {
        if other["metadata"]["name"] == role["metadata"]["name"] {
            continue;
        }
        let labels = labels_of(other);
        if !selectors.iter().any(|s| s.matches(&labels)) {
            continue;
        }
        for rule in other["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    rules
}

/// Brings every aggregated ClusterRole's rules up to date. Returns whether it changed any.
pub(crate) fn reconcile(st: &mut State) -> bool {
    let all = st.list(&key(), None);
    let Some(rt) = st.find_type("rbac.authorization.k8s.io", "v1", "clusterroles") else {
        return false;
    };
    let mut changed = false;
    for role in all.iter().filter(|r| r["aggregationRule"].is_object()) {
        let rules = aggregated_rules(role, &all);
        if role["rules"].as_array().map(Vec::as_slice).unwrap_or_default() == rules.as_slice() {
            continue;
        }
        let mut next = role.clone();
        next["rules"] = json!(rules);
        let opts = WriteOpts {
            manager: MANAGER.into(),
            ..Default::default()
        };
        changed |= ops::replace(st, &rt, role.clone(), next, None, &opts).is_ok();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_roles_rules_are_gathered_once_by_name_order() {
        let role = |name: &str, labels: Value, rules: Value| json!({"metadata": {"name": name, "labels": labels}, "rules": rules});
        let get = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let list = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]});
        let all = [
            role("a", json!({"agg": "yes"}), json!([get])),
            role("b", json!({"agg": "yes", "tier": "x"}), json!([get, list])),
            role("c", json!({"agg": "no"}), json!([{"verbs": ["*"]}])),
        ];
        let aggregator = json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"agg": "yes"}},
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]},
        ]}});
        assert_eq!(aggregated_rules(&aggregator, &all), vec![get, list]);
    }
}
