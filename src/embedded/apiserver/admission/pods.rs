//! Pods: the defaults of a decoded Pod (`SetObjectDefaults_Pod`), what the default admission
//! plugins add on create (ServiceAccount name, Priority, DefaultTolerationSeconds), the initial
//! status, and the update rules of `ValidatePodUpdate`. The spec's own rules are in [`podspec`].
//!
//! [`podspec`]: crate::embedded::apiserver::admission::podspec
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::podspec;
use crate::embedded::apiserver::admission::quantity::Quantity;
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};

/// Defaults a Pod on every write, and on create adds what admission adds and the initial status.
/// A quantity that does not parse is a decoding error (400), as in kube-apiserver.
pub(crate) fn prepare(obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    canonical_quantities(obj)?;
    if let Some(spec) = obj.get_mut("spec") {
        default_spec(spec);
    }
    if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
        default_tolerations(spec);
    }
    if let Some(old) = old {
        // Pod status only changes through pods/status, which copies it in afterwards.
        if obj["status"].is_null() {
            obj["status"] = old["status"].clone();
        }
        return Ok(());
    }
    if obj["spec"].is_object() {
        admit(&mut obj["spec"]);
    }
    obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])});
    Ok(())
}

/// Calls `f` on each element of the list at `key`, if there is one (without creating the key).
fn each(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = v.get_mut(key) {
        items.iter_mut().for_each(&mut f);
    }
}

/// The value at a path of object keys, if present (without creating anything).
fn at_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

/// Every quantity of the spec in canonical form (`0.5` → `500m`).
fn canonical_quantities(obj: &mut Value) -> ApiResult<()> {
    let mut result = Ok(());
    let Some(spec) = obj.get_mut("spec") else {
        return Ok(());
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        each(spec, list, |c| {
            for kind in ["limits", "requests"] {
                if let Some(Value::Object(m)) = at_mut(c, &["resources", kind]) {
                    for q in m.values_mut() {
                        result = result.clone().and(canonical(q));
                    }
                }
            }
        });
    }
    each(spec, "volumes", |v| {
        if let Some(q) = at_mut(v, &["emptyDir", "sizeLimit"]) {
            result = result.clone().and(canonical(q));
        }
    });
    result
}

fn canonical(q: &mut Value) -> ApiResult<()> {
    let parsed = Quantity::parse(q.as_str().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("Pod in version \"v1\" cannot be handled as a Pod: {e}")))?;
    *q = json!(parsed.canonical());
    Ok(())
}

/// Sets `field` when it is absent.
fn default(v: &mut Value, field: &str, value: Value) {
    if v.get(field).is_none_or(Value::is_null) {
        v[field] = value;
    }
}

fn default_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    // A negative grace period means 1 on a Pod (SetDefaults_Pod).
    if spec["terminationGracePeriodSeconds"].as_i64().is_some_and(|g| g < 0) {
        spec["terminationGracePeriodSeconds"] = json!(1);
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    if spec["serviceAccountName"].as_str().is_none_or(str::is_empty) && spec["serviceAccount"].is_string() {
        spec["serviceAccountName"] = spec["serviceAccount"].clone();
    }
    if spec["serviceAccountName"].is_string() {
        spec["serviceAccount"] = spec["serviceAccountName"].clone();
    }
    let host_network = spec["hostNetwork"] == json!(true);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        each(spec, list, |c| default_container(c, host_network));
    }
    each(spec, "volumes", default_volume);
}

