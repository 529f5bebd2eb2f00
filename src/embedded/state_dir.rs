//! The state directory of the local control plane: the kubeconfig, Pod workspaces and logs.

/// Creates the state directory (and missing parents) readable by the user only: it holds the
/// kubeconfig, Pod workspaces and logs, and logs may show Secret values. An existing directory is
/// left as it is.
pub(crate) fn create_state_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}
