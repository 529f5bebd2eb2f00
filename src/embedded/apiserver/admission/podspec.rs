//! The rules of a Pod's spec, as `ValidatePodSpec` and the functions it calls state them, with
//! their field paths and messages: volumes and their sources, containers (names, images, ports,
//! env, volume mounts, pull policy, resources, probes, security context), init containers, the
//! Pod's security context, tolerations, node selector and the names a spec refers to.
//!
//! Not checked (accepted as sent): affinity, topology spread constraints, DNS config, host
//! aliases, OS-specific fields, resource claims, sysctls, volume devices and the details of the
//! volume sources cdkube's runner cannot mount anyway (cloud disks, CSI, ephemeral claims).
use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::embedded::apiserver::admission::names::{
    config_key, dns1123_label, label_value, name_is_dns_subdomain, port_name, qualified_name, relaxed_env_var_name,
};
use crate::embedded::apiserver::admission::pods::VOLUME_SOURCES;
use crate::embedded::apiserver::admission::quantity::Quantity;
use crate::embedded::apiserver::error::{StatusCause, go_struct};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NEGATIVE_MSG: &str = "must be greater than or equal to 0";

/// `ValidatePodSpec` and the Pod-only checks of `validatePodMetadataAndSpec`.
pub(crate) fn validate(pod: &Value) -> Vec<StatusCause> {
    let spec = &pod["spec"];
    let mut errs = Vec::new();
    let volumes = volumes(spec, &mut errs);
    containers(spec, &volumes, &mut errs);
    init_containers(spec, &volumes, &mut errs);
    one_of(
        &mut errs,
        "spec.restartPolicy",
        &spec["restartPolicy"],
        &["Always", "OnFailure", "Never"],
    );
    one_of(
        &mut errs,
        "spec.dnsPolicy",
        &spec["dnsPolicy"],
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    for (k, v) in spec["nodeSelector"].as_object().into_iter().flatten() {
        for msg in qualified_name(k) {
            errs.push(StatusCause::invalid("spec.nodeSelector", &json!(k), &msg));
        }
        for msg in label_value(s(v)) {
            errs.push(StatusCause::invalid("spec.nodeSelector", v, &msg));
        }
    }
    pod_security_context(&spec["securityContext"], &mut errs);
    names(spec, &mut errs);
    if let Some(d) = spec["activeDeadlineSeconds"].as_i64()
        && !(1..=i64::from(i32::MAX)).contains(&d)
    {
        errs.push(StatusCause::invalid(
            "spec.activeDeadlineSeconds",
            &json!(d),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs.extend(tolerations(&spec["tolerations"], "spec.tolerations"));
    if spec["preemptionPolicy"].is_string() {
        one_of(
            &mut errs,
            "spec.preemptionPolicy",
            &spec["preemptionPolicy"],
            &["PreemptLowerPriority", "Never"],
        );
    }
    if let Some(g) = spec["terminationGracePeriodSeconds"].as_i64()
        && g < 0
    {
        errs.push(StatusCause::invalid(
            "spec.terminationGracePeriodSeconds",
            &json!(g),
            NEGATIVE_MSG,
        ));
    }
    for list_name in ["containers", "initContainers"] {
        for (i, c) in list(&spec[list_name]).iter().enumerate() {
            let image = s(&c["image"]);
            if image.trim() != image {
                errs.push(StatusCause::invalid(
                    &format!("spec.{list_name}[{i}].image"),
                    &c["image"],
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

/// Required when empty, NotSupported when not one of `supported` (in the order given).
fn one_of(errs: &mut Vec<StatusCause>, field: &str, value: &Value, supported: &[&str]) {
    let v = s(value);
    if v.is_empty() {
        errs.push(StatusCause::required(field, ""));
    } else if !supported.contains(&v) {
        let list: Vec<String> = supported.iter().map(|x| x.to_string()).collect();
        errs.push(StatusCause::not_supported(field, value, &list));
    }
}

/// NotSupported when set and not one of `supported` (given sorted, as `sets.List` prints them).
fn optional_one_of(errs: &mut Vec<StatusCause>, field: &str, value: &Value, supported: &[&str]) {
    if value.is_string() && !supported.contains(&s(value)) {
        let list: Vec<String> = supported.iter().map(|x| x.to_string()).collect();
        errs.push(StatusCause::not_supported(field, value, &list));
    }
}

fn dns_label(errs: &mut Vec<StatusCause>, field: &str, value: &str) {
    for msg in dns1123_label(value) {
        errs.push(StatusCause::invalid(field, &json!(value), &msg));
    }
}

fn subdomain_name(errs: &mut Vec<StatusCause>, field: &str, value: &str) {
    for msg in name_is_dns_subdomain(value, false) {
        errs.push(StatusCause::invalid(field, &json!(value), &msg));
    }
}

/// Names the spec refers to: service account, node, priority class, runtime class, hostname.
fn names(spec: &Value, errs: &mut Vec<StatusCause>) {
    let sa = s(&spec["serviceAccountName"]);
    if !sa.is_empty() {
        subdomain_name(errs, "spec.serviceAccountName", sa);
    }
    if spec["serviceAccount"].is_string() && s(&spec["serviceAccount"]) != sa {
        errs.push(StatusCause::invalid(
            "spec.deprecatedServiceAccount",
            &spec["serviceAccount"],
            &format!("must be the same as serviceAccountName: {sa:?}"),
        ));
    }
    for (field, json_name) in [
        ("spec.nodeName", "nodeName"),
        ("spec.priorityClassName", "priorityClassName"),
    ] {
        let v = s(&spec[json_name]);
        if !v.is_empty() {
            subdomain_name(errs, field, v);
        }
    }
    if spec["runtimeClassName"].is_string() {
        subdomain_name(errs, "spec.runtimeClassName", s(&spec["runtimeClassName"]));
    }
    for field in ["hostname", "subdomain"] {
        let v = s(&spec[field]);
        if !v.is_empty() {
            dns_label(errs, &format!("spec.{field}"), v);
        }
    }
}

/// `ValidateVolumes`: returns the names of the valid volumes (the ones mounts may name).
fn volumes(spec: &Value, errs: &mut Vec<StatusCause>) -> BTreeSet<String> {
    let mut valid = BTreeSet::new();
    let mut all = BTreeSet::new();
    for (i, v) in list(&spec["volumes"]).iter().enumerate() {
        let at = format!("spec.volumes[{i}]");
        let name = s(&v["name"]);
        let mut el = volume_source(v, &at);
        if name.is_empty() {
            el.push(StatusCause::required(&format!("{at}.name"), ""));
        } else {
            for msg in dns1123_label(name) {
                el.push(StatusCause::invalid(&format!("{at}.name"), &json!(name), &msg));
            }
        }
        if all.contains(name) {
            el.push(StatusCause::duplicate(&format!("{at}.name"), &json!(name)));
        }
        if el.is_empty() {
            all.insert(name.to_string());
            valid.insert(name.to_string());
        } else {
            errs.extend(el);
        }
    }
    valid
}

/// The field name kube-apiserver uses for a second source (two keep historical spellings).
fn source_field(source: &str) -> &str {
    match source {
        "cephfs" => "cephFS",
        "downwardAPI" => "downwarAPI",
        other => other,
    }
}

/// `validateVolumeSource`: exactly one source, and the rules of the common ones.
fn volume_source(v: &Value, at: &str) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    let mut count = 0;
    for source in VOLUME_SOURCES {
        if v[*source].is_null() {
            continue;
        }
        if count > 0 {
            errs.push(StatusCause::forbidden(
                &format!("{at}.{}", source_field(source)),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let path = format!("{at}.{source}");
        let src = &v[*source];
        match *source {
            "emptyDir" => {
                let negative = src["sizeLimit"]
                    .as_str()
                    .and_then(|q| Quantity::parse(q).ok())
                    .is_some_and(|q| q.is_negative());
                if negative {
                    errs.push(StatusCause::forbidden(
                        &format!("{path}.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "hostPath" => host_path(src, &path, &mut errs),
            "secret" => projection_source(src, &path, "secretName", &mut errs),
            "configMap" => projection_source(src, &path, "name", &mut errs),
            "persistentVolumeClaim" if s(&src["claimName"]).is_empty() => {
                errs.push(StatusCause::required(&format!("{path}.claimName"), ""));
            }
            "projected" | "downwardAPI" => file_mode(&src["defaultMode"], &format!("{path}.defaultMode"), &mut errs),
            _ => {}
        }
    }
    if count == 0 {
        errs.push(StatusCause::required(at, "must specify a volume type"));
    }
    errs
}

fn host_path(src: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let p = s(&src["path"]);
    if p.is_empty() {
        errs.push(StatusCause::required(&format!("{path}.path"), ""));
        return;
    }
    no_backsteps(p, &format!("{path}.path"), errs);
    optional_one_of(
        errs,
        &format!("{path}.type"),
        &src["type"],
        &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ],
    );
}

fn file_mode(mode: &Value, field: &str, errs: &mut Vec<StatusCause>) {
    if let Some(m) = mode.as_i64()
        && !(0..=0o777).contains(&m)
    {
        errs.push(StatusCause::invalid(field, &json!(m), FILE_MODE_MSG));
    }
}

/// Secret and ConfigMap volumes: the name, the default mode, and each item's key, path and mode.
fn projection_source(src: &Value, path: &str, name_field: &str, errs: &mut Vec<StatusCause>) {
    if s(&src[name_field]).is_empty() {
        errs.push(StatusCause::required(&format!("{path}.{name_field}"), ""));
    }
    file_mode(&src["defaultMode"], &format!("{path}.defaultMode"), errs);
    for (i, item) in list(&src["items"]).iter().enumerate() {
        let at = format!("{path}.items[{i}]");
        if s(&item["key"]).is_empty() {
            errs.push(StatusCause::required(&format!("{at}.key"), ""));
        }
        let p = s(&item["path"]);
        if p.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.path"), ""));
        }
        local_non_reserved_path(p, &format!("{at}.path"), errs);
        file_mode(&item["mode"], &format!("{at}.mode"), errs);
    }
}

fn no_backsteps(p: &str, field: &str, errs: &mut Vec<StatusCause>) {
    if p.split('/').any(|part| part == "..") {
        errs.push(StatusCause::invalid(field, &json!(p), "must not contain '..'"));
    }
}

/// `validateLocalDescendingPath`: relative, without `..`.
fn local_descending_path(p: &str, field: &str, errs: &mut Vec<StatusCause>) {
    if p.starts_with('/') {
        errs.push(StatusCause::invalid(field, &json!(p), "must be a relative path"));
    }
    no_backsteps(p, field, errs);
}

fn local_non_reserved_path(p: &str, field: &str, errs: &mut Vec<StatusCause>) {
    local_descending_path(p, field, errs);
    if p.starts_with("..") && !p.starts_with("../") {
        errs.push(StatusCause::invalid(field, &json!(p), "must not start with '..'"));
    }
}

/// `validateContainers`: the regular containers.
fn containers(spec: &Value, volumes: &BTreeSet<String>, errs: &mut Vec<StatusCause>) {
    let list_ = list(&spec["containers"]);
    if list_.is_empty() {
        errs.push(StatusCause::required("spec.containers", ""));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, c) in list_.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        container_common(c, volumes, &at, errs);
        let name = s(&c["name"]).to_string();
        if !seen.insert(name.clone()) {
            errs.push(StatusCause::duplicate(&format!("{at}.name"), &json!(name)));
        }
        lifecycle(&c["lifecycle"], &format!("{at}.lifecycle"), errs);
        probes(c, &at, errs);
        restart_policy(c, &at, errs);
    }
}

/// `validateInitContainers`: names unique across both lists; probes and lifecycle only for
/// restartable (sidecar) init containers.
fn init_containers(spec: &Value, volumes: &BTreeSet<String>, errs: &mut Vec<StatusCause>) {
    let mut seen: BTreeSet<String> = list(&spec["containers"])
        .iter()
        .map(|c| s(&c["name"]).to_string())
        .collect();
    for (i, c) in list(&spec["initContainers"]).iter().enumerate() {
        let at = format!("spec.initContainers[{i}]");
        container_common(c, volumes, &at, errs);
        restart_policy(c, &at, errs);
        let name = s(&c["name"]);
        if seen.contains(name) {
            errs.push(StatusCause::duplicate(&format!("{at}.name"), &json!(name)));
        } else if !name.is_empty() {
            seen.insert(name.to_string());
        }
        if s(&c["restartPolicy"]) == "Always" {
            lifecycle(&c["lifecycle"], &format!("{at}.lifecycle"), errs);
            probes(c, &at, errs);
            continue;
        }
        for field in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if !c[field].is_null() {
                errs.push(StatusCause::forbidden(
                    &format!("{at}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
}

fn restart_policy(c: &Value, at: &str, errs: &mut Vec<StatusCause>) {
    optional_one_of(
        errs,
        &format!("{at}.restartPolicy"),
        &c["restartPolicy"],
        &["Always", "Never", "OnFailure"],
    );
}

/// `validateContainerCommon`.
fn container_common(c: &Value, volumes: &BTreeSet<String>, at: &str, errs: &mut Vec<StatusCause>) {
    let name = s(&c["name"]);
    if name.is_empty() {
        errs.push(StatusCause::required(&format!("{at}.name"), ""));
    } else {
        dns_label(errs, &format!("{at}.name"), name);
    }
    if s(&c["image"]).is_empty() {
        errs.push(StatusCause::required(&format!("{at}.image"), ""));
    }
    one_of(
        errs,
        &format!("{at}.terminationMessagePolicy"),
        &c["terminationMessagePolicy"],
        &["File", "FallbackToLogsOnError"],
    );
    ports(&c["ports"], &format!("{at}.ports"), errs);
    env(&c["env"], &format!("{at}.env"), errs);
    env_from(&c["envFrom"], &format!("{at}.envFrom"), errs);
    volume_mounts(c, volumes, &format!("{at}.volumeMounts"), errs);
    one_of(
        errs,
        &format!("{at}.imagePullPolicy"),
        &c["imagePullPolicy"],
        &["Always", "IfNotPresent", "Never"],
    );
    resources(&c["resources"], &format!("{at}.resources"), errs);
    security_context(&c["securityContext"], &format!("{at}.securityContext"), errs);
}

fn port_number(errs: &mut Vec<StatusCause>, field: &str, port: i64) {
    if !(1..=65535).contains(&port) {
        errs.push(StatusCause::invalid(
            field,
            &json!(port),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// `validateContainerPorts`.
fn ports(ports: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let mut names = BTreeSet::new();
    for (i, p) in list(ports).iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = s(&p["name"]);
        if !name.is_empty() {
            let msgs = port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(StatusCause::invalid(&format!("{at}.name"), &json!(name), &msg));
                }
            } else if !names.insert(name) {
                errs.push(StatusCause::duplicate(&format!("{at}.name"), &json!(name)));
            }
        }
        match p["containerPort"].as_i64().unwrap_or(0) {
            0 => errs.push(StatusCause::required(&format!("{at}.containerPort"), "")),
            n => port_number(errs, &format!("{at}.containerPort"), n),
        }
        let host = p["hostPort"].as_i64().unwrap_or(0);
        if host != 0 {
            port_number(errs, &format!("{at}.hostPort"), host);
        }
        one_of(errs, &format!("{at}.protocol"), &p["protocol"], &["SCTP", "TCP", "UDP"]);
    }
}

/// The field paths a `fieldRef` of an env var may name (`validEnvDownwardAPIFieldPathExpressions`).
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The labels `ConvertDownwardAPIFieldLabel` knows.
const DOWNWARD_LABELS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// `ValidateEnv` (with relaxed names, as in current Kubernetes).
fn env(vars: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    for (i, e) in list(vars).iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = s(&e["name"]);
        if name.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.name"), ""));
        } else {
            for msg in relaxed_env_var_name(name) {
                errs.push(StatusCause::invalid(&format!("{at}.name"), &json!(name), &msg));
            }
        }
        value_from(e, &format!("{at}.valueFrom"), errs);
    }
}

/// `validateEnvVarValueFrom`.
fn value_from(e: &Value, at: &str, errs: &mut Vec<StatusCause>) {
    let from = &e["valueFrom"];
    if from.is_null() {
        return;
    }
    let mut sources = 0;
    if from["fieldRef"].is_object() {
        sources += 1;
        field_ref(&from["fieldRef"], &format!("{at}.fieldRef"), errs);
    }
    if from["resourceFieldRef"].is_object() {
        sources += 1;
        let r = s(&from["resourceFieldRef"]["resource"]);
        let field = format!("{at}.resourceFieldRef.resource");
        if r.is_empty() {
            errs.push(StatusCause::required(&field, ""));
        } else if !RESOURCE_FIELD_PATHS.contains(&r)
            && !r.starts_with("requests.hugepages-")
            && !r.starts_with("limits.hugepages-")
        {
            let list: Vec<String> = RESOURCE_FIELD_PATHS.iter().map(|x| x.to_string()).collect();
            errs.push(StatusCause::not_supported(&field, &json!(r), &list));
        }
    }
    for kind in ["configMapKeyRef", "secretKeyRef"] {
        if from[kind].is_object() {
            sources += 1;
            key_selector(&from[kind], &format!("{at}.{kind}"), errs);
        }
    }
    if from["fileKeyRef"].is_object() {
        sources += 1;
    }
    let value = s(&e["value"]);
    let detail = if sources == 0 {
        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"
    } else if !value.is_empty() {
        "may not be specified when `value` is not empty"
    } else if sources > 1 {
        "may not have more than one field specified at a time"
    } else {
        return;
    };
    errs.push(StatusCause::invalid(at, &json!(""), detail));
}

/// `validateObjectFieldSelector` for env vars.
fn field_ref(r: &Value, at: &str, errs: &mut Vec<StatusCause>) {
    let version = s(&r["apiVersion"]);
    let path = s(&r["fieldPath"]);
    if version.is_empty() {
        errs.push(StatusCause::required(&format!("{at}.apiVersion"), ""));
        return;
    }
    if path.is_empty() {
        errs.push(StatusCause::required(&format!("{at}.fieldPath"), ""));
        return;
    }
    let subscripted = path
        .strip_suffix("']")
        .and_then(|p| p.split_once("['"))
        .filter(|(base, _)| !base.is_empty());
    let conversion = if version != "v1" {
        Err(format!("unsupported pod version: {version}"))
    } else {
        match subscripted {
            Some((base, _)) if base == "metadata.annotations" || base == "metadata.labels" => Ok(()),
            Some(_) => Err(format!("field label does not support subscript: {path}")),
            None if DOWNWARD_LABELS.contains(&path) || path == "spec.host" => Ok(()),
            None => Err(format!("field label not supported: {path}")),
        }
    };
    if let Err(e) = conversion {
        errs.push(StatusCause::invalid(
            &format!("{at}.fieldPath"),
            &json!(path),
            &format!("error converting fieldPath: {e}"),
        ));
        return;
    }
    let path = if path == "spec.host" { "spec.nodeName" } else { path };
    match subscripted {
        Some((base, key)) => {
            let key = if base == "metadata.annotations" {
                key.to_lowercase()
            } else {
                key.to_string()
            };
            for msg in qualified_name(&key) {
                errs.push(StatusCause::invalid(at, &json!(key), &msg));
            }
        }
        None if !ENV_FIELD_PATHS.contains(&path) => {
            let list: Vec<String> = ENV_FIELD_PATHS.iter().map(|x| x.to_string()).collect();
            errs.push(StatusCause::not_supported(
                &format!("{at}.fieldPath"),
                &json!(path),
                &list,
            ));
        }
        None => {}
    }
}

/// `validateSecretKeySelector`/`validateConfigMapKeySelector`.
fn key_selector(r: &Value, at: &str, errs: &mut Vec<StatusCause>) {
    subdomain_name(errs, &format!("{at}.name"), s(&r["name"]));
    let key = s(&r["key"]);
    if key.is_empty() {
        errs.push(StatusCause::required(&format!("{at}.key"), ""));
    } else {
        for msg in config_key(key) {
            errs.push(StatusCause::invalid(&format!("{at}.key"), &json!(key), &msg));
        }
    }
}

/// `ValidateEnvFrom`.
fn env_from(sources: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    for (i, e) in list(sources).iter().enumerate() {
        let at = format!("{path}[{i}]");
        let prefix = s(&e["prefix"]);
        if !prefix.is_empty() {
            for msg in relaxed_env_var_name(prefix) {
                errs.push(StatusCause::invalid(&format!("{at}.prefix"), &json!(prefix), &msg));
            }
        }
        let mut count = 0;
        for kind in ["configMapRef", "secretRef"] {
            if !e[kind].is_object() {
                continue;
            }
            count += 1;
            let name = s(&e[kind]["name"]);
            if name.is_empty() {
                errs.push(StatusCause::required(&format!("{at}.{kind}.name"), ""));
            } else {
                subdomain_name(errs, &format!("{at}.{kind}.name"), name);
            }
        }
        match count {
            0 => errs.push(StatusCause::invalid(
                path,
                &json!(""),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => errs.push(StatusCause::invalid(
                path,
                &json!(""),
                "may not have more than one field specified at a time",
            )),
        }
    }
}

/// `ValidateVolumeMounts`.
fn volume_mounts(c: &Value, volumes: &BTreeSet<String>, path: &str, errs: &mut Vec<StatusCause>) {
    let mut points = BTreeSet::new();
    let privileged = c["securityContext"]["privileged"] == json!(true);
    for (i, m) in list(&c["volumeMounts"]).iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = s(&m["name"]);
        if name.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(StatusCause::not_found(&format!("{at}.name"), &json!(name)));
        }
        let mount_path = s(&m["mountPath"]);
        if mount_path.is_empty() {
            errs.push(StatusCause::required(&format!("{at}.mountPath"), ""));
        }
        if !points.insert(mount_path) {
            errs.push(StatusCause::invalid(
                &format!("{at}.mountPath"),
                &json!(mount_path),
                "must be unique",
            ));
        }
        let sub_path = s(&m["subPath"]);
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &format!("{path}.subPath"), errs);
        }
        let expr = s(&m["subPathExpr"]);
        if !expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(StatusCause::invalid(
                    &format!("{at}.subPathExpr"),
                    &json!(expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(expr, &format!("{path}.subPathExpr"), errs);
        }
        let propagation = &m["mountPropagation"];
        let field = format!("{path}.mountPropagation");
        optional_one_of(errs, &field, propagation, &["Bidirectional", "HostToContainer", "None"]);
        if s(propagation) == "Bidirectional" && !privileged {
            errs.push(StatusCause::forbidden(
                &field,
                "Bidirectional mount propagation is available only to privileged containers",
            ));
        }
    }
}

/// Resource names a container may request without a domain.
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// `IsStandardResourceName`: the names quota and containers know without a domain.
fn standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
        "storage",
    ];
    STANDARD.contains(&name) || name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

fn native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `ValidateContainerResourceName`.
fn resource_name(name: &str, field: &str, errs: &mut Vec<StatusCause>) {
    let msgs = qualified_name(name);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(StatusCause::invalid(field, &json!(name), &msg));
        }
    } else if !name.contains('/') && !standard_resource(name) {
        errs.push(StatusCause::invalid(
            field,
            &json!(name),
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !CONTAINER_RESOURCES.contains(&name) && !name.starts_with("hugepages-") {
            errs.push(StatusCause::invalid(
                field,
                &json!(name),
                "must be a standard resource for containers",
            ));
        }
    } else if !native_resource(name) && !qualified_name(&format!("requests.{name}")).is_empty() {
        errs.push(StatusCause::invalid(
            field,
            &json!(name),
            "doesn't follow extended resource name standard",
        ));
    }
}

/// Extended resources (domain-qualified, not kubernetes.io) cannot be overcommitted.
fn overcommit_allowed(name: &str) -> bool {
    native_resource(name) && !name.starts_with("hugepages-")
}

/// `ValidateResourceQuantityValue`.
fn resource_value(name: &str, q: &Value, field: &str, errs: &mut Vec<StatusCause>) -> Option<Quantity> {
    let parsed = Quantity::parse(s(q)).ok()?;
    if parsed.is_negative() {
        errs.push(StatusCause::invalid(field, &json!(parsed.canonical()), NEGATIVE_MSG));
    }
    if !native_resource(name) && !parsed.is_integer() {
        errs.push(StatusCause::invalid(
            field,
            &json!(parsed.canonical()),
            "must be an integer",
        ));
    }
    Some(parsed)
}

/// `validateResourceRequirements` of a container.
fn resources(r: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let limits = r["limits"].as_object();
    for (name, q) in limits.into_iter().flatten() {
        let field = format!("{path}.limits[{name}]");
        resource_name(name, &field, errs);
        resource_value(name, q, &field, errs);
    }
    for (name, q) in r["requests"].as_object().into_iter().flatten() {
        let field = format!("{path}.requests[{name}]");
        resource_name(name, &field, errs);
        let Some(request) = resource_value(name, q, &field, errs) else {
            continue;
        };
        let limit = limits
            .and_then(|l| l.get(name))
            .and_then(|l| Quantity::parse(s(l)).ok());
        let requests_path = format!("{path}.requests");
        match limit {
            Some(limit) if request != limit && !overcommit_allowed(name) => errs.push(StatusCause::invalid(
                &requests_path,
                &json!(request.canonical()),
                &format!("must be equal to {name} limit of {}", limit.canonical()),
            )),
            Some(limit) if request > limit => errs.push(StatusCause::invalid(
                &requests_path,
                &json!(request.canonical()),
                &format!("must be less than or equal to {name} limit of {}", limit.canonical()),
            )),
            None if !overcommit_allowed(name) => errs.push(StatusCause::required(
                &format!("{path}.limits"),
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
        }
    }
}

fn id_range(errs: &mut Vec<StatusCause>, field: &str, v: &Value) {
    if let Some(n) = v.as_i64()
        && !(0..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(StatusCause::invalid(
            field,
            &json!(n),
            "must be between 0 and 2147483647, inclusive",
        ));
    }
}

/// `validateSeccompProfileField`.
fn seccomp(sp: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    if sp.is_null() {
        return;
    }
    let kind = s(&sp["type"]);
    match kind {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(StatusCause::required(
            &format!("{path}.type"),
            "type is required when seccompProfile is set",
        )),
        _ => errs.push(StatusCause::not_supported(
            &format!("{path}.type"),
            &sp["type"],
            &["Localhost".into(), "RuntimeDefault".into(), "Unconfined".into()],
        )),
    }
    let profile = &sp["localhostProfile"];
    if kind == "Localhost" {
        match profile.as_str() {
            None => errs.push(StatusCause::required(
                &format!("{path}.localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(p) => local_descending_path(p, &format!("{path}.localhostProfile"), errs),
        }
    } else if !profile.is_null() {
        let rendered = go_struct(&[("Type", &sp["type"]), ("LocalhostProfile", profile)]);
        errs.push(StatusCause::invalid_rendered(
            &format!("{path}.localhostProfile"),
            &rendered,
            "can only be set when seccomp type is Localhost",
        ));
    }
}

/// `validatePodSpecSecurityContext`.
fn pod_security_context(sc: &Value, errs: &mut Vec<StatusCause>) {
    let path = "spec.securityContext";
    id_range(errs, &format!("{path}.fsGroup"), &sc["fsGroup"]);
    id_range(errs, &format!("{path}.runAsUser"), &sc["runAsUser"]);
    id_range(errs, &format!("{path}.runAsGroup"), &sc["runAsGroup"]);
    for (i, g) in list(&sc["supplementalGroups"]).iter().enumerate() {
        id_range(errs, &format!("{path}.supplementalGroups[{i}]"), g);
    }
    optional_one_of(
        errs,
        &format!("{path}.fsGroupChangePolicy"),
        &sc["fsGroupChangePolicy"],
        &["Always", "OnRootMismatch"],
    );
    seccomp(&sc["seccompProfile"], &format!("{path}.seccompProfile"), errs);
}

/// A container SecurityContext as Go's `json.Marshal` writes the internal type.
fn security_context_json(sc: &Value) -> String {
    let fields = [
        ("Capabilities", "capabilities"),
        ("Privileged", "privileged"),
        ("SELinuxOptions", "seLinuxOptions"),
        ("WindowsOptions", "windowsOptions"),
        ("RunAsUser", "runAsUser"),
        ("RunAsGroup", "runAsGroup"),
        ("RunAsNonRoot", "runAsNonRoot"),
        ("ReadOnlyRootFilesystem", "readOnlyRootFilesystem"),
        ("AllowPrivilegeEscalation", "allowPrivilegeEscalation"),
        ("ProcMount", "procMount"),
        ("SeccompProfile", "seccompProfile"),
        ("AppArmorProfile", "appArmorProfile"),
    ];
    let values: Vec<(&str, &Value)> = fields.iter().map(|(go, js)| (*go, &sc[*js])).collect();
    go_struct(&values)
}

/// `ValidateSecurityContext` of a container.
fn security_context(sc: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    if sc.is_null() {
        return;
    }
    id_range(errs, &format!("{path}.runAsUser"), &sc["runAsUser"]);
    id_range(errs, &format!("{path}.runAsGroup"), &sc["runAsGroup"]);
    optional_one_of(
        errs,
        &format!("{path}.procMount"),
        &sc["procMount"],
        &["Default", "Unmasked"],
    );
    seccomp(&sc["seccompProfile"], &format!("{path}.seccompProfile"), errs);
    if sc["allowPrivilegeEscalation"] == json!(false) && sc["privileged"] == json!(true) {
        errs.push(StatusCause::invalid_rendered(
            path,
            &security_context_json(sc),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
}

/// The probes of a container that may have them.
fn probes(c: &Value, at: &str, errs: &mut Vec<StatusCause>) {
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let p = &c[kind];
        if p.is_null() {
            continue;
        }
        let path = format!("{at}.{kind}");
        handler(p, &path, errs);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(n) = p[field].as_i64()
                && n < 0
            {
                errs.push(StatusCause::invalid(
                    &format!("{path}.{field}"),
                    &json!(n),
                    NEGATIVE_MSG,
                ));
            }
        }
        let grace = &p["terminationGracePeriodSeconds"];
        if let Some(g) = grace.as_i64()
            && g <= 0
        {
            errs.push(StatusCause::invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                &json!(g),
                "must be greater than 0",
            ));
        }
        let success = p["successThreshold"].as_i64().unwrap_or(0);
        if kind != "readinessProbe" && success != 1 {
            errs.push(StatusCause::invalid(
                &format!("{path}.successThreshold"),
                &json!(success),
                "must be 1",
            ));
        }
        if kind == "readinessProbe" && !grace.is_null() {
            errs.push(StatusCause::invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                grace,
                "must not be set for readinessProbes",
            ));
        }
    }
}

fn lifecycle(l: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    for hook in ["postStart", "preStop"] {
        if !l[hook].is_null() {
            handler(&l[hook], &format!("{path}.{hook}"), errs);
        }
    }
}

fn port_num_or_name(port: &Value, field: &str, errs: &mut Vec<StatusCause>) {
    match port {
        Value::String(name) => {
            for msg in port_name(name) {
                errs.push(StatusCause::invalid(field, port, &msg));
            }
        }
        other => port_number(errs, field, other.as_i64().unwrap_or(0)),
    }
}

/// `validateHandler`: exactly one action, and its own rules.
fn handler(h: &Value, path: &str, errs: &mut Vec<StatusCause>) {
    let mut count = 0;
    for kind in ["exec", "httpGet", "tcpSocket", "grpc", "sleep"] {
        let action = &h[kind];
        if action.is_null() {
            continue;
        }
        let at = format!("{path}.{kind}");
        if count > 0 {
            errs.push(StatusCause::forbidden(&at, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match kind {
            "exec" if list(&action["command"]).is_empty() => {
                errs.push(StatusCause::required(&format!("{at}.command"), ""));
            }
            "httpGet" => {
                if s(&action["path"]).is_empty() {
                    errs.push(StatusCause::required(&format!("{at}.path"), ""));
                }
                port_num_or_name(&action["port"], &format!("{at}.port"), errs);
                let scheme = &action["scheme"];
                if !["HTTP", "HTTPS"].contains(&s(scheme)) {
                    errs.push(StatusCause::not_supported(
                        &format!("{at}.scheme"),
                        scheme,
                        &["HTTP".into(), "HTTPS".into()],
                    ));
                }
            }
            "tcpSocket" => port_num_or_name(&action["port"], &format!("{at}.port"), errs),
            "grpc" => port_number(errs, &format!("{at}.port"), action["port"].as_i64().unwrap_or(0)),
            _ => {}
        }
    }
    if count == 0 {
        errs.push(StatusCause::required(path, "must specify a handler type"));
    }
}

/// `ValidateTolerations`.
pub(crate) fn tolerations(tolerations: &Value, path: &str) -> Vec<StatusCause> {
    let mut errs = Vec::new();
    for (i, t) in list(tolerations).iter().enumerate() {
        let at = format!("{path}[{i}]");
        let key = s(&t["key"]);
        if !key.is_empty() {
            for msg in qualified_name(key) {
                errs.push(StatusCause::invalid(&format!("{at}.key"), &json!(key), &msg));
            }
        }
        let operator = s(&t["operator"]);
        if key.is_empty() && operator != "Exists" {
            errs.push(StatusCause::invalid(
                &format!("{at}.operator"),
                &json!(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = s(&t["effect"]);
        if !t["tolerationSeconds"].is_null() && effect != "NoExecute" {
            errs.push(StatusCause::invalid(
                &format!("{at}.effect"),
                &json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = s(&t["value"]);
        match operator {
            "Equal" | "" => {
                let msgs = label_value(value);
                if !msgs.is_empty() {
                    errs.push(StatusCause::invalid(
                        &format!("{at}.operator"),
                        &json!(value),
                        &msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(StatusCause::invalid(
                        &format!("{at}.operator"),
                        &json!(value),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            "Lt" | "Gt" => errs.push(StatusCause::not_supported(
                &format!("{at}.operator"),
                &t["operator"],
                &["Equal".into(), "Exists".into(), "Lt".into(), "Gt".into()],
            )),
            _ => errs.push(StatusCause::not_supported(
                &format!("{at}.operator"),
                &t["operator"],
                &["Equal".into(), "Exists".into()],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            errs.push(StatusCause::not_supported(
                &format!("{at}.effect"),
                &t["effect"],
                &["NoSchedule".into(), "PreferNoSchedule".into(), "NoExecute".into()],
            ));
        }
    }
    errs
}
