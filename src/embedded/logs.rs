//! Where the local pod runner keeps container logs, and where the API server reads them for
//! `GET .../pods/NAME/log`. The file layout is the only contract between the two halves.
use std::path::{Path, PathBuf};

/// `<state_dir>/pods/<namespace>/<pod>`: the Pod's directory, which holds its container logs.
pub(crate) fn pod_dir(state_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    state_dir.join("pods").join(namespace).join(pod)
}

/// `<state_dir>/pods/<namespace>/<pod>/<container>.log`: the runner appends, the API server reads.
pub fn container_log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    pod_dir(state_dir, namespace, pod).join(format!("{container}.log"))
}
