//! Leases (coordination.k8s.io/v1): `ValidateLeaseSpec`, and the fields a disabled feature gate
//! clears (`strategy` and `preferredHolder` belong to CoordinatedLeaderElection, off by default).
use serde_json::{Value, json};

use crate::embedded::apiserver::error::StatusCause;

/// Clears `strategy` and `preferredHolder` unless the stored Lease already had them.
pub(crate) fn prepare(obj: &mut Value, old: Option<&Value>) {
    for field in ["strategy", "preferredHolder"] {
        let had = old.is_some_and(|o| !o["spec"][field].is_null());
        if !had && let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove(field);
        }
    }
}

/// `ValidateLeaseSpec`.
pub(crate) fn validate(obj: &Value) -> Vec<StatusCause> {
    let spec = &obj["spec"];
    let mut errs = Vec::new();
    if let Some(d) = spec["leaseDurationSeconds"].as_i64()
        && d <= 0
    {
        errs.push(StatusCause::invalid(
            "spec.leaseDurationSeconds",
            &json!(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec["leaseTransitions"].as_i64()
        && t < 0
    {
        errs.push(StatusCause::invalid(
            "spec.leaseTransitions",
            &json!(t),
            "must be greater than or equal to 0",
        ));
    }
    let strategy = spec["strategy"].as_str().unwrap_or_default();
    if spec["strategy"].is_string() && strategy != "OldestEmulationVersion" {
        errs.push(StatusCause::not_supported(
            "spec.strategy",
            &spec["strategy"],
            &["OldestEmulationVersion".into()],
        ));
    }
    if spec["preferredHolder"].as_str().is_some_and(|h| !h.is_empty()) && strategy.is_empty() {
        errs.push(StatusCause::forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}
