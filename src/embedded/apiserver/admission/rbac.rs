//! rbac.authorization.k8s.io/v1 objects: the defaults of the v1 API (a binding's `roleRef.apiGroup`, a
//! User or Group subject's `apiGroup`) and the validation kube-apiserver does on Roles, ClusterRoles
//! and their bindings (pkg/apis/rbac/validation), with its field paths and wording.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names;
use crate::embedded::apiserver::error::StatusCause;

/// The RBAC API group.
pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";

/// Whether a type is one of the four RBAC types.
pub(crate) fn is_rbac(group: &str) -> bool {
    group == GROUP
}

/// The v1 defaults: `roleRef.apiGroup` and a User or Group subject's `apiGroup` are the RBAC group.
pub(crate) fn prepare(kind: &str, obj: &mut Value) {
    if !kind.ends_with("Binding") {
        return;
    }
    if obj["roleRef"]["apiGroup"].as_str().is_none_or(str::is_empty) {
        obj["roleRef"]["apiGroup"] = json!(GROUP);
    }
    for s in obj["subjects"].as_array_mut().into_iter().flatten() {
        let user_or_group = matches!(s["kind"].as_str(), Some("User" | "Group"));
        if user_or_group && s["apiGroup"].as_str().is_none_or(str::is_empty) {
            s["apiGroup"] = json!(GROUP);
        }
    }
}

