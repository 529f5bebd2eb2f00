//! A container's environment as kubelet builds it: `envFrom`, then `env` in order with `$(VAR)`
//! references to earlier variables, `valueFrom` for Pod fields, Secrets and ConfigMaps.
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, EnvVarSource, Pod, Secret};
use kube::{Api, Client};

/// Why an environment could not be built. Kubelet reports these as `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// A referenced Secret or ConfigMap does not exist (yet); kubelet keeps retrying.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// The object exists but lacks the key.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyMissing {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Namespace of the object.
        namespace: String,
        /// Object name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// Reading the object from the API failed.
    #[error("reading {kind} \"{name}\": {source}")]
    Api {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The client error.
        source: kube::Error,
    },
    /// A field the local runner cannot provide (e.g. `resourceFieldRef`); retrying will not help.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// True when the same request may succeed later (the object may be created meanwhile).
    pub(super) fn is_retriable(&self) -> bool {
        !matches!(self, Error::Unsupported(_))
    }
}

/// Expands `$(VAR)` references the way Kubernetes does: a defined name is replaced, an undefined
/// one is left verbatim, `$$` is an escaped `$`, any other `$` is kept.
pub(super) fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                // Unterminated reference: kept as written.
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Resolves a downward-API `fieldRef.fieldPath` against the Pod.
pub(super) fn field_value(pod: &Pod, path: &str) -> Result<String, Error> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => Some(super::pod_status::POD_IP.into()),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                Some(
                    meta.labels
                        .as_ref()
                        .and_then(|m| m.get(key))
                        .cloned()
                        .unwrap_or_default(),
                )
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                Some(
                    meta.annotations
                        .as_ref()
                        .and_then(|m| m.get(key))
                        .cloned()
                        .unwrap_or_default(),
                )
            } else {
                return Err(Error::Unsupported(format!("unsupported fieldRef fieldPath {path:?}")));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let inner = path.strip_prefix(field)?.strip_prefix("['")?.strip_suffix("']")?;
    Some(inner)
}

/// The downward API's format for a whole map: `key="value"` lines, sorted.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Default)]
struct Env {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        if self.values.insert(name.clone(), value).is_none() {
            self.order.push(name);
        }
    }
}

/// Builds the container's declared environment (without the runner's base variables such as PATH).
pub(super) async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let objects = Objects { client, ns: &ns };
    let mut env = Env::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &source.config_map_ref {
            objects.config_map(&r.name, r.optional.unwrap_or(false)).await?
        } else if let Some(r) = &source.secret_ref {
            objects.secret(&r.name, r.optional.unwrap_or(false)).await?
        } else {
            None
        };
        for (k, v) in data.unwrap_or_default() {
            let name = format!("{prefix}{k}");
            // Kubelet skips keys that are not valid variable names (and warns); so do we.
            if is_env_name(&name) {
                env.set(name, v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = var_value(&objects, pod, var, &env.values).await? {
            env.set(var.name.clone(), value);
        }
    }
    let Env { order, mut values } = env;
    Ok(order
        .into_iter()
        .map(|k| {
            let v = values.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// One `env` entry's value; `None` when an optional reference is absent.
async fn var_value(
    objects: &Objects<'_>,
    pod: &Pod,
    var: &EnvVar,
    earlier: &HashMap<String, String>,
) -> Result<Option<String>, Error> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), earlier)));
    };
    source_value(objects, pod, source).await
}

