//! ServiceAccounts as a cluster keeps them: what kube-controller-manager puts in every namespace
//! (the `default` ServiceAccount of the serviceaccount controller, re-created when deleted, and the
//! `kube-root-ca.crt` ConfigMap of the root-ca-cert-publisher), and the ServiceAccount admission
//! plugin on Pod creation: the Pod's ServiceAccount must exist, and a Pod that automounts a token
//! gets the `kube-api-access-*` projected volume (token, CA, namespace) mounted at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container.
use serde_json::{Value, json};

use crate::embedded::apiserver::error::{ApiError, ApiResult};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::StorageKey;
use crate::embedded::apiserver::storage::ops::{self, WriteOpts};
use crate::embedded::apiserver::storage::store::State;

/// The ServiceAccount every namespace gets.
pub(crate) const DEFAULT: &str = "default";

/// The ConfigMap holding the cluster CA in every namespace.
const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// Where the token volume is mounted.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The token volume's name prefix.
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// Field manager of the objects the controllers here create.
const MANAGER: &str = "kube-controller-manager";

fn core_key(resource: &str) -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: resource.into(),
    }
}

/// The stored ServiceAccount `ns/name`.
pub(crate) fn get<'a>(st: &'a State, ns: &str, name: &str) -> Option<&'a Value> {
    st.get(&core_key("serviceaccounts"), ns, name)
}

fn active(st: &State, ns: &str) -> bool {
    st.get(&core_key("namespaces"), "", ns)
        .is_some_and(|n| n["metadata"]["deletionTimestamp"].is_null())
}

fn create(st: &mut State, plural: &str, ns: &str, obj: Value) {
    let Some(rt) = st.find_type("", "v1", plural) else {
        return;
    };
    let opts = WriteOpts {
        manager: MANAGER.into(),
        ..Default::default()
    };
    if let Err(e) = ops::create(st, &rt, Some(ns), obj, &opts) {
        tracing::warn!(namespace = ns, error = %e, "cannot create a namespace's {plural}");
    }
}

/// What an active namespace `ns` must contain: ServiceAccount `default`, and ConfigMap
/// `kube-root-ca.crt` with the server's CA (re-written when it holds something else).
pub(crate) fn ensure_namespace_defaults(st: &mut State, ns: &str) {
    if !active(st, ns) {
        return;
    }
    if get(st, ns, DEFAULT).is_none() {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": ns}});
        create(st, "serviceaccounts", ns, sa);
    }
    let ca = st.root_ca().to_string();
    if ca.is_empty() {
        return;
    }
    let description = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
    match st.get(&core_key("configmaps"), ns, ROOT_CA_CONFIGMAP).cloned() {
        None => {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns, "annotations": {"kubernetes.io/description": description}},
                "data": {"ca.crt": ca}});
            create(st, "configmaps", ns, cm);
        }
        Some(cm) if cm["data"] != json!({"ca.crt": ca}) => {
            let Some(rt) = st.find_type("", "v1", "configmaps") else {
                return;
            };
            let mut next = cm.clone();
            next["data"] = json!({"ca.crt": ca});
            if let Some(m) = next.as_object_mut() {
                m.remove("binaryData");
            }
            let opts = WriteOpts {
                manager: MANAGER.into(),
                ..Default::default()
            };
            let _ = ops::replace(st, &rt, cm, next, None, &opts);
        }
        Some(_) => {}
    }
}

/// The controllers' resync: every active namespace has what [`ensure_namespace_defaults`] makes
/// (a deleted `default` ServiceAccount or CA ConfigMap comes back).
pub(crate) fn restore_defaults(st: &mut State) {
    let namespaces: Vec<String> = st
        .list(&core_key("namespaces"), None)
        .iter()
        .filter(|n| n["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for ns in namespaces {
        ensure_namespace_defaults(st, &ns);
    }
}

/// The ServiceAccount admission plugin on a Pod create: the Pod's ServiceAccount (already
/// defaulted to `default`) must exist, else 403 with the plugin's message; then the token volume
/// is added when the Pod automounts one. `name` is the Pod's name as the request gave it (empty
/// for `generateName`, which is resolved later in kube).
pub(crate) fn admit_pod(st: &State, ns: &str, name: &str, pod: &mut Value) -> ApiResult<()> {
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or(DEFAULT)
        .to_string();
    let Some(sa) = get(st, ns, &sa_name) else {
        let why = format!("error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found");
        return Err(ApiError::forbidden_request("", "pods", name, &why));
    };
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(&mut pod["spec"]);
    }
    Ok(())
}

/// `mountServiceAccountToken`: every init and app container without a mount at the token path
/// gets one of the `kube-api-access-*` volume, which is added unless the Pod already has one.
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_string);
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{}", ids::name_suffix()));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let mounted = c["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH));
            if !mounted {
                if !c["volumeMounts"].is_array() {
                    c["volumeMounts"] = json!([]);
                }
                if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                    mounts.push(mount.clone());
                }
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.push(token_volume(&volume));
        }
    }
}

/// The projected volume kube's `TokenVolumeSource` describes, as stored after defaulting.
fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_volume_goes_to_every_container_without_one() {
        let mut spec = json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "own", "emptyDir": {}}],
        });
        mount_token(&mut spec);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        assert!(name.starts_with(TOKEN_VOLUME_PREFIX) && name.len() == TOKEN_VOLUME_PREFIX.len() + 5);
        assert_eq!(spec["initContainers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        // Admitting again (the Pod has its volume) adds nothing.
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before);
    }
}