/// Validates an RBAC object (`old` on update); the causes of a 422.
pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    match kind {
        "Role" | "ClusterRole" => {
            for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
                validate_rule(rule, kind == "Role", &format!("rules[{i}]"), &mut errs);
            }
            let aggregation = &obj["aggregationRule"];
            let selectors = aggregation["clusterRoleSelectors"].as_array().map_or(0, Vec::len);
            if aggregation.is_object() && selectors == 0 {
                errs.push(StatusCause::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            validate_binding(kind, obj, &mut errs);
            if let Some(old) = old
                && old["roleRef"] != obj["roleRef"]
            {
                errs.push(StatusCause::invalid(
                    "roleRef",
                    &role_ref_value(&obj["roleRef"]),
                    "field is immutable",
                ));
            }
        }
        _ => {}
    }
    errs
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `ValidatePolicyRule`.
fn validate_rule(rule: &Value, namespaced: bool, path: &str, errs: &mut Vec<StatusCause>) {
    validate_rule_targets(rule, namespaced, path, errs);
    // kube-apiserver 1.37 reports missing verbs last, without a detail.
    if strings(&rule["verbs"]).is_empty() {
        errs.push(StatusCause::required(&format!("{path}.verbs"), ""));
    }
}

/// What a rule applies to: resources (with groups) or non-resource URLs, never both.
fn validate_rule_targets(rule: &Value, namespaced: bool, path: &str, errs: &mut Vec<StatusCause>) {
    let urls = strings(&rule["nonResourceURLs"]);
    if !urls.is_empty() {
        let field = format!("{path}.nonResourceURLs");
        if namespaced {
            errs.push(StatusCause::invalid(
                &field,
                &json!(urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        let resourceful = ["apiGroups", "resources", "resourceNames"]
            .iter()
            .any(|f| !strings(&rule[*f]).is_empty());
        if resourceful {
            errs.push(StatusCause::invalid(
                &field,
                &json!(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if strings(&rule["apiGroups"]).is_empty() {
        errs.push(StatusCause::required(
            &format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if strings(&rule["resources"]).is_empty() {
        errs.push(StatusCause::required(
            &format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
fn validate_binding(kind: &str, obj: &Value, errs: &mut Vec<StatusCause>) {
    let role_ref = &obj["roleRef"];
    let group = role_ref["apiGroup"].as_str().unwrap_or_default();
    if group != GROUP {
        errs.push(StatusCause::not_supported(
            "roleRef.apiGroup",
            &json!(group),
            &[GROUP.into()],
        ));
    }
    let ref_kind = role_ref["kind"].as_str().unwrap_or_default();
    let kinds: &[&str] = if kind == "RoleBinding" {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&ref_kind) {
        let supported: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        errs.push(StatusCause::not_supported("roleRef.kind", &json!(ref_kind), &supported));
    }
    let name = role_ref["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(StatusCause::required("roleRef.name", ""));
    }
    for msg in names::path_segment_name(name, false) {
        errs.push(StatusCause::invalid("roleRef.name", &json!(name), &msg));
    }
    for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        validate_subject(s, kind == "RoleBinding", &format!("subjects[{i}]"), errs);
    }
}

/// `ValidateRoleBindingSubject`.
fn validate_subject(s: &Value, namespaced: bool, path: &str, errs: &mut Vec<StatusCause>) {
    let name = s["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(StatusCause::required(&format!("{path}.name"), ""));
    }
    let group = s["apiGroup"].as_str().unwrap_or_default();
    match s["kind"].as_str().unwrap_or_default() {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in names::name_is_dns_subdomain(name, false) {
                    errs.push(StatusCause::invalid(&format!("{path}.name"), &json!(name), &msg));
                }
            }
            if !group.is_empty() {
                errs.push(StatusCause::not_supported(
                    &format!("{path}.apiGroup"),
                    &json!(group),
                    &["".into()],
                ));
            }
            if !namespaced && s["namespace"].as_str().is_none_or(str::is_empty) {
                errs.push(StatusCause::required(&format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                errs.push(StatusCause::not_supported(
                    &format!("{path}.apiGroup"),
                    &json!(group),
                    &[GROUP.into()],
                ));
            }
        }
        other => errs.push(StatusCause::not_supported(
            &format!("{path}.kind"),
            &json!(other),
            &["ServiceAccount".into(), "User".into(), "Group".into()],
        )),
    }
}

/// A RoleRef as kube-apiserver prints it in an immutability error: its Go field names, as JSON.
fn role_ref_value(r: &Value) -> Value {
    json!({"APIGroup": r["apiGroup"], "Kind": r["kind"], "Name": r["name"]})
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        kind: &'static str,
        obj: Value,
        expected: &'static [&'static str],
    }

    #[test]
    fn validation_matches_kube_apiserver() {
        let cases = [
            Case {
                name: "rule without verbs, groups or resources",
                kind: "Role",
                obj: json!({"rules": [{"verbs": []}]}),
                expected: &[
                    "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                    "rules[0].resources: Required value: resource rules must supply at least one resource",
                    "rules[0].verbs: Required value",
                ],
            },
            Case {
                name: "non-resource URL in a Role",
                kind: "Role",
                obj: json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
                expected: &[
                    "rules[0].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
                ],
            },
            Case {
                name: "non-resource URL in a ClusterRole is fine",
                kind: "ClusterRole",
                obj: json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
                expected: &[],
            },
            Case {
                name: "ClusterRoleBinding to a Role, SA subject without namespace",
                kind: "ClusterRoleBinding",
                obj: json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
                expected: &[
                    "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                    "subjects[0].namespace: Required value",
                ],
            },
            Case {
                name: "unknown subject kind, empty role name",
                kind: "RoleBinding",
                obj: json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": ""},
                    "subjects": [{"kind": "Robot", "name": "r2"}]}),
                expected: &[
                    "roleRef.name: Required value",
                    "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                ],
            },
        ];
        for case in cases {
            let lines: Vec<String> = validate(case.kind, &case.obj, None)
                .iter()
                .map(StatusCause::line)
                .collect();
            assert_eq!(lines, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn role_ref_is_immutable_and_defaults_apply() {
        let mut old = json!({"roleRef": {"kind": "Role", "name": "a"}, "subjects": [{"kind": "User", "name": "u"}]});
        prepare("RoleBinding", &mut old);
        assert_eq!(old["roleRef"]["apiGroup"], GROUP);
        assert_eq!(old["subjects"][0]["apiGroup"], GROUP);
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("b");
        let lines: Vec<String> = validate("RoleBinding", &new, Some(&old))
            .iter()
            .map(StatusCause::line)
            .collect();
        assert_eq!(
            lines,
            [
                "roleRef: Invalid value: {\"APIGroup\":\"rbac.authorization.k8s.io\",\"Kind\":\"Role\",\"Name\":\"b\"}: field is immutable"
            ]
        );
    }
}
