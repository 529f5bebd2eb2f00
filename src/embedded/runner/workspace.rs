//! The per-Pod workspace on the host and the translation of a container spec into a host process.
//!
//! Layout under `<state_dir>/pods/<namespace>/<pod>/`: `<container>.log` (the log contract of
//! [`crate::embedded::logs`]), `volumes/<volume>/` (each `emptyDir`), `containers/<container>/`
//! (private root mount point, scratch directory, pid file) and `uid` (which Pod owns the directory).
//!
//! Volume mounts are made real in one of two ways ([`VolumeMode`]):
//! - `Namespace` (when the runner may create mount namespaces, e.g. as root): the process runs in a
//!   private mount namespace whose root is a tmpfs holding bind mounts of the host's top-level
//!   directories, with each volume bind-mounted at its `mountPath` (read-only when asked) and then
//!   `chroot`. Every path the Pod names works, for every program it runs. The host's directories are
//!   read-only (but `/dev`, `/proc` and `/tmp`, the host's; mounts below a top-level directory keep
//!   their own mode), and the state directory (the admin kubeconfig, other Pods'
//!   files) is hidden under an empty tmpfs. Nothing else is isolated: same users, same network,
//!   same processes.
//! - `Rewrite` (fallback): nothing is mounted. `workingDir`, and each `command`/`args` token and
//!   `env` value that is a `mountPath` or starts with `mountPath/`, are rewritten to the volume's
//!   host directory. Paths computed at run time (e.g. `cd /workspace` inside an `sh -c` script)
//!   are not rewritten, `readOnly` is not enforced, and the Pod can read and write whatever the
//!   runner's user can, the state directory included.
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::process::{BindMount, Isolation, ProcessSpec};
use crate::embedded::logs::{container_log_path, pod_dir};

/// What prevents a container from being created.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// A volume type the local runner does not provide.
    #[error(
        "volume {name:?}: {kind} volumes are not supported by the cdkube local runner (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)"
    )]
    UnsupportedVolume {
        /// Volume name.
        name: String,
        /// Its type, as named in the Pod spec.
        kind: String,
    },
    /// A hostPath volume whose path is not an existing directory.
    #[error("volume {name:?}: hostPath {path} is not a directory")]
    HostPath {
        /// Volume name.
        name: String,
        /// The host path.
        path: PathBuf,
    },
    /// A volumeMount naming a volume the Pod does not declare.
    #[error("volumeMount {mount_path:?} refers to volume {volume:?}, which the Pod does not declare")]
    UnknownVolume {
        /// The mount path.
        mount_path: String,
        /// The missing volume name.
        volume: String,
    },
    /// A path that must be relative without `..` (subPath) or absolute (mountPath, workingDir).
    #[error("invalid {field} {value:?}")]
    BadPath {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// No `command`: the image's entrypoint is unknown because images are not pulled.
    #[error("container has no command; cdkube dev does not pull images, so the image's entrypoint is unknown")]
    NoCommand,
    /// Creating a workspace directory failed.
    #[error("creating {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How volume mounts are realised; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeMode {
    /// Private mount namespace with bind mounts and chroot.
    Namespace,
    /// Path rewriting only.
    Rewrite,
}

/// The directory of one Pod.
#[derive(Clone, Debug)]
pub struct PodDir {
    state_dir: PathBuf,
    namespace: String,
    name: String,
    root: PathBuf,
}

impl PodDir {
    /// The directory of Pod `namespace/name` under `state_dir`.
    pub fn new(state_dir: &Path, namespace: &str, name: &str) -> Self {
        PodDir {
            state_dir: state_dir.into(),
            namespace: namespace.into(),
            name: name.into(),
            root: pod_dir(state_dir, namespace, name),
        }
    }

    /// The directory of `pod` under `state_dir`.
    pub fn of(state_dir: &Path, pod: &Pod) -> Self {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        PodDir::new(state_dir, ns, pod.metadata.name.as_deref().unwrap_or_default())
    }

    /// The Pod directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where a container's output goes.
    pub fn log(&self, container: &str) -> PathBuf {
        container_log_path(&self.state_dir, &self.namespace, &self.name, container)
    }

    /// An `emptyDir` volume's directory.
    pub fn volume(&self, volume: &str) -> PathBuf {
        self.root.join("volumes").join(volume)
    }

    fn container(&self, container: &str) -> PathBuf {
        self.root.join("containers").join(container)
    }

    /// Mount point of the container's private root (used only inside its mount namespace).
    pub fn private_root(&self, container: &str) -> PathBuf {
        self.container(container).join("root")
    }

