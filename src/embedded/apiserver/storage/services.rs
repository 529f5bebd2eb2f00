//! Service IPs and ports as kube-apiserver allocates them, and the `kubernetes` Service every
//! cluster has: ClusterIPs come from the service CIDR 10.96.0.0/12 (a requested one must lie in
//! it and be free; dynamic ones are picked at random above the range's first 256 addresses, which
//! stay for static requests, as kube-apiserver's allocator does), node ports from 30000-32767. The
//! first address, 10.96.0.1, is the `kubernetes` Service's, whose Endpoints and EndpointSlice name
//! the API server's own address. Nothing routes to these addresses: there is no proxy.
use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::ops::{self, WriteOpts};
use crate::embedded::apiserver::storage::store::State;

/// kube-apiserver's default `--service-cluster-ip-range`, 10.96.0.0/12.
const BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SIZE: u32 = 1 << 20;
/// Addresses kept for static requests (`min(max(16, size/16), 256)`).
const STATIC_BAND: u32 = 256;
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn services_key() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "services".into(),
    }
}

/// The ClusterIPs and node ports of the Services other than `svc`.
fn in_use(st: &State, svc: &Value) -> (Vec<String>, Vec<i64>) {
    let mut ips = Vec::new();
    let mut ports = Vec::new();
    let me = (&svc["metadata"]["namespace"], &svc["metadata"]["name"]);
    for other in st.list(&services_key(), None) {
        if (&other["metadata"]["namespace"], &other["metadata"]["name"]) == me {
            continue;
        }
        ips.extend(
            other["spec"]["clusterIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|ip| ip.as_str().map(str::to_string)),
        );
        ports.extend(
            other["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["nodePort"].as_i64()),
        );
    }
    (ips, ports)
}

fn random_u32() -> u32 {
    let b = ids::random_bytes(4);
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Gives a Service its ClusterIP (unless ExternalName or headless) and its node ports
/// (NodePort and LoadBalancer) where it has none yet — on create, or on an update that changes
/// its type; 422 for a requested IP outside the range or taken by another Service.
pub(crate) fn allocate(st: &State, svc: &mut Value) -> ApiResult<()> {
    let name = svc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    let (ips, ports) = in_use(st, svc);
    let requested = svc["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
    if kind != "ExternalName" && requested != "None" {
        let ip = if requested.is_empty() {
            pick_ip(&ips).ok_or_else(|| full(&name))?
        } else {
            check_requested(&name, &requested, &ips)?;
            requested
        };
        svc["spec"]["clusterIP"] = json!(ip);
        svc["spec"]["clusterIPs"] = json!([ip]);
    } else if requested == "None" {
        svc["spec"]["clusterIPs"] = json!(["None"]);
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        let mut taken = ports;
        let ports = svc["spec"].get_mut("ports").and_then(Value::as_array_mut);
        for port in ports.into_iter().flatten() {
            if port["nodePort"].as_i64().unwrap_or(0) == 0 {
                let free = NODE_PORTS
                    .map(i64::from)
                    .find(|p| !taken.contains(p))
                    .ok_or_else(|| full(&name))?;
                port["nodePort"] = json!(free);
            }
            taken.extend(port["nodePort"].as_i64());
        }
    }
    Ok(())
}

fn full(name: &str) -> ApiError {
    ApiError::internal(format!(
        "failed to allocate a serviceIP for Service {name}: range is full"
    ))
}

/// A free address above the static band, from a random start.
fn pick_ip(used: &[String]) -> Option<String> {
    let span = SIZE - STATIC_BAND - 2;
    let start = random_u32() % span;
    (0..span)
        .map(|i| BASE + STATIC_BAND + 1 + (start + i) % span)
        .map(|n| Ipv4Addr::from(n).to_string())
        .find(|ip| !used.contains(ip))
}

fn check_requested(name: &str, ip: &str, used: &[String]) -> ApiResult<()> {
    let invalid = |why: String| {
        let errs = [StatusCause::invalid_rendered(
            "spec.clusterIPs",
            &json!([ip]).to_string(),
            &why,
        )];
        ApiError::invalid("", "Service", name, &errs)
    };
    let inside = ip
        .parse::<Ipv4Addr>()
        .is_ok_and(|a| (BASE..BASE + SIZE).contains(&u32::from(a)));
    if !inside {
        return Err(invalid(format!(
            "failed to allocate IP {ip}: the provided network does not match the current range"
        )));
    }
    if used.iter().any(|u| u == ip) {
        return Err(invalid(format!(
            "failed to allocate IP {ip}: provided IP is already allocated"
        )));
    }
    Ok(())
}

/// The `kubernetes` Service in `default` (443/https → the API server's port, ClusterIP
/// 10.96.0.1), with its Endpoints and EndpointSlice naming the server's address, as the
/// kube-apiserver's bootstrap controller keeps them.
pub(crate) fn bootstrap_kubernetes(st: &mut State, addr: SocketAddr) -> ApiResult<()> {
    let opts = WriteOpts {
        manager: "kube-apiserver".into(),
        ..Default::default()
    };
    let port = addr.port();
    let ip = addr.ip().to_string();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let objects = [
        (
            "",
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
                "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP", "sessionAffinity": "None",
                    "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}]}}),
        ),
        (
            "",
            "endpoints",
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
        ),
        (
            "discovery.k8s.io",
            "endpointslices",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        ),
    ];
    for (group, plural, obj) in objects {
        let rt = st
            .find_type(group, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("no {plural} type")))?;
        ops::create(st, &rt, Some("default"), obj, &opts)?;
    }
    Ok(())
}