async fn source_value(objects: &Objects<'_>, pod: &Pod, source: &EnvVarSource) -> Result<Option<String>, Error> {
    if let Some(f) = &source.field_ref {
        return field_value(pod, &f.field_path).map(Some);
    }
    if let Some(s) = &source.secret_key_ref {
        let optional = s.optional.unwrap_or(false);
        let data = objects.secret(&s.name, optional).await?;
        return objects.key(data, "Secret", &s.name, &s.key, optional);
    }
    if let Some(c) = &source.config_map_key_ref {
        let optional = c.optional.unwrap_or(false);
        let data = objects.config_map(&c.name, optional).await?;
        return objects.key(data, "ConfigMap", &c.name, &c.key, optional);
    }
    if source.resource_field_ref.is_some() {
        return Err(Error::Unsupported(
            "resourceFieldRef is not supported by the cdkube local runner".into(),
        ));
    }
    Err(Error::Unsupported("valueFrom names no source".into()))
}

/// Reads Secrets and ConfigMaps of the Pod's namespace through the API.
struct Objects<'a> {
    client: &'a Client,
    ns: &'a str,
}

impl Objects<'_> {
    async fn secret(&self, name: &str, optional: bool) -> Result<Option<BTreeMap<String, String>>, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
        let found = api.get_opt(name).await.map_err(|source| Error::Api {
            kind: "secret",
            name: name.into(),
            source,
        })?;
        match found {
            Some(s) => Ok(Some(
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
            )),
            None if optional => Ok(None),
            None => Err(Error::NotFound {
                kind: "secret",
                name: name.into(),
            }),
        }
    }

    async fn config_map(&self, name: &str, optional: bool) -> Result<Option<BTreeMap<String, String>>, Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
        let found = api.get_opt(name).await.map_err(|source| Error::Api {
            kind: "configmap",
            name: name.into(),
            source,
        })?;
        match found {
            Some(c) => Ok(Some(c.data.unwrap_or_default())),
            None if optional => Ok(None),
            None => Err(Error::NotFound {
                kind: "configmap",
                name: name.into(),
            }),
        }
    }

    fn key(
        &self,
        data: Option<BTreeMap<String, String>>,
        kind: &'static str,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, Error> {
        let Some(mut data) = data else {
            return Ok(None);
        };
        match data.remove(key) {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(Error::KeyMissing {
                kind,
                namespace: self.ns.into(),
                name: name.into(),
                key: key.into(),
            }),
        }
    }
}

/// C-identifier-like names as Kubernetes accepts them (letters, digits, `_`, `-`, `.`; not a digit first).
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '-' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("A", "alpha"), ("B", "beta")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let v = vars();
        assert_eq!(expand("$(A)-$(B)", &v), "alpha-beta");
        assert_eq!(expand("$(MISSING) stays", &v), "$(MISSING) stays");
        assert_eq!(expand("$$(A) is escaped", &v), "$(A) is escaped");
        assert_eq!(expand("$$$(A)", &v), "$alpha");
        assert_eq!(expand("cost: $5 and $", &v), "cost: $5 and $");
        assert_eq!(expand("$(A", &v), "$(A");
        assert_eq!(expand("$HOME", &v), "$HOME");
        assert_eq!(expand("ünï $(A) çødé", &v), "ünï alpha çødé");
    }

    #[test]
    fn field_refs_read_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": {"app": "x", "tier": "b"}, "annotations": {"note": "hi \"there\""}},
            "spec": {"containers": [], "nodeName": "cdkube-dev"}
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(field_value(&pod, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field_value(&pod, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field_value(&pod, "metadata.labels['app']").unwrap(), "x");
        assert_eq!(field_value(&pod, "metadata.labels").unwrap(), "app=\"x\"\ntier=\"b\"");
        assert_eq!(
            field_value(&pod, "metadata.annotations['note']").unwrap(),
            "hi \"there\""
        );
        assert_eq!(field_value(&pod, "spec.nodeName").unwrap(), "cdkube-dev");
        assert!(matches!(field_value(&pod, "spec.bogus"), Err(Error::Unsupported(_))));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("CDKUBE_COMMIT"));
        assert!(is_env_name("my.var-1"));
        assert!(!is_env_name("1abc"));
        assert!(!is_env_name("a b"));
        assert!(!is_env_name(""));
    }
}