    /// The container's own files in `Rewrite` mode (its working directory when none is mounted).
    pub fn scratch(&self, container: &str) -> PathBuf {
        self.container(container).join("fs")
    }

    /// How to start another process in the container (`exec`), while it runs.
    pub fn exec_spec(&self, container: &str) -> PathBuf {
        self.container(container).join("exec.json")
    }

    /// `<pid> <start time>` of the container's process group leader while it runs.
    pub fn pid_file(&self, container: &str) -> PathBuf {
        self.container(container).join("pid")
    }

    /// Takes the directory for the Pod with `uid`, clearing what a same-named earlier Pod left.
    pub fn claim(&self, uid: &str) -> std::io::Result<()> {
        if !self.owned_by(uid) && self.root.exists() {
            std::fs::remove_dir_all(&self.root)?;
        }
        std::fs::create_dir_all(&self.root)?;
        crate::embedded::state_dir::write_file(&self.root.join("uid"), uid.as_bytes())
    }

    /// True when this directory was claimed by the Pod with `uid` (by this or an earlier runner).
    pub fn owned_by(&self, uid: &str) -> bool {
        std::fs::read_to_string(self.root.join("uid")).is_ok_and(|u| u == uid)
    }

    /// Stops the process groups an earlier runner recorded here, each verified by its start time so
    /// that a reused pid is never signalled.
    pub fn kill_leftovers(&self) {
        let Ok(containers) = std::fs::read_dir(self.root.join("containers")) else {
            return;
        };
        for container in containers.flatten() {
            let pid_file = container.path().join("pid");
            let Ok(text) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let mut parts = text.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(pid)), Some(Ok(start))) = (parts.next(), parts.next())
                && let Ok(pid) = i32::try_from(pid)
                && super::process::process_start_time(pid) == Some(start)
            {
                super::process::signal_group(pid, libc::SIGKILL);
            }
            let _ = std::fs::remove_file(&pid_file);
        }
    }

    /// Removes the directory (after the Pod is gone, as kubelet removes logs and volumes).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Clears `<state_dir>/pods/` for a fresh API server, which knows none of the Pods there: their
/// leftover processes (from a plane that was killed) are stopped and their directories removed.
pub fn sweep(state_dir: &Path) {
    let pods = state_dir.join("pods");
    let Ok(namespaces) = std::fs::read_dir(&pods) else {
        return;
    };
    for ns in namespaces.flatten() {
        for pod in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let (ns, pod) = (ns.file_name(), pod.file_name());
            PodDir::new(state_dir, &ns.to_string_lossy(), &pod.to_string_lossy()).kill_leftovers();
        }
    }
    let _ = std::fs::remove_dir_all(&pods);
}

/// Creates the Pod's volumes and returns each volume's host directory by name; `written` are the
/// volumes whose files [`super::files`] wrote already.
pub(super) fn prepare_volumes(
    pod: &Pod,
    dir: &PodDir,
    mut written: HashMap<String, PathBuf>,
) -> Result<HashMap<String, PathBuf>, Error> {
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = if let Some(path) = written.remove(&v.name) {
            path
        } else if v.empty_dir.is_some() {
            let path = dir.volume(&v.name);
            create_dir(&path)?;
            path
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            if h.type_.as_deref() == Some("DirectoryOrCreate") {
                create_dir(&path)?;
            }
            if !path.is_dir() {
                return Err(Error::HostPath {
                    name: v.name.clone(),
                    path,
                });
            }
            path
        } else {
            return Err(Error::UnsupportedVolume {
                name: v.name.clone(),
                kind: volume_kind(v),
            });
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// The first set field of a Volume, as named in YAML (`secret`, `configMap`, …).
fn volume_kind(v: &k8s_openapi::api::core::v1::Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()))
        .unwrap_or_else(|| "unknown".into())
}

fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// What the runner adds to every container on top of its spec.
#[derive(Clone, Debug)]
pub(super) struct Host {
    /// How mounts are realised.
    pub mode: VolumeMode,
    /// The program run for a command `cdkube` (or any path ending in `/cdkube`).
    pub cdkube_bin: PathBuf,
    /// Variables every container starts with (PATH, HOME, the API server's address); the spec's
    /// `env` overrides them.
    pub base_env: Vec<(String, String)>,
}

