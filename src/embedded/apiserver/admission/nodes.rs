//! Nodes: the basic rules of `ValidateNode` (pod CIDRs, taint effects), with kube-apiserver's
//! field paths and messages. `spec.podCIDR` is mirrored into `spec.podCIDRs`, as the Node
//! strategy does.
use serde_json::{Value, json};

use crate::embedded::apiserver::error::StatusCause;

/// Mirrors `spec.podCIDR` into an absent `spec.podCIDRs`; an absent spec is `{}`, as Go writes it.
pub(crate) fn prepare(obj: &mut Value) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if let Some(cidr) = spec["podCIDR"].as_str().filter(|c| !c.is_empty()).map(str::to_string)
        && spec["podCIDRs"].as_array().is_none_or(Vec::is_empty)
    {
        spec["podCIDRs"] = json!([cidr]);
    }
}

/// `ValidateNode`'s spec rules.
pub(crate) fn validate(obj: &Value) -> Vec<StatusCause> {
    let spec = &obj["spec"];
    let mut errs = Vec::new();
    for (i, cidr) in spec["podCIDRs"].as_array().into_iter().flatten().enumerate() {
        if !cidr.as_str().is_some_and(valid_cidr) {
            errs.push(StatusCause::invalid(
                &format!("spec.podCIDRs[{i}]"),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    let effects = ["NoExecute", "NoSchedule", "PreferNoSchedule"];
    for (i, taint) in spec["taints"].as_array().into_iter().flatten().enumerate() {
        let path = format!("spec.taints[{i}]");
        if taint["key"].as_str().is_none_or(str::is_empty) {
            errs.push(StatusCause::required(&format!("{path}.key"), ""));
        }
        match taint["effect"].as_str() {
            None | Some("") => errs.push(StatusCause::required(&format!("{path}.effect"), "")),
            Some(e) if !effects.contains(&e) => errs.push(StatusCause::not_supported(
                &format!("{path}.effect"),
                &taint["effect"],
                &effects.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            )),
            Some(_) => {}
        }
    }
    errs
}

fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
        _ => false,
    }
}
