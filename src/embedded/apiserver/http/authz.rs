//! Authorization: the request's attributes, read from the path as kube-apiserver's RequestInfo
//! resolver reads them, and the RBAC authorizer deciding on them from the stored Roles,
//! ClusterRoles and their bindings (plugin/pkg/auth/authorizer/rbac). Members of
//! `system:masters` are allowed everything without a lookup, as kube's privileged-group
//! authorizer does.
//!
//! A denial is 403 with kube's Status: `pods is forbidden: User "…" cannot list resource "pods"
//! in API group "" in the namespace "default"`, followed by `: RBAC: <errors>` when a binding
//! names a role that does not exist.
use serde_json::Value;

use crate::embedded::apiserver::admission::rbac::GROUP;
use crate::embedded::apiserver::error::ApiError;
use crate::embedded::apiserver::http::auth::User;
use crate::embedded::apiserver::http::params::{self, Query};
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::store::State;

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for a
    /// non-resource request the lower-case HTTP method.
    pub verb: String,
    /// Whether it is about an API resource (else a non-resource URL such as `/version`).
    pub resource_request: bool,
    /// API group (`""` for core).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`, `log`, `token`…).
    pub subresource: String,
    /// Namespace (for the `namespaces` resource: the namespace named).
    pub namespace: String,
    /// Object name (for list and watch: a `metadata.name=` field selector's value).
    pub name: String,
    /// The URL path (non-resource requests).
    pub path: String,
}

impl Attributes {
    /// The attributes of a request, as kube-apiserver's `RequestInfoFactory` derives them.
    pub(crate) fn from_request(method: &str, path: &str, query: &Query) -> Self {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let non_resource = || Attributes {
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..Default::default()
        };
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => return non_resource(),
        };
        let verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        };
        let mut attrs = Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            path: path.to_string(),
            ..Default::default()
        };
        let mut parts = rest;
        if parts[0] == "namespaces" && parts.len() > 1 {
            attrs.namespace = parts[1].to_string();
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        attrs.resource = parts[0].to_string();
        attrs.name = parts.get(1).map(|s| s.to_string()).unwrap_or_default();
        attrs.subresource = parts.get(2).map(|s| s.to_string()).unwrap_or_default();
        if attrs.name.is_empty() && attrs.verb == "get" {
            attrs.verb = if params::flag(query, "watch") { "watch" } else { "list" }.into();
            attrs.name = exact_name(query.get("fieldSelector").map(String::as_str).unwrap_or_default());
        }
        if attrs.name.is_empty() && attrs.verb == "delete" {
            attrs.verb = "deletecollection".into();
        }
        attrs
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `==x`), if it is a valid
/// path segment.
fn exact_name(selector: &str) -> String {
    selector
        .split(',')
        .filter_map(|term| {
            let term = term.trim();
            let value = term.strip_prefix("metadata.name")?.trim_start();
            let value = value.strip_prefix("==").or_else(|| value.strip_prefix('='))?;
            Some(value.trim().to_string())
        })
        .find(|v| !v.is_empty() && crate::embedded::apiserver::admission::names::path_segment_name(v, false).is_empty())
        .unwrap_or_default()
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// `RBAC: allowed by …` when allowed; the resolution errors (`RBAC: …`) when denied, if any.
    pub reason: String,
}

/// Decides a request by `user` with `attrs`.
pub(crate) fn authorize(st: &State, user: &User, attrs: &Attributes) -> Decision {
    if user.is_master() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    for (source, rules) in rules_for(st, user, &attrs.namespace, &mut errors) {
        if rules.iter().any(|r| rule_allows(attrs, r)) {
            return Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            };
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision { allowed: false, reason }
}

/// Every rule that applies to `user` in `namespace` (a SelfSubjectRulesReview), and the errors met
/// resolving them (a binding to a missing role).
pub(crate) fn rules(st: &State, user: &User, namespace: &str) -> (Vec<Value>, Vec<String>) {
    let mut errors = Vec::new();
    let rules = rules_for(st, user, namespace, &mut errors)
        .into_iter()
        .flat_map(|(_, rules)| rules)
        .collect();
    (rules, errors)
}

/// The 403 of a denied request, worded as kube-apiserver's `responsewriters.Forbidden`.
pub(crate) fn forbidden(user: &User, attrs: &Attributes, reason: &str) -> ApiError {
    let mut why = if !attrs.resource_request {
        format!("User {:?} cannot {} path {:?}", user.name, attrs.verb, attrs.path)
    } else {
        let mut resource = attrs.resource.clone();
        if !attrs.subresource.is_empty() {
            resource = format!("{resource}/{}", attrs.subresource);
        }
        let scope = if attrs.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", attrs.namespace)
        };
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, attrs.verb, attrs.group
        )
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    ApiError::forbidden_request(&attrs.group, &attrs.resource, &attrs.name, &why)
}