fn default_container(c: &mut Value, host_network: bool) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    if c["imagePullPolicy"].as_str().is_none_or(str::is_empty) {
        c["imagePullPolicy"] = json!(default_pull_policy(c["image"].as_str().unwrap_or_default()));
    }
    default(c, "resources", json!({}));
    // Requests default to the limits of the same resource.
    if let Some(limits) = c["resources"]["limits"].as_object().cloned() {
        for (k, v) in limits {
            if c["resources"]["requests"][&k].is_null() {
                c["resources"]["requests"][&k] = v;
            }
        }
    }
    each(c, "ports", |p| {
        if p["protocol"].as_str().is_none_or(str::is_empty) {
            p["protocol"] = json!("TCP");
        }
        if host_network && p["hostPort"].as_i64().unwrap_or(0) == 0 {
            p["hostPort"] = p["containerPort"].clone();
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default_probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = at_mut(c, &["lifecycle", hook]) {
            default_http_get(h);
        }
    }
    each(c, "env", |e| {
        if let Some(r) = at_mut(e, &["valueFrom", "fieldRef"]).filter(|r| r.is_object()) {
            default(r, "apiVersion", json!("v1"));
        }
    });
}

/// `IfNotPresent` for a tagged or digested image, `Always` for `:latest` or no tag.
fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or_default();
    let tag = last.split_once(':').map(|(_, t)| t);
    let unparsable = image.is_empty()
        || name
            .chars()
            .any(|c| c.is_ascii_uppercase() && !tag.is_some_and(|t| t.contains(c)));
    match tag {
        _ if unparsable => "IfNotPresent",
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

fn default_probe(p: &mut Value) {
    for (field, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if p[field].as_i64().unwrap_or(0) == 0 {
            p[field] = json!(value);
        }
    }
    default_http_get(p);
}

fn default_http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        if h["path"].as_str().is_none_or(str::is_empty) {
            h["path"] = json!("/");
        }
        if h["scheme"].as_str().is_none_or(str::is_empty) {
            h["scheme"] = json!("HTTP");
        }
    }
}

/// The volume sources a Volume may name, in the order kube-apiserver checks them.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Value) {
    // A volume without a source is an emptyDir.
    if VOLUME_SOURCES.iter().all(|s| v[*s].is_null()) {
        v["emptyDir"] = json!({});
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
            default(src, "defaultMode", json!(0o644));
        }
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        default(h, "type", json!(""));
    }
}

/// What the default admission plugins add to a new Pod: its ServiceAccount (`default`) and its
/// priority (0, no PriorityClass).
fn admit(spec: &mut Value) {
    if spec["serviceAccountName"].as_str().is_none_or(str::is_empty) {
        spec["serviceAccountName"] = json!("default");
    }
    spec["serviceAccount"] = spec["serviceAccountName"].clone();
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// DefaultTolerationSeconds (on create and update): Pods tolerate not-ready and unreachable
/// nodes for 300 seconds unless they say otherwise.
fn default_tolerations(spec: &mut Value) {
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = spec["tolerations"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                let k = t["key"].as_str().unwrap_or_default();
                let e = t["effect"].as_str().unwrap_or_default();
                (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
            })
        });
        if !tolerated {
            let t = json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
            match spec["tolerations"].as_array_mut() {
                Some(ts) => ts.push(t),
                None => spec["tolerations"] = json!([t]),
            }
        }
    }
}

