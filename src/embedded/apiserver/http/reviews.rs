//! The create-only endpoints that store nothing: `serviceaccounts/<name>/token` (TokenRequest),
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i
//! --list`) and SelfSubjectReview (`kubectl auth whoami`).
use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::http::auth::User;
use crate::embedded::apiserver::http::authz::{self, Attributes};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::http::response::json_response;
use crate::embedded::apiserver::http::target::Target;
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::serviceaccounts;
use crate::embedded::apiserver::tokens::{self, Bound};

/// TokenRequest's `expirationSeconds` default (one hour) and bounds (10 minutes to 2^32 seconds).
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

fn decode<T: serde::de::DeserializeOwned>(kind: &str, body: Value) -> ApiResult<T> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("{kind} in version \"v1\" cannot be handled as a {kind}: {e}")))
}

/// `POST …/serviceaccounts/<name>/token`: a token for the ServiceAccount (201), as
/// pkg/registry/core/serviceaccount/storage/token.go issues it.
pub(super) fn token_request(server: &Server, t: &Target, body: Value) -> ApiResult<Response> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let mut req: TokenRequest = decode("TokenRequest", body)?;
    let invalid = |field: &str, value: &str, detail: &str| {
        let errs = [StatusCause::invalid(field, &json!(value), detail)];
        ApiError::invalid("authentication.k8s.io", "TokenRequest", &name, &errs)
    };
    if let Some(n) = req.metadata.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        return Err(invalid(
            "metadata.name",
            n,
            "must match the service account name if specified",
        ));
    }
    if let Some(n) = req.metadata.namespace.as_deref().filter(|n| !n.is_empty() && *n != ns) {
        return Err(invalid(
            "metadata.namespace",
            n,
            "must match the service account namespace if specified",
        ));
    }
    let st = server.store.lock();
    let sa = serviceaccounts::get(&st, &ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &name))?;
    let spec = req.spec.get_or_insert_with(Default::default);
    let bound = match &spec.bound_object_ref {
        Some(r) => Some(bound_object(&st, &ns, &name, r)?),
        None => None,
    };
    drop(st);
    let expiration = spec.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION);
    let mut errs = Vec::new();
    if expiration < MIN_EXPIRATION {
        errs.push(StatusCause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION {
        errs.push(StatusCause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("authentication.k8s.io", "TokenRequest", "", &errs));
    }
    let audiences = spec.audiences.get_or_insert_with(Vec::new);
    if audiences.is_empty() {
        audiences.push(tokens::ISSUER.to_string());
    }
    let audiences = audiences.clone();
    let now = jiff::Timestamp::now();
    let claims = tokens::claims(&sa, bound.as_ref(), now.as_second(), expiration, &audiences);
    let token = server.signer.sign(&claims);
    let expires = now + jiff::SignedDuration::from_secs(expiration);
    let mut out = serde_json::to_value(&req).map_err(|e| ApiError::internal(e.to_string()))?;
    out["kind"] = json!("TokenRequest");
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": ids::time(now)});
    out["spec"]["expirationSeconds"] = json!(expiration);
    out["status"] = json!({"token": token, "expirationTimestamp": ids::time(expires)});
    Ok(json_response(StatusCode::CREATED, &out, &[]))
}

/// The Pod or Secret a token is bound to: it must exist (404), carry the given uid (409) and, for a
/// Pod, run as this ServiceAccount (400).
fn bound_object(
    st: &crate::embedded::apiserver::storage::store::State,
    ns: &str,
    sa: &str,
    r: &k8s_openapi::api::authentication::v1::BoundObjectReference,
) -> ApiResult<Bound> {
    let kind = r.kind.clone().unwrap_or_default();
    let api_version = r.api_version.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    let resource = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => "pods",
        ("v1", "Secret") => "secrets",
        _ => {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    let key = StorageKey {
        group: String::new(),
        resource: resource.into(),
    };
    let obj = st
        .get(&key, ns, &name)
        .ok_or_else(|| ApiError::not_found("", resource, &name))?;
    if kind == "Pod" {
        let runs_as = obj["spec"]["serviceAccountName"].as_str().unwrap_or_default();
        if runs_as != sa {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {sa:?} to pod running with serviceaccount {runs_as:?}"
            )));
        }
    }
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    if let Some(want) = r.uid.as_deref().filter(|u| !u.is_empty())
        && want != uid
    {
        let why = format!(
            "the UID in the bound object reference ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        );
        return Err(ApiError::conflict("", &kind, &name, &why));
    }
    Ok(Bound { kind, name, uid })
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the requester do this? (201)
pub(super) fn self_subject_access_review(server: &Server, user: &User, body: Value) -> ApiResult<Response> {
    let review: SelfSubjectAccessReview = decode("SelfSubjectAccessReview", body)?;
    let attrs = review_attributes(&review)?;
    let decision = authz::authorize(&server.store.lock(), user, &attrs);
    let mut out = serde_json::to_value(&review).map_err(|e| ApiError::internal(e.to_string()))?;
    out["kind"] = json!("SelfSubjectAccessReview");
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["metadata"] = json!({"creationTimestamp": null});
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    out["status"] = status;
    Ok(json_response(StatusCode::CREATED, &out, &[]))
}

/// The attributes a review asks about; 422 unless exactly one kind of attributes is given.
fn review_attributes(review: &SelfSubjectAccessReview) -> ApiResult<Attributes> {
    let spec = &review.spec;
    let invalid = |field: &str, detail: &str| {
        let errs = [StatusCause::invalid(field, &Value::Null, detail)];
        ApiError::invalid("authorization.k8s.io", "SelfSubjectAccessReview", "", &errs)
    };
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(_), Some(_)) => Err(invalid(
            "spec.nonResourceAttributes",
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(r), None) => Ok(Attributes {
            verb: r.verb.clone().unwrap_or_default(),
            resource_request: true,
            group: r.group.clone().unwrap_or_default(),
            resource: r.resource.clone().unwrap_or_default(),
            subresource: r.subresource.clone().unwrap_or_default(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name: r.name.clone().unwrap_or_default(),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes {
            verb: n.verb.clone().unwrap_or_default(),
            path: n.path.clone().unwrap_or_default(),
            ..Default::default()
        }),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`: what may the requester do in a
/// namespace? (`kubectl auth can-i --list`; 201)
pub(super) fn self_subject_rules_review(server: &Server, user: &User, body: Value) -> ApiResult<Response> {
    let namespace = body["spec"]["namespace"].as_str().unwrap_or_default().to_string();
    let (rules, errors) = authz::rules(&server.store.lock(), user, &namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        let list = |field: &str| rule.get(field).cloned().unwrap_or_else(|| json!([]));
        if rule["resources"].as_array().is_some_and(|r| !r.is_empty()) {
            let mut r = json!({"verbs": list("verbs"), "apiGroups": list("apiGroups"), "resources": list("resources")});
            if rule["resourceNames"].as_array().is_some_and(|n| !n.is_empty()) {
                r["resourceNames"] = list("resourceNames");
            }
            resource_rules.push(r);
        }
        if rule["nonResourceURLs"].as_array().is_some_and(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": list("verbs"), "nonResourceURLs": list("nonResourceURLs")}));
        }
    }
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty()});
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    let out = json!({"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "spec": {"namespace": namespace}, "status": status});
    Ok(json_response(StatusCode::CREATED, &out, &[]))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who am I? (201)
pub(super) fn self_subject_review(user: &User) -> Response {
    let out = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": ids::now()}, "status": {"userInfo": user.to_json()}});
    json_response(StatusCode::CREATED, &out, &[])
}