fn key(resource: &str) -> StorageKey {
    StorageKey {
        group: GROUP.into(),
        resource: resource.into(),
    }
}

/// The rules that apply to `user` in `namespace` (cluster bindings first, then the namespace's
/// RoleBindings), each with the describer RBAC names in its `allowed by` reason. A binding whose
/// role is missing adds an error instead.
fn rules_for(st: &State, user: &User, namespace: &str, errors: &mut Vec<String>) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for b in st.list(&key("clusterrolebindings"), None) {
        if let Some(subject) = applies_to(user, &b, "") {
            let described = describe_binding("ClusterRoleBinding", &b, &subject, "");
            match role_rules(st, &b["roleRef"], "") {
                Ok(rules) => out.push((described, rules)),
                Err(e) => errors.push(e),
            }
        }
    }
    if namespace.is_empty() {
        return out;
    }
    for b in st.list(&key("rolebindings"), Some(namespace)) {
        if let Some(subject) = applies_to(user, &b, namespace) {
            let described = describe_binding("RoleBinding", &b, &subject, namespace);
            match role_rules(st, &b["roleRef"], namespace) {
                Ok(rules) => out.push((described, rules)),
                Err(e) => errors.push(e),
            }
        }
    }
    out
}

/// The rules of the role a binding refers to, or the lister's NotFound text.
pub(crate) fn role_rules(st: &State, role_ref: &Value, namespace: &str) -> Result<Vec<Value>, String> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let (resource, ns, singular) = match role_ref["kind"].as_str() {
        Some("Role") => ("roles", namespace, "role"),
        _ => ("clusterroles", "", "clusterrole"),
    };
    st.get(&key(resource), ns, name)
        .map(|r| r["rules"].as_array().cloned().unwrap_or_default())
        .ok_or_else(|| format!("{singular}.{GROUP} {name:?} not found"))
}

/// The first subject of `binding` that is `user`.
fn applies_to(user: &User, binding: &Value, namespace: &str) -> Option<Value> {
    binding["subjects"]
        .as_array()?
        .iter()
        .find(|s| subject_is(user, s, namespace))
        .cloned()
}

