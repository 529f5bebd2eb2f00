//! Request-body decoding for every layer, within [`crate::input`]'s limits: the size and nesting
//! depth are checked before serde sees the bytes (serde_yaml is quadratic on deep nesting), and
//! objects that patches produce are held to the same depth.
//!
//! Deviation: kube-apiserver's decoders accept 10 000 levels; here 100 (serde's own limit is 128),
//! which real objects are far from.
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::input::{self, Limits};

/// Decodes a JSON body; a refusal is a 400 `"{what}: {why}"`.
pub(crate) fn json<T: DeserializeOwned>(body: &[u8], what: &str) -> ApiResult<T> {
    input::from_json(body, Limits::REQUEST).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// Decodes a YAML body into JSON; a refusal is a 400 `"{what}: {why}"`.
pub(crate) fn yaml(body: &[u8], what: &str) -> ApiResult<Value> {
    let value: serde_yaml::Value =
        input::from_yaml(body, Limits::REQUEST).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
    serde_json::to_value(value).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// 413 as kube-apiserver words it: `Request entity too large: {message}`.
pub(crate) fn entity_too_large(message: &str) -> ApiError {
    let mut err = ApiError::bad_request(format!("Request entity too large: {message}"));
    err.code = 413;
    err.reason = "RequestEntityTooLarge";
    err
}

/// 422 when an object a write produced (a JSON patch can nest values ever deeper) passes the depth limit.
pub(crate) fn check_depth(object: &Value) -> ApiResult<()> {
    if input::value_depth(object) <= input::MAX_DEPTH {
        return Ok(());
    }
    let mut err = ApiError::bad_request(format!(
        "the patched object is nested deeper than the limit of {} levels",
        input::MAX_DEPTH
    ));
    err.code = 422;
    err.reason = "Invalid";
    Err(err)
}
