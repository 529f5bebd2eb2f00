//! The embedded control plane (see `docs/architecture.md`): what stands in for a cluster when there
//! is none. Two sealed rooms that meet only through the Kubernetes API, the log-path contract of
//! [`logs`] and the runner's exec records (`runner::exec`, read by the API server's `pods/exec`):
//! - `apiserver`: the Kubernetes API server emulator, served on 127.0.0.1 to kube-rs and kubectl
//!   alike; start it with [`ApiServer::start`];
//! - [`runner`]: the local pod runner, playing kubelet for one node through the API only;
//! - [`node`]: the runner as a node of any API server (`cdkube node`), for a real kube-apiserver;
//! - [`dev`]: `cdkube dev`, which puts them together with the Pipeline CRD.
mod apiserver;
mod conn;
pub mod dev;
pub mod logs;
pub mod node;
pub mod runner;
mod state_dir;
mod streams;
mod tls;

pub use apiserver::{ApiServer, ApiServerConfig, Credential, Error as ApiServerError};
pub use conn::ServeLimits;
pub use runner::{Runner, RunnerConfig};