impl Host {
    /// The environment a host process gets when the image's is unknown: the runner's PATH and HOME.
    pub(super) fn default_base_env() -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let mut env = vec![("PATH".to_string(), path)];
        if let Ok(home) = std::env::var("HOME") {
            env.push(("HOME".into(), home));
        }
        env
    }

    /// The variables kubelet gives every container for the `kubernetes` Service, pointing at the
    /// API server at `addr` (in-cluster clients find the server through them).
    pub(super) fn api_server_env(addr: std::net::SocketAddr) -> Vec<(String, String)> {
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
            ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
        ]
    }
}

/// Translates one container into the process to start. `declared_env` comes from
/// [`super::env::container_env`].
pub(super) fn process_spec(
    host: &Host,
    pod: &Pod,
    dir: &PodDir,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    declared_env: Vec<(String, String)>,
) -> Result<ProcessSpec, Error> {
    let vars: HashMap<String, String> = declared_env.iter().cloned().collect();
    let mut argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|s| super::env::expand(s, &vars))
        .collect();
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    argv.extend(container.args.iter().flatten().map(|s| super::env::expand(s, &vars)));
    let mounts = bind_mounts(container, volumes)?;
    let mut env = host.base_env.clone();
    env.push(("HOSTNAME".into(), pod.metadata.name.clone().unwrap_or_default()));
    env.retain(|(k, _)| !vars.contains_key(k));
    env.extend(declared_env);
    let working_dir = match container.working_dir.as_deref() {
        Some(w) if !w.is_empty() => Some(absolute("workingDir", w)?),
        _ => None,
    };
    let (cwd, isolation) = match host.mode {
        VolumeMode::Namespace => {
            let root = dir.private_root(&container.name);
            create_dir(&root)?;
            let hidden = std::path::absolute(&dir.state_dir).into_iter().collect();
            let isolation = Isolation { root, mounts, hidden };
            (working_dir.unwrap_or_else(|| PathBuf::from("/")), Some(isolation))
        }
        VolumeMode::Rewrite => {
            for arg in &mut argv {
                *arg = rewrite(arg, &mounts);
            }
            for (_, v) in &mut env {
                *v = rewrite(v, &mounts);
            }
            let cwd = match working_dir {
                Some(w) => match mounted_at(&w, &mounts) {
                    Some(p) => p,
                    None => dir.scratch(&container.name).join(w.strip_prefix("/").unwrap_or(&w)),
                },
                None => dir.scratch(&container.name),
            };
            create_dir(&cwd)?;
            (cwd, None)
        }
    };
    let mut argv = argv.into_iter();
    let program = argv.next().unwrap_or_default();
    let program = if program == "cdkube" || program.ends_with("/cdkube") {
        host.cdkube_bin.display().to_string()
    } else {
        program
    };
    Ok(ProcessSpec {
        program,
        args: argv.collect(),
        env,
        cwd,
        isolation,
        log: dir.log(&container.name),
    })
}