/// `ComputePodQOS`: over init and regular containers, only cpu and memory count; Guaranteed when
/// every container limits both and the summed requests equal the summed limits.
fn qos_class(spec: &Value) -> &'static str {
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let all = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    for c in all {
        let mut found = Vec::new();
        for (kind, sums) in [("requests", &mut requests), ("limits", &mut limits)] {
            for name in ["cpu", "memory"] {
                let q = c["resources"][kind][name]
                    .as_str()
                    .and_then(|q| Quantity::parse(q).ok());
                if let Some(q) = q.filter(|q| q.nanos() > 0) {
                    *sums.entry(name).or_default() += q.nanos();
                    if kind == "limits" {
                        found.push(name);
                    }
                }
            }
        }
        guaranteed &= found.len() == 2;
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    guaranteed &= requests.iter().all(|(name, r)| limits.get(name) == Some(r));
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The fields a Pod update may change.
const UPDATABLE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodCreate` or `ValidatePodUpdate` (metadata aside).
pub(crate) fn validate(obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut errs = podspec::validate(obj);
    let spec = &obj["spec"];
    match old {
        None => {
            if spec["ephemeralContainers"].as_array().is_some_and(|a| !a.is_empty()) {
                errs.push(StatusCause::forbidden(
                    "spec.ephemeralContainers",
                    "cannot be set on create",
                ));
            }
            let gated = spec["schedulingGates"].as_array().is_some_and(|a| !a.is_empty());
            if spec["nodeName"].as_str().is_some_and(|n| !n.is_empty()) && gated {
                errs.push(StatusCause::forbidden(
                    "spec.nodeName",
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => update_errors(spec, &old["spec"], &mut errs),
    }
    errs
}

/// The update rules: same containers, images required, activeDeadlineSeconds only added or
/// lowered, tolerations only added, nothing else changed.
fn update_errors(spec: &Value, old: &Value, errs: &mut Vec<StatusCause>) {
    for list in ["containers", "initContainers"] {
        let (new, was) = (items(&spec[list]), items(&old[list]));
        if new.len() != was.len() {
            errs.push(StatusCause::forbidden(
                &format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in new.iter().enumerate() {
            let image = c["image"].as_str().unwrap_or_default();
            if image.is_empty() {
                errs.push(StatusCause::required(&format!("spec.{list}[{i}].image"), ""));
            }
        }
    }
    let path = "spec.activeDeadlineSeconds";
    match (
        spec["activeDeadlineSeconds"].as_i64(),
        old["activeDeadlineSeconds"].as_i64(),
    ) {
        (Some(d), _) if !(0..=i64::from(i32::MAX)).contains(&d) => {
            errs.push(StatusCause::invalid(
                path,
                &json!(d),
                "must be between 0 and 2147483647, inclusive",
            ));
            return;
        }
        (Some(d), Some(was)) if d > was => {
            errs.push(StatusCause::invalid(
                path,
                &json!(d),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(StatusCause::invalid(
            path,
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    if let Some(e) = removed_toleration(spec, old) {
        errs.push(e);
    } else {
        errs.extend(podspec::tolerations(&spec["tolerations"], "spec.tolerations"));
    }
    if munged(spec, old) != strip_nulls(old) {
        errs.push(StatusCause::forbidden("spec", UPDATABLE));
    }
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Forbidden when an existing toleration is gone or changed (but for its tolerationSeconds).
fn removed_toleration(spec: &Value, old: &Value) -> Option<StatusCause> {
    let new = items(&spec["tolerations"]);
    let kept = |t: &Value| {
        new.iter().any(|n| {
            let mut t = t.clone();
            t["tolerationSeconds"] = n["tolerationSeconds"].clone();
            strip_nulls(&t) == strip_nulls(n)
        })
    };
    let gone = items(&old["tolerations"]).iter().any(|t| !kept(t));
    gone.then(|| {
        StatusCause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        )
    })
}

/// `v` without null fields and empty lists: Go's semantic equality does not tell them from
/// absent ones.
fn strip_nulls(v: &Value) -> Value {
    let absent = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !absent(v))
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// The new spec with what an update may change put back to the old values.
fn munged(spec: &Value, old: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        for (i, c) in s[list].as_array_mut().into_iter().flatten().enumerate() {
            c["image"] = old[list][i]["image"].clone();
        }
    }
    for field in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
        match old.get(field) {
            Some(v) => s[field] = v.clone(),
            None => {
                if let Some(m) = s.as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    let was_negative = old["terminationGracePeriodSeconds"].as_i64().is_some_and(|g| g < 0);
    if was_negative && s["terminationGracePeriodSeconds"] == json!(1) {
        s["terminationGracePeriodSeconds"] = old["terminationGracePeriodSeconds"].clone();
    }
    strip_nulls(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
        assert_eq!(default_pull_policy(""), "IfNotPresent");
    }

    #[test]
    fn requests_default_to_limits_and_quantities_are_canonical() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}]}});
        prepare(&mut pod, None).unwrap();
        let r = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }
}
