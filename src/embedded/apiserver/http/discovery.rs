//! API discovery: the legacy documents (`/api`, `/apis`, `/apis/<g>`, resource lists) and the
//! aggregated `apidiscovery.k8s.io` v2/v2beta1 lists kubectl asks for first.
use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::embedded::apiserver::resources::ResourceType;

/// The Kubernetes version the server reports. The kubectl dispatcher on our machines runs
/// `kubectl.<major>.<minor>` when it exists, so this also picks kubectl 1.32.
pub(super) const KUBE_GIT_VERSION: &str = "v1.32.4-cdkube";

/// `GET /version`.
pub(super) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Kubernetes version priority: GA over beta over alpha, higher numbers first.
pub(super) fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (level, major, num.parse().unwrap_or(0))
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Groups (name → versions, preferred first) of the served types; core is `""`.
fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types {
        let vs = out.entry(t.group.clone()).or_default();
        if !vs.contains(&t.version) {
            vs.push(t.version.clone());
        }
    }
    for vs in out.values_mut() {
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

fn group_order(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    // Built-in groups first in their fixed order, then custom groups alphabetically.
    let builtin = [
        "",
        "apiregistration.k8s.io",
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "discovery.k8s.io",
    ];
    let mut all: Vec<(String, Vec<String>)> = groups(types).into_iter().collect();
    all.sort_by_key(|(g, _)| (builtin.iter().position(|b| b == g).unwrap_or(usize::MAX), g.clone()));
    all
}

/// `GET /api`.
pub(super) fn api_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `GET /apis`.
pub(super) fn api_group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = group_order(types)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`, if served.
pub(super) fn api_group(types: &[ResourceType], group: &str) -> Option<Value> {
    let vs = groups(types).remove(group)?;
    let mut doc = group_doc(group, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `GET /api/v1` or `/apis/<group>/<version>`, if served.
pub(super) fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in mine {
        let mut r = json!({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": verbs(t)});
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for sub in subresources(t) {
            let mut r = json!({"name": format!("{}/{}", t.plural, sub.name), "singularName": "",
                "namespaced": t.namespaced, "kind": sub.kind.unwrap_or(&t.kind), "verbs": sub.verbs});
            // A core kind of its own (PodExecOptions) is named without group and version here.
            if let Some((group, version)) = sub.group_version
                && !group.is_empty()
            {
                r["group"] = json!(group);
                r["version"] = json!(version);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The verbs of a resource: all of them, or `create` alone for the reviews.
fn verbs(t: &ResourceType) -> &'static [&'static str] {
    if t.create_only { &["create"] } else { VERBS }
}

/// A subresource as discovery lists it.
struct Subresource {
    name: &'static str,
    verbs: Vec<&'static str>,
    /// The kind it takes, when not the resource's own (TokenRequest).
    kind: Option<&'static str>,
    /// Group and version of that kind.
    group_version: Option<(&'static str, &'static str)>,
}

fn subresources(t: &ResourceType) -> Vec<Subresource> {
    let own = |name, verbs| Subresource {
        name,
        verbs,
        kind: None,
        group_version: None,
    };
    let mut out = Vec::new();
    if t.status_subresource {
        out.push(own("status", vec!["get", "patch", "update"]));
    }
    if t.log_subresource {
        out.push(own("log", vec!["get"]));
    }
    if t.group.is_empty() && t.plural == "pods" {
        out.push(Subresource {
            name: "eviction",
            verbs: vec!["create"],
            kind: Some("Eviction"),
            group_version: Some(("policy", "v1")),
        });
        for (name, kind) in [("attach", "PodAttachOptions"), ("exec", "PodExecOptions")] {
            out.push(Subresource {
                name,
                verbs: vec!["create", "get"],
                kind: Some(kind),
                group_version: Some(("", "v1")),
            });
        }
        out.push(Subresource {
            name: "ephemeralcontainers",
            verbs: vec!["get", "patch", "update"],
            kind: Some("Pod"),
            group_version: None,
        });
    }
    if t.custom.as_ref().is_some_and(|c| c.scale.is_some()) {
        out.push(Subresource {
            name: "scale",
            verbs: vec!["get", "patch", "update"],
            kind: Some("Scale"),
            group_version: Some(("autoscaling", "v1")),
        });
    }
    if t.group.is_empty() && t.plural == "serviceaccounts" {
        out.push(Subresource {
            name: "token",
            verbs: vec!["create"],
            kind: Some("TokenRequest"),
            group_version: Some(("authentication.k8s.io", "v1")),
        });
    }
    out
}

/// The aggregated discovery list for `/api` (core) or `/apis` (all other groups).
pub(super) fn aggregated(types: &[ResourceType], core: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in group_order(types) {
        if group.is_empty() != core {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = types
                    .iter()
                    .filter(|t| t.group == group && &t.version == v)
                    .map(|t| {
                        let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
                        let subs: Vec<Value> = subresources(t)
                            .into_iter()
                            .map(|s| {
                                let response = match (s.kind, s.group_version) {
                                    (Some(k), Some((g, v))) => json!({"group": g, "version": v, "kind": k}),
                                    _ => kind.clone(),
                                };
                                json!({"subresource": s.name, "responseKind": response, "verbs": s.verbs})
                            })
                            .collect();
                        let mut r = json!({"resource": t.plural, "responseKind": kind,
                            "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": t.singular, "verbs": verbs(t)});
                        if !t.short_names.is_empty() {
                            r["shortNames"] = json!(t.short_names);
                        }
                        if !t.categories.is_empty() {
                            r["categories"] = json!(t.categories);
                        }
                        if !subs.is_empty() {
                            r["subresources"] = json!(subs);
                        }
                        r
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let mut meta = json!({"creationTimestamp": null});
        if !group.is_empty() {
            meta["name"] = json!(group);
        }
        items.push(json!({"metadata": meta, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut vs = vec!["v1alpha1", "v2beta1", "v1", "v1beta2", "v2"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(vs, vec!["v2", "v1", "v2beta1", "v1beta2", "v1alpha1"]);
    }
}
