//! RBAC's privilege-escalation prevention (pkg/registry/rbac/*/policybased and
//! pkg/registry/rbac/validation): a user may write a Role or ClusterRole only with rules it already
//! holds (or the `escalate` verb on it), and a binding only to a role whose rules it already holds
//! (or the `bind` verb on that role). Members of `system:masters` are exempt, as in kube.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::rbac::GROUP;
use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::http::auth::User;
use crate::embedded::apiserver::http::authz::{self, Attributes};
use crate::embedded::apiserver::resources::ResourceType;
use crate::embedded::apiserver::storage::store::State;

/// Whether a write of `rt` by `user` must be checked.
pub(super) fn applies(user: &User, rt: &ResourceType) -> bool {
    rt.group == GROUP && !user.is_master()
}

/// Checks the object a write of `rt` in `namespace` would store (`new`), given the stored one
/// (`old`, on updates): 403 when it grants what `user` does not hold, 400 when a binding's role
/// cannot be found.
pub(super) fn check(
    st: &State,
    user: &User,
    rt: &ResourceType,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    if old.is_some_and(|old| only_gc_fields_change(old, new)) {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let rules = if rt.kind.ends_with("Binding") {
        let role_ref = &new["roleRef"];
        let resource = match role_ref["kind"].as_str() {
            Some("Role") => "roles",
            _ => "clusterroles",
        };
        let role = role_ref["name"].as_str().unwrap_or_default();
        if permitted(st, user, "bind", resource, namespace, role) {
            return Ok(());
        }
        authz::role_rules(st, role_ref, namespace).map_err(ApiError::bad_request)?
    } else {
        if permitted(st, user, "escalate", &rt.plural, namespace, name) {
            return Ok(());
        }
        role_rules_of(new)
    };
    confirm_no_escalation(st, user, namespace, &rules)
        .map_err(|why| ApiError::forbidden_request(GROUP, &rt.plural, name, &why))
}

/// The rules a Role or ClusterRole grants; one with an `aggregationRule` can gather anything, so
/// it needs everything (`*` on `*.*` and on every URL), as kube requires.
fn role_rules_of(role: &Value) -> Vec<Value> {
    if role["aggregationRule"].is_object() {
        return vec![
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
            json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
        ];
    }
    role["rules"].as_array().cloned().unwrap_or_default()
}

/// `IsOnlyMutatingGCFields`: the write changes nothing but owner references and finalizers (and
/// the bookkeeping the server keeps).
fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let mut copy = new.clone();
    for field in [
        "ownerReferences",
        "finalizers",
        "managedFields",
        "resourceVersion",
        "generation",
    ] {
        match old["metadata"].get(field) {
            Some(v) => copy["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = copy["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    copy == *old
}

/// Whether RBAC allows `user` the special verb on the named role.
fn permitted(st: &State, user: &User, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
    let attrs = Attributes {
        verb: verb.into(),
        resource_request: true,
        group: GROUP.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    authz::authorize(st, user, &attrs).allowed
}

/// `ConfirmNoEscalation`: every rule asked for is covered by a rule `user` holds in `namespace`;
/// else kube's message listing the missing rights.
fn confirm_no_escalation(st: &State, user: &User, namespace: &str, requested: &[Value]) -> Result<(), String> {
    let (owned, errors) = authz::rules(st, user, namespace);
    let missing: Vec<Value> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owned.iter().any(|o| rule_covers(o, sub)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups.iter().map(String::as_str).collect::<Vec<_>>()),
        lines.join("\n")
    );
    if !errors.is_empty() {
        let joined = if errors.len() == 1 {
            errors[0].clone()
        } else {
            format!("[{}]", errors.join(", "))
        };
        msg.push_str(&format!("; resolution errors: [{joined}]"));
    }
    Err(msg)
}

fn list(rule: &Value, field: &str) -> Vec<String> {
    rule[field]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `BreakdownRule`: one rule per group × resource × verb (× resource name), and per URL × verb.
fn breakdown(rule: &Value) -> Vec<Value> {
    let (groups, resources, verbs, names) = (
        list(rule, "apiGroups"),
        list(rule, "resources"),
        list(rule, "verbs"),
        list(rule, "resourceNames"),
    );
    let mut out = Vec::new();
    for g in &groups {
        for r in &resources {
            for v in &verbs {
                if names.is_empty() {
                    out.push(json!({"apiGroups": [g], "resources": [r], "verbs": [v]}));
                }
                for n in &names {
                    out.push(json!({"apiGroups": [g], "resources": [r], "verbs": [v], "resourceNames": [n]}));
                }
            }
        }
    }
    for u in list(rule, "nonResourceURLs") {
        for v in &verbs {
            out.push(json!({"nonResourceURLs": [u], "verbs": [v]}));
        }
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| set.contains(w))
}

/// `ruleCovers`: an owned rule covers a broken-down one.
fn rule_covers(owner: &Value, sub: &Value) -> bool {
    let all = |set: &[String], wanted: &[String]| set.iter().any(|s| s == "*") || has_all(set, wanted);
    let owner_names = list(owner, "resourceNames");
    let sub_names = list(sub, "resourceNames");
    let names_ok = owner_names.is_empty() || (!sub_names.is_empty() && has_all(&owner_names, &sub_names));
    all(&list(owner, "verbs"), &list(sub, "verbs"))
        && all(&list(owner, "apiGroups"), &list(sub, "apiGroups"))
        && resources_cover(&list(owner, "resources"), &list(sub, "resources"))
        && names_ok
        && list(sub, "nonResourceURLs").iter().all(|path| {
            list(owner, "nonResourceURLs")
                .iter()
                .any(|o| o == path || o.strip_suffix('*').is_some_and(|p| path.starts_with(p)))
        })
}

/// `resourceCoversAll`: `*`, the exact resource, or `*/<subresource>` for a subresource.
fn resources_cover(set: &[String], wanted: &[String]) -> bool {
    if set.iter().any(|s| s == "*") {
        return true;
    }
    wanted.iter().all(|path| {
        set.contains(path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| set.contains(&format!("*/{sub}")))
    })
}

/// `CompactRules`: rules for one group and resource (no names, no URLs) that differ only by
/// verb are merged.
fn compact(rules: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for rule in rules {
        let simple = rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null();
        let same = out.iter_mut().find(|o| {
            simple
                && o["resourceNames"].is_null()
                && o["nonResourceURLs"].is_null()
                && o["apiGroups"] == rule["apiGroups"]
                && o["resources"] == rule["resources"]
        });
        match same {
            Some(o) => {
                for v in list(&rule, "verbs") {
                    if let Some(verbs) = o["verbs"].as_array_mut()
                        && !verbs.contains(&json!(v))
                    {
                        verbs.push(json!(v));
                    }
                }
            }
            None => out.push(rule),
        }
    }
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`.
fn compact_string(rule: &Value) -> String {
    let mut parts = Vec::new();
    for (field, label) in [
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ] {
        let items = list(rule, field);
        if !items.is_empty() {
            let refs: Vec<&str> = items.iter().map(String::as_str).collect();
            parts.push(format!("{label}:{}", go_quoted(&refs)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        owner: Value,
        requested: Value,
        covered: bool,
    }

    #[test]
    fn coverage_follows_kubes_rules() {
        let cases = [
            Case {
                name: "wildcards cover everything",
                owner: json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                requested: json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]}),
                covered: true,
            },
            Case {
                name: "a resource does not cover its subresource",
                owner: json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
                requested: json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
                covered: false,
            },
            Case {
                name: "*/subresource covers it",
                owner: json!({"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}),
                requested: json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}),
                covered: true,
            },
            Case {
                name: "named access does not cover all names",
                owner: json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]}),
                requested: json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}),
                covered: false,
            },
            Case {
                name: "URL prefix",
                owner: json!({"nonResourceURLs": ["/api/*"], "verbs": ["get"]}),
                requested: json!({"nonResourceURLs": ["/api/v1"], "verbs": ["get"]}),
                covered: true,
            },
        ];
        for case in cases {
            let covered = breakdown(&case.requested)
                .iter()
                .all(|sub| rule_covers(&case.owner, sub));
            assert_eq!(covered, case.covered, "{}", case.name);
        }
    }

    #[test]
    fn missing_rights_are_compacted_and_printed_as_kube_prints_them() {
        let missing = breakdown(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}));
        let lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            lines,
            ["{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"delete\"]}"]
        );
    }
}
