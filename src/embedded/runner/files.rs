//! Volumes made of files the runner writes before the containers start, as kubelet's configMap,
//! secret, downwardAPI and projected volume plugins do — the `kube-api-access-*` volume of a Pod
//! that automounts its ServiceAccount token included (the token comes from a TokenRequest bound
//! to the Pod). The files are written once: later changes of the ConfigMaps and Secrets are not
//! followed, and the token is not renewed while the Pod runs (kubelet renews it at 80% of its
//! lifetime). A source that cannot be read fails the Pod (kubelet would keep retrying).
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::workspace::PodDir;

/// kubelet's default file mode of these volumes (0644).
const DEFAULT_MODE: i32 = 0o644;

/// One file of a volume.
struct File {
    path: String,
    data: Vec<u8>,
    mode: Option<i32>,
}

/// Writes the files of the Pod's configMap, secret, downwardAPI and projected volumes under the
/// Pod directory; returns each such volume's directory by name. The error is kubelet's
/// `FailedMount` message.
pub(super) async fn write_volumes(
    client: &Client,
    pod: &Pod,
    dir: &PodDir,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let failed = |cause: String| format!("MountVolume.SetUp failed for volume {:?} : {cause}", v.name);
        let Some((files, default_mode)) = volume_files(client, pod, v).await.map_err(failed)? else {
            continue;
        };
        let path = dir.volume(&v.name);
        write_files(&path, &files, default_mode.unwrap_or(DEFAULT_MODE)).map_err(failed)?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// The files of a volume and its `defaultMode`; `None` for volumes of other types.
async fn volume_files(client: &Client, pod: &Pod, v: &Volume) -> Result<Option<(Vec<File>, Option<i32>)>, String> {
    let sources = Sources { client, pod };
    if let Some(c) = &v.config_map {
        let name = c.name.clone();
        let files = sources
            .config_map(&name, c.items.as_deref(), c.optional.unwrap_or(false))
            .await?;
        return Ok(Some((files, c.default_mode)));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = sources
            .secret(&name, s.items.as_deref(), s.optional.unwrap_or(false))
            .await?;
        return Ok(Some((files, s.default_mode)));
    }
    if let Some(d) = &v.downward_api {
        return Ok(Some((downward(pod, d.items.as_deref())?, d.default_mode)));
    }
    let Some(p) = &v.projected else {
        return Ok(None);
    };
    let mut files = Vec::new();
    for source in p.sources.iter().flatten() {
        if let Some(c) = &source.config_map {
            files.extend(
                sources
                    .config_map(&c.name, c.items.as_deref(), c.optional.unwrap_or(false))
                    .await?,
            );
        } else if let Some(s) = &source.secret {
            files.extend(
                sources
                    .secret(&s.name, s.items.as_deref(), s.optional.unwrap_or(false))
                    .await?,
            );
        } else if let Some(d) = &source.downward_api {
            files.extend(downward(pod, d.items.as_deref())?);
        } else if let Some(t) = &source.service_account_token {
            files.push(sources.token(t).await?);
        } else {
            return Err("only configMap, secret, downwardAPI and serviceAccountToken projections are supported by the cdkube local runner".into());
        }
    }
    Ok(Some((files, p.default_mode)))
}

/// The API objects a Pod's volumes read, in its namespace.
struct Sources<'a> {
    client: &'a Client,
    pod: &'a Pod,
}

impl Sources<'_> {
    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())
    }

    async fn config_map(&self, name: &str, items: Option<&[KeyToPath]>, optional: bool) -> Result<Vec<File>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns());
        let Some(cm) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(format!("configmap {name:?} not found"))
            };
        };
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
        select(data, items, optional, "configmap references non-existent config key")
    }

    async fn secret(&self, name: &str, items: Option<&[KeyToPath]>, optional: bool) -> Result<Vec<File>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns());
        let Some(secret) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(format!("secret {name:?} not found"))
            };
        };
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        select(data, items, optional, "references non-existent secret key")
    }

    /// A token for the Pod's ServiceAccount bound to the Pod, as kubelet requests it.
    async fn token(&self, t: &ServiceAccountTokenProjection) -> Result<File, String> {
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: t.audience.clone().filter(|a| !a.is_empty()).map(|a| vec![a]),
                expiration_seconds: Some(t.expiration_seconds.unwrap_or(3600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.ns());
        let issued: TokenRequest = api
            .create_subresource("token", &sa, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let token = issued.status.and_then(|s| s.token).unwrap_or_default();
        Ok(File {
            path: t.path.clone(),
            data: token.into_bytes(),
            mode: None,
        })
    }
}

/// The keys named by `items` (each to its path), or every key to a file of its name.
fn select(
    mut data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    missing: &str,
) -> Result<Vec<File>, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data
            .into_iter()
            .map(|(path, data)| File { path, data, mode: None })
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.remove(&item.key) {
            Some(bytes) => files.push(File {
                path: item.path.clone(),
                data: bytes,
                mode: item.mode,
            }),
            None if optional => {}
            None => return Err(format!("{missing}: {}", item.key)),
        }
    }
    Ok(files)
}

/// downwardAPI items: Pod fields (resource fields are not supported).
fn downward(pod: &Pod, items: Option<&[DownwardAPIVolumeFile]>) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for item in items.into_iter().flatten() {
        let Some(field) = &item.field_ref else {
            return Err("resourceFieldRef is not supported by the cdkube local runner".into());
        };
        let value = super::env::field_value(pod, &field.field_path).map_err(|e| e.to_string())?;
        files.push(File {
            path: item.path.clone(),
            data: value.into_bytes(),
            mode: item.mode,
        });
    }
    Ok(files)
}

/// Writes the files under `root`, each with its mode (or `default_mode`). Paths must be relative
/// and stay inside the volume.
fn write_files(root: &Path, files: &[File], default_mode: i32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    for f in files {
        let rel = Path::new(&f.path);
        if f.path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "invalid path {:?}: must be relative and may not contain '..'",
                f.path
            ));
        }
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let mode = (f.mode.unwrap_or(default_mode) & 0o777) as u32;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_select_keys_and_paths_stay_inside() {
        let data: BTreeMap<String, Vec<u8>> = [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())].into();
        let all = select(data.clone(), None, false, "missing").unwrap();
        assert_eq!(all.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let item = |key: &str, path: &str| KeyToPath {
            key: key.into(),
            path: path.into(),
            ..Default::default()
        };
        let one = select(data.clone(), Some(&[item("b", "dir/b.txt")]), false, "missing").unwrap();
        assert_eq!((one[0].path.as_str(), one[0].data.as_slice()), ("dir/b.txt", &b"2"[..]));
        assert_eq!(
            select(data.clone(), Some(&[item("c", "c")]), false, "missing")
                .err()
                .unwrap(),
            "missing: c"
        );
        assert!(
            select(data, Some(&[item("c", "c")]), true, "missing")
                .unwrap()
                .is_empty()
        );

        let dir = tempfile::tempdir().unwrap();
        let escape = File {
            path: "../x".into(),
            data: Vec::new(),
            mode: None,
        };
        assert!(write_files(dir.path(), &[escape], DEFAULT_MODE).is_err());
        let ok = File {
            path: "sub/f".into(),
            data: b"x".to_vec(),
            mode: Some(0o600),
        };
        write_files(dir.path(), &[ok], DEFAULT_MODE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join("sub/f")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
