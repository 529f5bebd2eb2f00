//! Services, Endpoints and EndpointSlices: the Service strategy's defaults and the basic rules of
//! `ValidateService`, `ValidateEndpoints` and `ValidateEndpointSlice` (ports, protocols, types,
//! addresses), with kube-apiserver's field paths and messages. ClusterIPs and node ports are
//! allocated by the storage layer (`storage::services`), which sees the other Services.
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names;
use crate::embedded::apiserver::error::StatusCause;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// The Service defaults (`SetDefaults_Service` and the strategy): type, session affinity,
/// port protocols and target ports, IP families, traffic policy, an empty load-balancer status.
/// On update the allocated ClusterIPs are kept when the new object leaves them out.
pub(crate) fn prepare_service(obj: &mut Value, old: Option<&Value>) {
    let spec = &mut obj["spec"];
    if spec["type"].as_str().is_none_or(str::is_empty) {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].as_str().is_none_or(str::is_empty) {
        spec["sessionAffinity"] = json!("None");
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if port["protocol"].as_str().is_none_or(str::is_empty) {
            port["protocol"] = json!("TCP");
        }
        if port["targetPort"].is_null() || port["targetPort"] == json!(0) || port["targetPort"] == json!("") {
            port["targetPort"] = port["port"].clone();
        }
    }
    let external = spec["type"] == json!("ExternalName");
    let exposed = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    if exposed && spec["externalTrafficPolicy"].as_str().is_none_or(str::is_empty) {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if !external {
        if spec["internalTrafficPolicy"].as_str().is_none_or(str::is_empty) {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        if spec["ipFamilies"].as_array().is_none_or(Vec::is_empty) {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec["ipFamilyPolicy"].as_str().is_none_or(str::is_empty) {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if let Some(old) = old
        && spec["clusterIP"].as_str().is_none_or(str::is_empty)
    {
        spec["clusterIP"] = old["spec"]["clusterIP"].clone();
        spec["clusterIPs"] = old["spec"]["clusterIPs"].clone();
    }
    if let Some(ip) = spec["clusterIP"].as_str().filter(|ip| !ip.is_empty())
        && spec["clusterIPs"].as_array().is_none_or(Vec::is_empty)
    {
        spec["clusterIPs"] = json!([ip]);
    }
    if obj["status"].is_null() || old.is_none() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

/// `ValidateService` (its common rules) and, on update, `ValidateServiceUpdate`'s ClusterIP rule.
pub(crate) fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let spec = &obj["spec"];
    let mut errs = Vec::new();
    let kind = spec["type"].as_str().unwrap_or_default();
    if !SERVICE_TYPES.contains(&kind) {
        errs.push(StatusCause::not_supported(
            "spec.type",
            &spec["type"],
            &strings(&SERVICE_TYPES),
        ));
    }
    let headless = spec["clusterIP"] == json!("None");
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errs.push(StatusCause::required("spec.ports", ""));
    }
    if kind == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
        errs.push(StatusCause::required("spec.externalName", ""));
    }
    let mut seen = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(service_port(
            port,
            &format!("spec.ports[{i}]"),
            ports.len() > 1,
            &mut seen,
        ));
    }
    let affinity = &spec["sessionAffinity"];
    if !matches!(affinity.as_str(), Some("ClientIP" | "None")) {
        errs.push(StatusCause::not_supported(
            "spec.sessionAffinity",
            affinity,
            &strings(&["ClientIP", "None"]),
        ));
    }
    if let Some(old) = old {
        let (was, now) = (&old["spec"]["clusterIPs"], &spec["clusterIPs"]);
        if was.as_array().is_some_and(|a| !a.is_empty()) && was != now {
            errs.push(StatusCause::invalid_rendered(
                "spec.clusterIPs[0]",
                &now.to_string(),
                "may not change once set",
            ));
        }
    }
    errs
}

fn service_port(port: &Value, path: &str, named: bool, seen: &mut Vec<String>) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let name = port["name"].as_str().unwrap_or_default();
    if named && name.is_empty() {
        errs.push(StatusCause::required(&format!("{path}.name"), ""));
    } else if !name.is_empty() {
        for e in names::dns1123_label(name) {
            errs.push(StatusCause::invalid(&format!("{path}.name"), &json!(name), &e));
        }
        if seen.iter().any(|s| s == name) {
            errs.push(StatusCause::duplicate(&format!("{path}.name"), &json!(name)));
        }
        seen.push(name.to_string());
    }
    errs.extend(port_number(&port["port"], &format!("{path}.port")));
    errs.extend(protocol(&port["protocol"], &format!("{path}.protocol")));
    if port["targetPort"].is_number() {
        errs.extend(port_number(&port["targetPort"], &format!("{path}.targetPort")));
    }
    errs
}

/// A port number in 1..=65535.
fn port_number(v: &Value, path: &str) -> Option<StatusCause> {
    let n = v.as_i64().unwrap_or(0);
    (!(1..=65535).contains(&n)).then(|| StatusCause::invalid(path, &json!(n), "must be between 1 and 65535, inclusive"))
}

fn protocol(v: &Value, path: &str) -> Option<StatusCause> {
    match v.as_str() {
        Some(p) if PROTOCOLS.contains(&p) => None,
        None => Some(StatusCause::required(path, "")),
        Some(_) => Some(StatusCause::not_supported(path, v, &strings(&PROTOCOLS))),
    }
}

/// An Endpoints address: kube-apiserver reports an invalid one twice (`IsValidIP`, then
/// `ValidateEndpointIP`'s own parse).
fn ip_errors(v: &Value, path: &str) -> Vec<StatusCause> {
    if v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()) {
        return Vec::new();
    }
    vec![
        StatusCause::invalid(path, v, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        StatusCause::invalid(path, v, "must be a valid IP address"),
    ]
}

/// Endpoints: each address a valid IP, each port in range with a supported protocol.
pub(crate) fn validate_endpoints(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    for (i, subset) in obj["subsets"].as_array().into_iter().flatten().enumerate() {
        for field in ["addresses", "notReadyAddresses"] {
            for (j, a) in subset[field].as_array().into_iter().flatten().enumerate() {
                errs.extend(ip_errors(&a["ip"], &format!("subsets[{i}].{field}[{j}].ip")));
            }
        }
        for (j, p) in subset["ports"].as_array().into_iter().flatten().enumerate() {
            errs.extend(port_number(&p["port"], &format!("subsets[{i}].ports[{j}].port")));
            errs.extend(protocol(&p["protocol"], &format!("subsets[{i}].ports[{j}].protocol")));
        }
    }
    errs
}

/// Endpoints ports default to TCP.
pub(crate) fn prepare_endpoints(obj: &mut Value) {
    for subset in obj
        .get_mut("subsets")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for p in subset
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if p["protocol"].as_str().is_none_or(str::is_empty) {
                p["protocol"] = json!("TCP");
            }
        }
    }
}

/// EndpointSlices: a supported `addressType` and at least one address per endpoint.
pub(crate) fn validate_endpoint_slice(obj: &Value) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let types = ["FQDN", "IPv4", "IPv6"];
    match obj["addressType"].as_str() {
        None | Some("") => errs.push(StatusCause::required("addressType", "")),
        Some(t) if !types.contains(&t) => errs.push(StatusCause::not_supported(
            "addressType",
            &obj["addressType"],
            &strings(&types),
        )),
        Some(_) => {}
    }
    for (i, e) in obj["endpoints"].as_array().into_iter().flatten().enumerate() {
        if e["addresses"].as_array().is_none_or(Vec::is_empty) {
            errs.push(StatusCause::required(&format!("endpoints[{i}].addresses"), ""));
        }
    }
    for (i, p) in obj["ports"].as_array().into_iter().flatten().enumerate() {
        if !p["port"].is_null() {
            errs.extend(port_number(&p["port"], &format!("ports[{i}].port")));
        }
    }
    errs
}