/// The container's volumeMounts with host sources (subPath directories created).
pub(super) fn bind_mounts(container: &Container, volumes: &HashMap<String, PathBuf>) -> Result<Vec<BindMount>, Error> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(base) = volumes.get(&m.name) else {
            return Err(Error::UnknownVolume {
                mount_path: m.mount_path.clone(),
                volume: m.name.clone(),
            });
        };
        let mut source = base.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let rel = Path::new(sub);
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(Error::BadPath {
                    field: "subPath",
                    value: sub.into(),
                });
            }
            source = source.join(rel);
            create_dir(&source)?;
        }
        out.push(BindMount {
            source,
            target: absolute("mountPath", &m.mount_path)?,
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// An absolute, normalised path without `..`.
fn absolute(field: &'static str, value: &str) -> Result<PathBuf, Error> {
    let p = Path::new(value);
    let ok = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(p.components().collect())
    } else {
        Err(Error::BadPath {
            field,
            value: value.into(),
        })
    }
}

/// The host path of container path `p` when it lies in a mounted volume (deepest mount wins).
fn mounted_at(p: &Path, mounts: &[BindMount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| p.starts_with(&m.target))
        .max_by_key(|m| m.target.components().count())
        .map(|m| m.source.join(p.strip_prefix(&m.target).unwrap_or(Path::new(""))))
}

/// `Rewrite` mode: a token that is a mount path or starts with `mountPath/` becomes a host path.
pub(super) fn rewrite(token: &str, mounts: &[BindMount]) -> String {
    if !token.starts_with('/') {
        return token.to_string();
    }
    match mounted_at(Path::new(token), mounts) {
        Some(host) => {
            let mut s = host.display().to_string();
            if token.ends_with('/') && !s.ends_with('/') {
                s.push('/');
            }
            s
        }
        None => token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "volumes": [{"name": "ws", "emptyDir": {}}],
                "containers": [{
                    "name": "build", "image": "busybox",
                    "command": ["cdkube", "$(MODE)"], "args": ["/workspace/src", "/workspacex", "$$(MODE)"],
                    "workingDir": "/workspace/src",
                    "env": [{"name": "MODE", "value": "fetch"}, {"name": "OUT", "value": "/workspace/out"}],
                    "volumeMounts": [{"name": "ws", "mountPath": "/workspace"}]
                }]
            }
        }))
        .unwrap()
    }

    fn host(mode: VolumeMode) -> Host {
        Host {
            mode,
            cdkube_bin: "/opt/bin/cdkube".into(),
            base_env: vec![("PATH".into(), "/bin".into())],
        }
    }

    fn declared() -> Vec<(String, String)> {
        vec![("MODE".into(), "fetch".into()), ("OUT".into(), "/workspace/out".into())]
    }

    #[test]
    fn rewrite_mode_maps_mount_paths_to_volume_dirs() {
        let state = tempfile::tempdir().unwrap();
        let pod = pod();
        let dir = PodDir::new(state.path(), "ns", "p");
        let volumes = prepare_volumes(&pod, &dir, HashMap::new()).unwrap();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let spec = process_spec(&host(VolumeMode::Rewrite), &pod, &dir, c, &volumes, declared()).unwrap();
        let ws = dir.volume("ws");
        assert_eq!(spec.program, "/opt/bin/cdkube");
        assert_eq!(
            spec.args,
            vec![
                "fetch".to_string(),
                ws.join("src").display().to_string(),
                "/workspacex".into(),
                "$(MODE)".into()
            ]
        );
        assert_eq!(spec.cwd, ws.join("src"));
        assert!(spec.cwd.is_dir());
        assert!(spec.env.contains(&("OUT".into(), ws.join("out").display().to_string())));
        assert!(spec.env.contains(&("HOSTNAME".into(), "p".into())));
        assert!(spec.isolation.is_none());
        assert_eq!(spec.log, state.path().join("pods/ns/p/build.log"));
    }

    #[test]
    fn namespace_mode_keeps_container_paths() {
        let state = tempfile::tempdir().unwrap();
        let pod = pod();
        let dir = PodDir::new(state.path(), "ns", "p");
        let volumes = prepare_volumes(&pod, &dir, HashMap::new()).unwrap();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let spec = process_spec(&host(VolumeMode::Namespace), &pod, &dir, c, &volumes, declared()).unwrap();
        assert_eq!(spec.args[0..2], ["fetch".to_string(), "/workspace/src".into()]);
        assert_eq!(spec.cwd, PathBuf::from("/workspace/src"));
        let iso = spec.isolation.unwrap();
        assert_eq!(
            iso.mounts,
            vec![BindMount {
                source: dir.volume("ws"),
                target: "/workspace".into(),
                read_only: false
            }]
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let state = tempfile::tempdir().unwrap();
        let dir = PodDir::new(state.path(), "ns", "p");
        let mut pod = pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[0].command = None;
        let c = spec.containers[0].clone();
        let err = process_spec(&host(VolumeMode::Rewrite), &pod, &dir, &c, &HashMap::new(), vec![]).unwrap_err();
        assert!(matches!(err, Error::NoCommand));
        let mut c2 = c.clone();
        c2.command = Some(vec!["true".into()]);
        let err = process_spec(&host(VolumeMode::Rewrite), &pod, &dir, &c2, &HashMap::new(), vec![]).unwrap_err();
        assert!(matches!(err, Error::UnknownVolume { .. }), "{err}");
        let nfs_pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [{"name": "s", "nfs": {"server": "x", "path": "/"}}]}
        }))
        .unwrap();
        let err = prepare_volumes(&nfs_pod, &dir, HashMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume \"s\": nfs volumes are not supported by the cdkube local runner (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)"
        );
        assert!(absolute("mountPath", "/a/../b").is_err());
        assert!(absolute("mountPath", "rel").is_err());
    }

    #[test]
    fn claiming_a_dir_clears_an_earlier_pods_files() {
        let state = tempfile::tempdir().unwrap();
        let dir = PodDir::new(state.path(), "ns", "p");
        dir.claim("old").unwrap();
        std::fs::write(dir.log("c"), "old output").unwrap();
        dir.claim("old").unwrap();
        assert!(dir.log("c").exists());
        dir.claim("new").unwrap();
        assert!(!dir.log("c").exists());
        assert!(dir.owned_by("new"));
    }
}
