//! The operator under test: an embedded API server and pod runner in the test process, and `cdkube run`
//! as a separate process (so a test can SIGKILL and restart it), plus helpers to read Pipelines.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cdkube::api::{Pipeline, PipelineStatus, Run, RunPhase};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use super::cluster::{Cluster, wait_for};
use super::kubectl::Kubectl;

/// An embedded cluster (API server, Pipeline CRD, pod runner) in this process, for an operator.
pub struct Plane {
    pub cluster: Cluster,
    pub client: Client,
}

impl Plane {
    /// Starts the server, installs the CRD and starts the runner.
    pub async fn start() -> Plane {
        let mut cluster = Cluster::start().await;
        let client = cluster.client().await;
        cdkube::embedded::dev::install_crd(&client).await.expect("install CRD");
        cluster.start_runner(None).await;
        Plane { cluster, client }
    }

    /// A scratch directory that lives as long as the plane.
    pub fn dir(&self) -> &Path {
        self.cluster.dir.path()
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfig()
    }

    /// kubectl against this plane.
    pub fn kubectl(&self) -> Kubectl {
        self.cluster.kubectl()
    }

    /// Starts `cdkube run` against this plane with local repositories allowed.
    pub fn operator(&self) -> Operator {
        Operator::start(&self.kubeconfig(), &self.dir().join("operator"))
    }

    /// Applies a Pipeline manifest (YAML) in namespace `default`.
    pub async fn apply(&self, yaml: &str) -> Pipeline {
        let pipeline: Pipeline = serde_yaml::from_str(yaml).expect("Pipeline YAML");
        let name = pipeline.metadata.name.clone().expect("name");
        let api: Api<Pipeline> = Api::namespaced(self.client.clone(), "default");
        api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&pipeline))
            .await
            .expect("apply Pipeline")
    }

    /// Pipelines in `default`.
    pub fn pipelines(&self) -> Api<Pipeline> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The status of Pipeline `name` (default when it has none yet).
    pub async fn status(&self, name: &str) -> PipelineStatus {
        self.pipelines()
            .get(name)
            .await
            .expect("get Pipeline")
            .status
            .unwrap_or_default()
    }

    /// Waits until Pipeline `name`'s status satisfies `ok`, and returns it; panics with the last status.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&PipelineStatus) -> bool,
    ) -> PipelineStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status(name).await;
            if ok(&status) {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {name}: {what}; status: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for run `n` of `name` to reach `phase`.
    pub async fn wait_run(&self, name: &str, n: i64, phase: RunPhase, timeout: Duration) -> Run {
        let status = self
            .wait_status(name, &format!("run {n} {phase:?}"), timeout, |s| {
                s.history.iter().any(|r| r.run == n && r.phase == phase)
            })
            .await;
        status.history.into_iter().find(|r| r.run == n).expect("run")
    }

    /// Builder Pods of Pipeline `name`.
    pub async fn pods(&self, name: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let selector = format!("delivery.inge.4pr.es/pipeline={name}");
        api.list(&ListParams::default().labels(&selector))
            .await
            .expect("list Pods")
            .items
    }

    /// (reason, note) of the Events on Pipeline `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let selector = format!("involvedObject.name={name},involvedObject.kind=Pipeline");
        let mut events = api
            .list(&ListParams::default().fields(&selector))
            .await
            .expect("list Events")
            .items;
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// Waits for an Event on Pipeline `name` with `reason` whose note contains `text` (Events are published
    /// just after the status write they belong to).
    pub async fn wait_event(&self, name: &str, reason: &str, text: &str) {
        let what = format!("Event {reason} mentioning {text:?} on {name}");
        wait_until(&what, Duration::from_secs(30), || async {
            self.events(name)
                .await
                .iter()
                .any(|(r, n)| r == reason && n.contains(text))
        })
        .await;
    }

    /// Stops the runner and its Pod processes.
    pub async fn shutdown(mut self) {
        if let Some(runner) = self.cluster.runner.take() {
            runner.shutdown().await;
        }
    }
}

/// `cdkube run` as a child process; killed when dropped.
pub struct Operator {
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
    storage: PathBuf,
    kubeconfig: PathBuf,
}

impl Operator {
    /// Starts `cdkube run --allow-local-repos` with storage under `storage`.
    pub fn start(kubeconfig: &Path, storage: &Path) -> Operator {
        std::fs::create_dir_all(storage).expect("operator storage");
        let mut operator = Operator {
            child: None,
            log: storage.join("operator.log"),
            storage: storage.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
        };
        operator.spawn();
        operator
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_cdkube"))
            .args([
                "run",
                "--allow-local-repos",
                "--artifact-listen",
                "127.0.0.1:0",
                "--storage-dir",
            ])
            .arg(&self.storage)
            .arg("--signing-key-file")
            .arg(self.storage.join("signing-key"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,cdkube=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn cdkube run");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, then waits (up to 30s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// The operator's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Pipeline manifest following `repo`'s `main` every 10s with `build` as `sh -c` script.
pub fn pipeline_yaml(name: &str, repo: &str, policy: &str, build: &str) -> String {
    format!(
        "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
         repo: {repo}\n  branch: main\n  interval: 10s\n  concurrencyPolicy: {policy}\n  buildImage: busybox\n  \
         buildCommands: [sh, -c]\n  buildArguments: [{build}]\n  targetName: app\n  targetVersion: \"1.0\"\n",
        repo = serde_json::to_string(repo).unwrap(),
        build = serde_json::to_string(build).unwrap(),
    )
}

/// A build script that waits until `gate` exists, then exits 0: the test decides when a build ends. A
/// forgotten build still ends by itself, after 180s (longer than any wait of the tests).
pub fn gated_build(gate: &Path) -> String {
    format!(
        "i=0; while [ ! -e '{gate}' ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done; echo built $CDKUBE_COMMIT",
        gate = gate.display()
    )
}

/// Polls `check` until it is true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// The digest of commit `sha`'s export, as the operator computes it (the export is deterministic).
pub async fn export_digest(up: &super::Upstream, sha: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = cdkube::git::Engine::new(cdkube::git::EngineOptions::new(dir.path())).expect("engine");
    let url = format!("file://{}", up.bare_path());
    let spec = cdkube::git::RemoteSpec::new(&url, Some("main"), cdkube::git::Credentials::none(), true).expect("spec");
    engine.fetch(&spec).await.expect("fetch");
    engine
        .export(&spec, sha, &dir.path().join("out.tar.gz"))
        .await
        .expect("export")
        .digest
}
