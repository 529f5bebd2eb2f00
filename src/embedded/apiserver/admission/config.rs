//! ConfigMaps and Secrets: key names, the 1 MiB data limit, Secret types and their required keys,
//! `immutable`, as `ValidateConfigMap`/`ValidateSecret` and their update forms state them.
use base64::Engine;
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names::config_key;
use crate::embedded::apiserver::error::StatusCause;

/// `core.MaxSecretSize`: the data of one ConfigMap or Secret.
const MAX_DATA: usize = 1024 * 1024;

fn keys(obj: &Value, field: &str) -> Vec<String> {
    obj[field]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The decoded size of a base64 value (Secret data, ConfigMap binaryData).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

fn key_errors(field: &str, key: &str) -> Vec<StatusCause> {
    config_key(key)
        .iter()
        .map(|msg| StatusCause::invalid(&format!("{field}[{key}]"), &json!(key), msg))
        .collect()
}

/// `ValidateConfigMap` (metadata aside).
pub(crate) fn validate_configmap(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let binary = keys(obj, "binaryData");
    let mut total = 0;
    for (key, value) in obj["data"].as_object().into_iter().flatten() {
        errs.extend(key_errors("data", key));
        if binary.contains(key) {
            errs.push(StatusCause::invalid(
                &format!("data[{key}]"),
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in obj["binaryData"].as_object().into_iter().flatten() {
        errs.extend(key_errors("binaryData", key));
        total += decoded_len(value);
    }
    if total > MAX_DATA {
        errs.push(StatusCause::too_long("", MAX_DATA as u64));
    }
    errs
}

/// The `immutable` rule of ConfigMap and Secret updates, over `fields`.
pub(crate) fn validate_immutable(obj: &Value, old: &Value, fields: &[&str]) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    if old["immutable"] != json!(true) {
        return errs;
    }
    let detail = "field is immutable when `immutable` is set";
    if obj["immutable"] != json!(true) {
        errs.push(StatusCause::forbidden("immutable", detail));
    }
    for f in fields {
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
        let same = obj[*f] == old[*f] || (empty(&obj[*f]) && empty(&old[*f]));
        if !same {
            errs.push(StatusCause::forbidden(f, detail));
        }
    }
    errs
}

/// `ValidateSecret` (metadata aside): keys, size, and the keys each Secret type requires.
pub(crate) fn validate_secret(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in obj["data"].as_object().into_iter().flatten() {
        errs.extend(key_errors("data", key));
        total += decoded_len(value);
    }
    if total > MAX_DATA {
        errs.push(StatusCause::too_long("data", MAX_DATA as u64));
    }
    let data = keys(obj, "data");
    let has = |k: &str| data.iter().any(|d| d == k);
    let required = |k: &str| StatusCause::required(&format!("data[{k}]"), "");
    match obj["type"].as_str().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let sa = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .as_str()
                .unwrap_or_default();
            if sa.is_empty() {
                errs.push(StatusCause::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => errs.push(required(".dockercfg")),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => errs.push(required(".dockerconfigjson")),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if decoded_len(&obj["data"]["ssh-privatekey"]) == 0 => {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(required(k));
                }
            }
        }
        _ => {}
    }
    errs
}
