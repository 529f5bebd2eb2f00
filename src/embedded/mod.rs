//! The embedded control plane (DESIGN.md §3): an API server emulator and a local pod runner.
//!
//! Start the API server with [`ApiServer::start`]; it serves the Kubernetes REST API on
//! 127.0.0.1 to kube-rs and kubectl alike.
pub mod admission;
pub mod apiserver;
pub mod binding;
pub mod cel;
pub mod crd;
pub mod dev;
pub mod discovery;
pub mod events;
pub mod fields;
pub mod gc;
pub mod handlers;
pub mod ids;
pub mod kubeconfig;
pub mod logs;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod patch;
pub mod podlog;
pub mod protobuf;
pub mod resources;
pub mod runner;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;

pub use apiserver::{ApiServer, ApiServerConfig, Error as ApiServerError, RunningApiServer};

/// Creates the state directory (and missing parents) readable by the user only: it holds the
/// kubeconfig, Pod workspaces and logs, and logs may show Secret values. An existing directory is
/// left as it is.
pub(crate) fn create_state_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}
