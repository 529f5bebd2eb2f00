//! Authentication: who a request comes from. The admin bearer token (the kubeconfig's) is the
//! cluster administrator, in group `system:masters`; a ServiceAccount token (see
//! [`tokens`](crate::embedded::apiserver::tokens)) is `system:serviceaccount:NS:NAME` while its
//! ServiceAccount (and bound object) still exist with the uids it names; a request without a
//! bearer token is anonymous; anything else is 401.
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::http::context::Server;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::serviceaccounts;
use crate::embedded::apiserver::storage::store::State;
use crate::embedded::apiserver::tokens;

/// The group whose members every request is allowed (kube-apiserver's privileged group).
pub(crate) const MASTERS: &str = "system:masters";

/// An authenticated (or anonymous) user, as `user.Info`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    /// `system:admin`, `system:serviceaccount:NS:NAME`, `system:anonymous`.
    pub name: String,
    /// The ServiceAccount's uid, when it is one.
    pub uid: String,
    /// Groups, `system:authenticated` included for authenticated users.
    pub groups: Vec<String>,
    /// `user.Info` extra values (a token's credential id, the Pod it is bound to).
    pub extra: Value,
}

impl User {
    /// The holder of the admin token.
    pub(crate) fn admin() -> Self {
        User {
            name: "system:admin".into(),
            uid: String::new(),
            groups: vec![MASTERS.into(), "system:authenticated".into()],
            extra: json!({}),
        }
    }

    /// A request without credentials.
    pub(crate) fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: json!({}),
        }
    }

    /// Whether the user is anonymous.
    pub(crate) fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    /// Whether the user is in `system:masters` (every request allowed).
    pub(crate) fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// `user.Info` as the `userInfo` of a SelfSubjectReview.
    pub(crate) fn to_json(&self) -> Value {
        let mut info = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
        }
        if self.extra.as_object().is_some_and(|m| !m.is_empty()) {
            info["extra"] = self.extra.clone();
        }
        info
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who sent the request; 401 for a bearer token that is neither the admin token nor a valid
/// ServiceAccount token.
pub(super) fn authenticate(server: &Server, headers: &HeaderMap) -> ApiResult<User> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(given) = header.and_then(bearer) else {
        return Ok(User::anonymous());
    };
    // Constant-time comparison: the token is a credential.
    let (a, b) = (given.as_bytes(), server.token.as_bytes());
    if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
        return Ok(User::admin());
    }
    let claims = server.signer.verify(given).ok_or_else(ApiError::unauthorized)?;
    let now = jiff::Timestamp::now().as_second();
    if !tokens::valid_at(&claims, now) {
        return Err(ApiError::unauthorized());
    }
    service_account_user(&server.store.lock(), &claims).ok_or_else(ApiError::unauthorized)
}

/// The user of a token's claims, if its ServiceAccount and bound object still exist as named.
fn service_account_user(st: &State, claims: &Value) -> Option<User> {
    let private = &claims["kubernetes.io"];
    let ns = private["namespace"].as_str()?;
    let name = private["serviceaccount"]["name"].as_str()?;
    let uid = private["serviceaccount"]["uid"].as_str()?;
    let sa = serviceaccounts::get(st, ns, name)?;
    if sa["metadata"]["uid"] != uid || deleted_long_ago(sa) {
        return None;
    }
    if claims["sub"] != format!("system:serviceaccount:{ns}:{name}").as_str() {
        return None;
    }
    let mut extra = json!({});
    if let Some(jti) = claims["jti"].as_str() {
        extra["authentication.kubernetes.io/credential-id"] = json!([format!("JTI={jti}")]);
    }
    for (kind, resource) in [("pod", "pods"), ("secret", "secrets")] {
        let bound = &private[kind];
        if bound.is_null() {
            continue;
        }
        let key = StorageKey {
            group: String::new(),
            resource: resource.into(),
        };
        let obj = st.get(&key, ns, bound["name"].as_str()?)?;
        if obj["metadata"]["uid"] != bound["uid"] || deleted_long_ago(obj) {
            return None;
        }
        if kind == "pod" {
            extra["authentication.kubernetes.io/pod-name"] = json!([bound["name"]]);
            extra["authentication.kubernetes.io/pod-uid"] = json!([bound["uid"]]);
        }
    }
    Some(User {
        name: format!("system:serviceaccount:{ns}:{name}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
        extra,
    })
}

/// Whether an object's deletion is due more than the validator's leeway (60s) ago: kube keeps a
/// token valid while its ServiceAccount or Pod terminates gracefully.
fn deleted_long_ago(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(crate::embedded::apiserver::ids::parse_time)
        .is_some_and(|t| t.as_second() < jiff::Timestamp::now().as_second() - 60)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic YTpi"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