/// `appliesToUser`: a User by name, a Group by membership, a ServiceAccount by its user name (its
/// namespace defaulting to the binding's).
fn subject_is(user: &User, s: &Value, namespace: &str) -> bool {
    let name = s["name"].as_str().unwrap_or_default();
    match s["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(namespace);
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// `ClusterRoleBinding "b" of ClusterRole "r" to ServiceAccount "sa/ns"`.
fn describe_binding(kind: &str, b: &Value, subject: &Value, namespace: &str) -> String {
    let name = b["metadata"]["name"].as_str().unwrap_or_default();
    let binding = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{namespace}")
    };
    let s_name = subject["name"].as_str().unwrap_or_default();
    let s_kind = subject["kind"].as_str().unwrap_or_default();
    let who = if s_kind == "ServiceAccount" {
        let ns = subject["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(namespace);
        format!("{s_kind} {:?}", format!("{s_name}/{ns}"))
    } else {
        format!("{s_kind} {s_name:?}")
    };
    format!(
        "{kind} {binding:?} of {} {:?} to {who}",
        b["roleRef"]["kind"].as_str().unwrap_or_default(),
        b["roleRef"]["name"].as_str().unwrap_or_default()
    )
}

fn list<'a>(rule: &'a Value, field: &str) -> Vec<&'a str> {
    rule[field]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `RuleAllows`: verb, API group, resource (with subresource) and resource name for a resource
/// request; verb and non-resource URL otherwise.
pub(crate) fn rule_allows(attrs: &Attributes, rule: &Value) -> bool {
    let verbs = list(rule, "verbs");
    let verb_ok = verbs.iter().any(|v| *v == "*" || *v == attrs.verb);
    if !attrs.resource_request {
        let urls = list(rule, "nonResourceURLs");
        return verb_ok
            && urls.iter().any(|u| {
                *u == "*" || *u == attrs.path || u.strip_suffix('*').is_some_and(|p| attrs.path.starts_with(p))
            });
    }
    let groups = list(rule, "apiGroups");
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resources = list(rule, "resources");
    let resource_ok = resources.iter().any(|r| {
        *r == "*" || *r == combined || (!attrs.subresource.is_empty() && *r == format!("*/{}", attrs.subresource))
    });
    let names = list(rule, "resourceNames");
    verb_ok
        && groups.iter().any(|g| *g == "*" || *g == attrs.group)
        && resource_ok
        && (names.is_empty() || names.contains(&attrs.name.as_str()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Case {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        expected: Attributes,
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: path.into(),
        }
    }

    #[test]
    fn request_attributes_are_read_as_kube_reads_them() {
        let cases = [
            Case {
                name: "list in a namespace",
                method: "GET",
                path: "/api/v1/namespaces/default/pods",
                query: "",
                expected: attrs("list", "", "pods", "", "default", "", "/api/v1/namespaces/default/pods"),
            },
            Case {
                name: "watch by name through a field selector",
                method: "GET",
                path: "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
                query: "watch=true&fieldSelector=metadata.name%3Dlock",
                expected: attrs(
                    "watch",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "ns",
                    "lock",
                    "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
                ),
            },
            Case {
                name: "a namespace is its own namespace",
                method: "GET",
                path: "/api/v1/namespaces/team",
                query: "",
                expected: attrs("get", "", "namespaces", "", "team", "team", "/api/v1/namespaces/team"),
            },
            Case {
                name: "subresource",
                method: "POST",
                path: "/api/v1/namespaces/ns/serviceaccounts/sa/token",
                query: "",
                expected: attrs(
                    "create",
                    "",
                    "serviceaccounts",
                    "token",
                    "ns",
                    "sa",
                    "/api/v1/namespaces/ns/serviceaccounts/sa/token",
                ),
            },
            Case {
                name: "deletecollection at the cluster scope",
                method: "DELETE",
                path: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                query: "",
                expected: attrs(
                    "deletecollection",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "",
                    "",
                    "",
                    "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                ),
            },
            Case {
                name: "discovery is a non-resource URL",
                method: "GET",
                path: "/apis/rbac.authorization.k8s.io/v1",
                query: "",
                expected: Attributes {
                    verb: "get".into(),
                    path: "/apis/rbac.authorization.k8s.io/v1".into(),
                    ..Default::default()
                },
            },
        ];
        for case in cases {
            let query = params::parse(Some(case.query));
            assert_eq!(
                Attributes::from_request(case.method, case.path, &query),
                case.expected,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_names_and_urls() {
        let get_pods_log = attrs("get", "", "pods", "log", "ns", "p1", "");
        let rule = |r: Value| r;
        assert!(rule_allows(
            &get_pods_log,
            &rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}))
        ));
        assert!(!rule_allows(
            &get_pods_log,
            &rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}))
        ));
        assert!(rule_allows(
            &get_pods_log,
            &rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/log"], "resourceNames": ["p1"]}))
        ));
        assert!(!rule_allows(
            &get_pods_log,
            &rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "resourceNames": ["p2"]}))
        ));
        let healthz = Attributes {
            verb: "get".into(),
            path: "/healthz/ping".into(),
            ..Default::default()
        };
        assert!(rule_allows(
            &healthz,
            &json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]})
        ));
        assert!(!rule_allows(
            &healthz,
            &json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]})
        ));
    }

    #[test]
    fn forbidden_message_is_kubes() {
        let user = User {
            name: "system:serviceaccount:ns:sa".into(),
            ..User::anonymous()
        };
        let e = forbidden(&user, &attrs("list", "", "pods", "", "default", "", ""), "");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let e = forbidden(
            &user,
            &attrs("update", "delivery.inge.4pr.es", "pipelines", "status", "", "p", ""),
            "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found",
        );
        assert_eq!(
            e.message,
            "pipelines.delivery.inge.4pr.es \"p\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot update resource \"pipelines/status\" in API group \"delivery.inge.4pr.es\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found"
        );
        let path = Attributes {
            verb: "get".into(),
            path: "/metrics".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden(&user, &path, "").message,
            "forbidden: User \"system:serviceaccount:ns:sa\" cannot get path \"/metrics\""
        );
    }
}
