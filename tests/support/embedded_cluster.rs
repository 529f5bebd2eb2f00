//! Shared by the embedded API server suites: a started server in a temporary state directory,
//! the real CRD and fixtures, and a wait-for-condition helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cdkube::embedded::{ApiServer, ApiServerConfig};

/// A running server and its state directory (removed on drop).
pub struct Cluster {
    pub server: ApiServer,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted the config.
    pub async fn start_with(tweak: impl FnOnce(&mut ApiServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ApiServerConfig::new(dir.path().join("state"));
        tweak(&mut config);
        let server = ApiServer::start(config).await.expect("start API server");
        Self { server, dir }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A kube-rs client from the written kubeconfig.
    pub async fn client(&self) -> kube::Client {
        self.server.client().await.expect("client")
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/crd.yaml`.
pub fn crd_path() -> PathBuf {
    repo().join("deploy/crd.yaml")
}

/// A fixture under `fixtures/pipelines/`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures/pipelines").join(name)
}

/// Reads a YAML file into JSON.
pub fn yaml_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read yaml");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse yaml");
    serde_json::to_value(v).expect("yaml to json")
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
