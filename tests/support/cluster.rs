//! The embedded cluster handle: an API server in a temporary state directory, optionally with the
//! local pod runner, and a wait-for-condition helper.
use std::path::{Path, PathBuf};
use std::time::Duration;

use cdkube::embedded::runner::VolumeMode;
use cdkube::embedded::{ApiServer, ApiServerConfig, Credential, Runner, RunnerConfig};
use k8s_openapi::api::core::v1::ServiceAccount;

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
        config.api_server = Some(self.server.addr());
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

    /// A kubeconfig (mode 0600, in the cluster's directory) that authenticates as ServiceAccount
    /// `ns/name` with a fresh one-hour TokenRequest token; the ServiceAccount is created if missing.
    pub async fn service_account_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.service_account_token(ns, name).await;
        let path = self.dir.path().join(format!("{ns}.{name}.kubeconfig"));
        self.server
            .write_kubeconfig(&path, Credential::Token(&token))
            .expect("write the ServiceAccount's kubeconfig");
        path
    }

    /// A fresh one-hour TokenRequest token for ServiceAccount `ns/name`, created if missing.
    pub async fn service_account_token(&self, ns: &str, name: &str) -> String {
        let admin = self.client().await;
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(admin.clone(), ns);
        if api.get_opt(name).await.expect("get ServiceAccount").is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("ServiceAccount");
            api.create(&Default::default(), &sa)
                .await
                .expect("create ServiceAccount");
        }
        cdkube::embedded::dev::request_token(&admin, ns, name, 3600)
            .await
            .expect("TokenRequest")
    }

    /// The operator's identity as deploy/ defines it: deploy/namespace.yaml and deploy/rbac.yaml
    /// applied, and a kubeconfig for their ServiceAccount `cdkube-system/cdkube`.
    pub async fn operator_kubeconfig(&self) -> PathBuf {
        let admin = self.client().await;
        for file in ["namespace.yaml", "rbac.yaml"] {
            let path = super::fixtures::repo_root().join("deploy").join(file);
            let text = std::fs::read_to_string(&path).expect("read deploy/ manifest");
            cdkube::embedded::dev::apply_manifests(&admin, &text, file)
                .await
                .expect("apply deploy/ manifest");
        }
        self.service_account_kubeconfig(
            cdkube::embedded::dev::OPERATOR_NAMESPACE,
            cdkube::embedded::dev::OPERATOR_SERVICE_ACCOUNT,
        )
        .await
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    ApiServer::client_from(kubeconfig)
        .await
        .expect("client from kubeconfig")
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
