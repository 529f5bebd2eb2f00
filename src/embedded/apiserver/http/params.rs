//! Query parameters of the REST API, read the way apimachinery's parameter codec reads them: a
//! value that does not convert is a 400, never silently the default.
use std::collections::HashMap;
use std::str::FromStr;

use crate::embedded::apiserver::error::{ApiError, ApiResult};

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

/// `dryRun`: only `All` exists.
pub(super) fn dry_run(query: &Query) -> ApiResult<bool> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}; supported values: \"All\""
        ))),
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
        assert_eq!(dry_run(&parse(Some("dryRun=Some"))).unwrap_err().code, 400);
    }
}
