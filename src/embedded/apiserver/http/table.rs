//! Server-side printing: `meta.k8s.io/v1` Table responses for `kubectl get`, with the columns of
//! the built-in printers and of a CRD's `additionalPrinterColumns`.
use serde_json::{Value, json};

use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::ids::age;
use crate::embedded::apiserver::resources::ResourceType;

/// What each row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Include {
    /// No object.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The full object.
    Object,
}

impl Include {
    /// Parses the `includeObject` parameter.
    pub(super) fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn col(name: &str, kind: &str, priority: i64, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    if let Some(custom) = &rt.custom {
        let mut cols = vec![col("Name", "string", 0, NAME_DESC)];
        for c in &custom.printer_columns {
            cols.push(json!({
                "name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or_default(),
                "description": c["description"].as_str().unwrap_or_default(), "priority": c["priority"].as_i64().unwrap_or(0),
            }));
        }
        return cols;
    }
    let c = |n: &str, t: &str, p: i64| {
        col(
            n,
            t,
            p,
            if n == "Name" {
                NAME_DESC
            } else if n == "Age" {
                AGE_DESC
            } else {
                ""
            },
        )
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => vec![
            c("Name", "string", 0),
            c("Ready", "string", 0),
            c("Status", "string", 0),
            c("Restarts", "string", 0),
            c("Age", "string", 0),
            c("IP", "string", 1),
            c("Node", "string", 1),
            c("Nominated Node", "string", 1),
            c("Readiness Gates", "string", 1),
        ],
        ("", "namespaces") => vec![c("Name", "string", 0), c("Status", "string", 0), c("Age", "string", 0)],
        ("", "secrets") => vec![
            c("Name", "string", 0),
            c("Type", "string", 0),
            c("Data", "string", 0),
            c("Age", "string", 0),
        ],
        ("", "configmaps") => vec![c("Name", "string", 0), c("Data", "string", 0), c("Age", "string", 0)],
        ("", "serviceaccounts") => vec![c("Name", "string", 0), c("Secrets", "string", 0), c("Age", "string", 0)],
        (_, "events") => vec![
            c("Last Seen", "string", 0),
            c("Type", "string", 0),
            c("Reason", "string", 0),
            c("Object", "string", 0),
            c("Subobject", "string", 1),
            c("Source", "string", 1),
            c("Message", "string", 0),
            c("First Seen", "string", 1),
            c("Count", "string", 1),
            c("Name", "string", 1),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![c("Name", "string", 0), c("Holder", "string", 0), c("Age", "string", 0)]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => vec![
            c("Name", "string", 0),
            c("Role", "string", 0),
            c("Age", "string", 0),
            c("Users", "string", 1),
            c("Groups", "string", 1),
            c("ServiceAccounts", "string", 1),
        ],
        ("", "nodes") => vec![
            c("Name", "string", 0),
            c("Status", "string", 0),
            c("Roles", "string", 0),
            c("Age", "string", 0),
            c("Version", "string", 0),
            c("Internal-IP", "string", 1),
            c("External-IP", "string", 1),
            c("OS-Image", "string", 1),
            c("Kernel-Version", "string", 1),
            c("Container-Runtime", "string", 1),
        ],
        ("", "services") => vec![
            c("Name", "string", 0),
            c("Type", "string", 0),
            c("Cluster-IP", "string", 0),
            c("External-IP", "string", 0),
            c("Port(s)", "string", 0),
            c("Age", "string", 0),
            c("Selector", "string", 1),
        ],
        ("", "endpoints") => vec![
            c("Name", "string", 0),
            c("Endpoints", "string", 0),
            c("Age", "string", 0),
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            c("Name", "string", 0),
            c("AddressType", "string", 0),
            c("Ports", "string", 0),
            c("Endpoints", "string", 0),
            c("Age", "string", 0),
        ],
        ("apiregistration.k8s.io", "apiservices") => vec![
            c("Name", "string", 0),
            c("Service", "string", 0),
            c("Available", "string", 0),
            c("Age", "string", 0),
        ],
        _ => vec![c("Name", "string", 0), col("Created At", "date", 0, AGE_DESC)],
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn or_none(v: &Value) -> String {
    match v.as_str() {
        Some(x) if !x.is_empty() => x.to_string(),
        _ => "<none>".to_string(),
    }
}

fn created(obj: &Value) -> String {
    age(obj["metadata"]["creationTimestamp"].as_str())
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = json!(s(&obj["metadata"]["name"]));
    if let Some(custom) = &rt.custom {
        let mut out = vec![name];
        for c in &custom.printer_columns {
            let path = c["jsonPath"].as_str().unwrap_or_default();
            let found = jsonpath(obj, path);
            out.push(match found.first() {
                None => Value::Null,
                Some(v) => cell_for(c["type"].as_str().unwrap_or("string"), v),
            });
        }
        return out;
    }
    let count = |v: &Value| v.as_object().map(|m| m.len()).unwrap_or(0);
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => pod_cells(obj),
        ("", "namespaces") => vec![name, json!(s(&obj["status"]["phase"])), json!(created(obj))],
        ("", "secrets") => vec![
            name,
            json!(s(&obj["type"])),
            json!(count(&obj["data"])),
            json!(created(obj)),
        ],
        ("", "configmaps") => vec![
            name,
            json!(count(&obj["data"]) + count(&obj["binaryData"])),
            json!(created(obj)),
        ],
        ("", "serviceaccounts") => vec![
            name,
            json!(obj["secrets"].as_array().map(Vec::len).unwrap_or(0)),
            json!(created(obj)),
        ],
        (_, "events") => event_cells(obj),
        ("coordination.k8s.io", "leases") => vec![
            name,
            json!(or_none(&obj["spec"]["holderIdentity"])),
            json!(created(obj)),
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => binding_cells(obj),
        ("", "nodes") => node_cells(obj),
        ("", "services") => service_cells(obj),
        ("", "endpoints") => vec![name, json!(endpoints_text(obj)), json!(created(obj))],
        ("discovery.k8s.io", "endpointslices") => slice_cells(obj),
        ("apiregistration.k8s.io", "apiservices") => apiservice_cells(obj),
        _ => vec![name, obj["metadata"]["creationTimestamp"].clone()],
    }
}

/// kubectl's node printer: Ready/NotReady/Unknown (`,SchedulingDisabled` when cordoned), roles
/// from `node-role.kubernetes.io/*` labels, addresses and node info.
fn node_cells(node: &Value) -> Vec<Value> {
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == json!("Ready"));
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node["spec"]["unschedulable"] == json!(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == json!(kind))
            .map(|a| s(&a["address"]))
            .unwrap_or_else(|| "<none>".into())
    };
    let info = &node["status"]["nodeInfo"];
    vec![
        json!(s(&node["metadata"]["name"])),
        json!(status),
        json!(roles),
        json!(created(node)),
        json!(s(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_none(&info["osImage"])),
        json!(or_none(&info["kernelVersion"])),
        json!(or_none(&info["containerRuntimeVersion"])),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(node_port) => format!("{}:{node_port}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    let external = match spec["type"].as_str() {
        Some("ExternalName") => s(&spec["externalName"]),
        Some("LoadBalancer") => "<pending>".to_string(),
        _ => "<none>".to_string(),
    };
    let mut selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    selector.sort();
    let selector = if selector.is_empty() {
        "<none>".to_string()
    } else {
        selector.join(",")
    };
    vec![
        json!(s(&svc["metadata"]["name"])),
        json!(s(&spec["type"])),
        json!(or_none(&spec["clusterIP"])),
        json!(external),
        json!(ports),
        json!(created(svc)),
        json!(selector),
    ]
}

/// `ip:port` pairs of the ready addresses (at most three, then `+ N more...`).
fn endpoints_text(ep: &Value) -> String {
    let mut pairs = Vec::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for a in subset["addresses"].as_array().into_iter().flatten() {
            let ip = s(&a["ip"]);
            if ports.is_empty() {
                pairs.push(ip.clone());
            }
            pairs.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    listed(pairs)
}

fn listed(items: Vec<String>) -> String {
    match items.len() {
        0 => "<none>".to_string(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

fn slice_cells(slice: &Value) -> Vec<Value> {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
        .collect();
    let addresses: Vec<String> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| s(&a))
        .collect();
    vec![
        json!(s(&slice["metadata"]["name"])),
        json!(s(&slice["addressType"])),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(listed(addresses)),
        json!(created(slice)),
    ]
}

fn apiservice_cells(a: &Value) -> Vec<Value> {
    let service = match a["spec"]["service"].as_object() {
        Some(svc) => format!(
            "{}/{}",
            svc.get("namespace").and_then(Value::as_str).unwrap_or_default(),
            svc.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        None => "Local".to_string(),
    };
    let available = a["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == json!("Available"));
    let available = match available {
        Some(c) if c["status"] == json!("True") => "True".to_string(),
        Some(c) => format!("{} ({})", s(&c["status"]), s(&c["reason"])),
        None => "Unknown".to_string(),
    };
    vec![
        json!(s(&a["metadata"]["name"])),
        json!(service),
        json!(available),
        json!(created(a)),
    ]
}

/// apiextensions' `cellForJSONValue`: typed cells, dates as ages.
fn cell_for(kind: &str, v: &Value) -> Value {
    match kind {
        "integer" => v
            .as_i64()
            .map(Value::from)
            .or_else(|| v.as_f64().map(|f| json!(f as i64)))
            .unwrap_or(Value::Null),
        "number" => v.as_f64().map(Value::from).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(Value::from).unwrap_or(Value::Null),
        "date" => match v.as_str() {
            Some(t) if ids::parse_time(t).is_some() => json!(age(Some(t))),
            Some(_) => json!("<invalid>"),
            None => Value::Null,
        },
        _ => match v {
            Value::String(x) => json!(x),
            Value::Null => Value::Null,
            other => json!(other.to_string()),
        },
    }
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let status = &pod["status"];
    let total = pod["spec"]["containers"].as_array().map(Vec::len).unwrap_or(0);
    let mut ready = 0;
    let mut restarts = 0;
    let mut reason = s(&status["phase"]);
    if let Some(r) = status["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    let init_total = pod["spec"]["initContainers"].as_array().map(Vec::len).unwrap_or(0);
    let mut initializing = false;
    for (i, c) in status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let term = &c["state"]["terminated"];
        let wait_reason = c["state"]["waiting"]["reason"].as_str().unwrap_or_default();
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        } else if term.is_object() {
            reason = match term["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
            };
        } else if !wait_reason.is_empty() && wait_reason != "PodInitializing" {
            reason = format!("Init:{wait_reason}");
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        restarts = 0;
        let mut running = false;
        for c in status["containerStatuses"].as_array().into_iter().flatten().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let term = &c["state"]["terminated"];
            if let Some(w) = c["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = w.to_string();
            } else if let Some(r) = term["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if term.is_object() {
                reason = format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0));
            } else if c["ready"] == json!(true) && c["state"]["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".into();
        }
    }
    let phase = s(&status["phase"]);
    if !pod["metadata"]["deletionTimestamp"].is_null() && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    vec![
        json!(s(&pod["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(created(pod)),
        json!(or_none(&status["podIP"])),
        json!(or_none(&pod["spec"]["nodeName"])),
        json!(or_none(&status["nominatedNodeName"])),
        json!("<none>"),
    ]
}

/// Name, `Kind/name` of the role, age, then users, groups and ServiceAccounts (`ns/name`, or the
/// name alone when the subject has no namespace), as kube's binding printer writes them.
fn binding_cells(b: &Value) -> Vec<Value> {
    let role = format!("{}/{}", s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"]));
    let mut lists: [Vec<String>; 3] = Default::default();
    for subject in b["subjects"].as_array().into_iter().flatten() {
        let name = s(&subject["name"]);
        match subject["kind"].as_str() {
            Some("User") => lists[0].push(name),
            Some("Group") => lists[1].push(name),
            Some("ServiceAccount") => lists[2].push(match subject["namespace"].as_str().filter(|n| !n.is_empty()) {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            }),
            _ => {}
        }
    }
    let mut cells = vec![json!(s(&b["metadata"]["name"])), json!(role), json!(created(b))];
    cells.extend(lists.iter().map(|l| json!(l.join(", "))));
    cells
}

fn event_cells(ev: &Value) -> Vec<Value> {
    let last = ev["series"]["lastObservedTime"]
        .as_str()
        .or(ev["lastTimestamp"].as_str())
        .or(ev["eventTime"].as_str());
    let first = ev["firstTimestamp"].as_str().or(ev["eventTime"].as_str());
    let obj = &ev["involvedObject"];
    let object = format!("{}/{}", s(&obj["kind"]).to_lowercase(), s(&obj["name"]));
    let source = match ev["source"]["component"].as_str().filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => s(&ev["reportingComponent"]),
    };
    let count = ev["series"]["count"].as_i64().or(ev["count"].as_i64()).unwrap_or(1);
    vec![
        json!(age(last)),
        json!(s(&ev["type"])),
        json!(s(&ev["reason"])),
        json!(object),
        json!(s(&obj["fieldPath"])),
        json!(source),
        json!(s(&ev["message"]).trim()),
        json!(age(first)),
        json!(count),
        json!(s(&ev["metadata"]["name"])),
    ]
}

/// A Table of the objects (already in their served view).
pub(super) fn table(rt: &ResourceType, objects: &[Value], include: Include, list_meta: Value) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(rt, o, include)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

fn row(rt: &ResourceType, obj: &Value, include: Include) -> Value {
    let mut r = json!({"cells": cells(rt, obj)});
    match include {
        Include::None => {}
        Include::Metadata => {
            r["object"] =
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]});
        }
        Include::Object => r["object"] = obj.clone(),
    }
    r
}

/// The values a printer column's JSONPath (`.status.phase`, `.items[0]`, `[?(@.type=="Ready")]`,
/// optionally in `{}`) selects; a path that does not parse selects nothing.
pub(super) fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    use jsonpath_rust::JsonPath;
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    obj.query(&format!("${path}"))
        .map(|found| found.into_iter().filter(|v| !v.is_null()).cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_and_indexes() {
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "history": [{"c": "abc"}]}});
        assert_eq!(
            jsonpath(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(jsonpath(&obj, ".status.history[0].c"), vec![json!("abc")]);
        // A CRD's printer column is request data: a malformed filter yields no value, not a panic.
        assert!(jsonpath(&obj, ".status.history[?(x]").is_empty());
        assert!(jsonpath(&obj, ".status.missing").is_empty());
    }
}
