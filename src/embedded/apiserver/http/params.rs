//! Query parameters of the REST API, read the way apimachinery's parameter codec reads them: a
//! value that does not convert is a 400, never silently the default.
use std::collections::HashMap;
use std::str::FromStr;

use serde_json::json;

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};

/// Query parameters (last value wins, as in Go's `url.Values.Get`).
pub(super) type Query = HashMap<String, String>;

/// Decodes the query string into a map.
pub(super) fn parse(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// An integer parameter (`limit`, `timeoutSeconds`, `tailLines`, ...): `None` when absent or
/// empty, 400 when it is not an integer of the expected range.
pub(super) fn int<T: FromStr>(query: &Query, key: &str) -> ApiResult<Option<T>> {
    match query.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key}: invalid value {v:?}: not an integer"))),
    }
}

/// `resourceVersion`: `None` when absent or empty ("most recent"), else its number (`0`: "any").
/// Versions are opaque to clients but this server only ever hands out numbers, so anything else
/// cannot have come from it: 400.
pub(super) fn resource_version(query: &Query) -> ApiResult<Option<u64>> {
    match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}"))),
    }
}

/// `dryRun`: only `All` exists; anything else is a 422 on the verb's options (`CreateOptions`,
/// `UpdateOptions`, `PatchOptions`, `DeleteOptions`), as `ValidateDryRun` reports it.
pub(super) fn dry_run(query: &Query, options: &str) -> ApiResult<bool> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => {
            let errs = [StatusCause::not_supported("dryRun", &json!([other]), &["All".into()])];
            Err(ApiError::invalid("meta.k8s.io", options, "", &errs))
        }
    }
}

/// `ValidateListOptions`: what `resourceVersionMatch` and `sendInitialEvents` may be combined
/// with on a list or a watch; 422 with kube-apiserver's causes.
pub(super) fn list_options(query: &Query, watch: bool) -> ApiResult<()> {
    let get = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let matching = get("resourceVersionMatch");
    let initial = query.contains_key("sendInitialEvents");
    let continued = get("continue").is_some();
    let field = "resourceVersionMatch";
    let mut errs = Vec::new();
    if watch {
        if initial && matching != Some("NotOlderThan") {
            errs.push(StatusCause::forbidden(
                field,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = matching {
            if !initial {
                errs.push(StatusCause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != "NotOlderThan" {
                errs.push(StatusCause::not_supported(field, &json!(m), &["NotOlderThan".into()]));
            }
            if continued {
                errs.push(StatusCause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if let Some(m) = matching {
            let rv = get("resourceVersion");
            if rv.is_none() {
                errs.push(StatusCause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if continued {
                errs.push(StatusCause::forbidden(
                    field,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != "NotOlderThan" {
                let supported = ["Exact".into(), "NotOlderThan".into(), String::new()];
                errs.push(StatusCause::not_supported(field, &json!(m), &supported));
            }
            if m == "Exact" && rv == Some("0") {
                errs.push(StatusCause::forbidden(
                    field,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if initial {
            errs.push(StatusCause::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs))
    }
}

/// A boolean parameter that is on (`true` or `1`).
pub(super) fn flag(query: &Query, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("true" | "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_numbers_are_bad_requests() {
        let q = parse(Some("limit=abc&tailLines=-3&resourceVersion=x1&timeoutSeconds="));
        assert_eq!(int::<usize>(&q, "limit").unwrap_err().code, 400);
        assert_eq!(int::<i64>(&q, "tailLines").unwrap(), Some(-3));
        assert_eq!(int::<u64>(&q, "timeoutSeconds").unwrap(), None);
        assert_eq!(resource_version(&q).unwrap_err().code, 400);
        assert_eq!(resource_version(&parse(Some("resourceVersion=0"))).unwrap(), Some(0));
        assert_eq!(
            dry_run(&parse(Some("dryRun=Some")), "CreateOptions").unwrap_err().code,
            422
        );
    }
}
