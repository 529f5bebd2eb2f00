//! The embedded cluster handle: an API server in a temporary state directory, optionally with the
//! local pod runner, and a wait-for-condition helper.
use std::path::PathBuf;
use std::time::Duration;

use cdkube::embedded::runner::VolumeMode;
use cdkube::embedded::{ApiServer, ApiServerConfig, Runner, RunnerConfig};

/// A running API server (and, once started, a pod runner) with its state directory, removed on drop.
pub struct Cluster {
    pub server: ApiServer,
    pub dir: tempfile::TempDir,
    pub runner: Option<Runner>,
}

impl Cluster {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted the config.
    pub async fn start_with(tweak: impl FnOnce(&mut ApiServerConfig)) -> Self {
        Self::start_in(&std::env::temp_dir(), tweak).await
    }

    /// Starts a server whose state directory is in a new directory under `parent`.
    pub async fn start_in(parent: &std::path::Path, tweak: impl FnOnce(&mut ApiServerConfig)) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("tempdir");
        let mut config = ApiServerConfig::new(dir.path().join("state"));
        tweak(&mut config);
        let server = ApiServer::start(config).await.expect("start API server");
        Self {
            server,
            dir,
            runner: None,
        }
    }

    /// Starts the pod runner (node `cdkube-dev`) against this server; `mode` picks how volumes
    /// are made (the runner's default when `None`).
    pub async fn start_runner(&mut self, mode: Option<VolumeMode>) {
        let mut config = RunnerConfig::new(self.state_dir(), env!("CARGO_BIN_EXE_cdkube"));
        config.volume_mode = mode;
        let client = self.client().await;
        self.runner = Some(Runner::start(client, config).expect("start the pod runner"));
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.server.kubeconfig_path().to_path_buf()
    }

    /// kubectl against this cluster, with its cache and HOME in the cluster's directory.
    pub fn kubectl(&self) -> super::kubectl::Kubectl {
        super::kubectl::Kubectl::new(&self.kubeconfig(), self.dir.path())
    }

    /// A kube-rs client from the written kubeconfig.
    pub async fn client(&self) -> kube::Client {
        self.server.client().await.expect("client")
    }
}

impl Drop for Cluster {
    /// Dropping a runner leaves its Pod processes running (as a crash would); a finished or failed
    /// test must not, so what is left in the state directory is stopped here.
    fn drop(&mut self) {
        if self.runner.take().is_some() || self.state_dir().join("pods").exists() {
            cdkube::embedded::runner::sweep(&self.state_dir());
        }
    }
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

/// Whether object `name` is gone: the server answered 404. Any other failure fails the test
/// instead of reading as "deleted".
pub async fn gone<K>(api: &kube::Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(found) => found.is_none(),
        Err(e) => panic!("cannot tell whether {name} is gone: {e}"),
    }
}
