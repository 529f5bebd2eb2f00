//! The operator under test: a control plane — the embedded API server and pod runner in the test
//! process, or the real kube-apiserver of [`realkube`] with a node agent in the test process — and
//! `cdkube run` as a separate process (so a test can SIGKILL and restart it), plus helpers to read Pipelines.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cdkube::api::{Pipeline, PipelineStatus, Run, RunPhase};
use cdkube::embedded::node::{NodeAgent, NodeConfig};
use cdkube::embedded::runner::RunnerConfig;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::cluster::{Cluster, wait_for};
use super::kubectl::Kubectl;
use super::realkube;

/// Where a [`Plane`] runs.
enum Backend {
    /// The embedded API server and pod runner, in this process, one per test.
    Embedded(Cluster),
    /// The shared real control plane (see [`realkube`]) and a node agent of this test's own.
    Real {
        dir: tempfile::TempDir,
        agent: Option<NodeAgent>,
    },
}

/// A control plane with the Pipeline CRD and something that runs Pods, for an operator. Each test has
/// its own namespace on it: `default` on an embedded plane, a fresh one on the shared real plane.
pub struct Plane {
    /// An admin client whose default namespace is the test's.
    pub client: Client,
    namespace: String,
    /// Admin kubeconfig, with the test's namespace as the default.
    kubeconfig: PathBuf,
    /// What the operator authenticates with: a token of deploy/'s ServiceAccount, on either plane.
    operator_kubeconfig: PathBuf,
    /// Where gate files live: outside the state directory, which builds in a private mount
    /// namespace do not see.
    gates: tempfile::TempDir,
    backend: Backend,
}

/// A directory builds can read: under the target dir, away from the (hidden) state directory.
fn gates() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("gates dir")
}

impl Plane {
    /// An embedded plane: starts the server, installs the CRD, starts the runner, and applies
    /// deploy/'s namespace and RBAC for the operator's identity.
    pub async fn start() -> Plane {
        let mut cluster = Cluster::start().await;
        let client = cluster.client().await;
        cdkube::embedded::dev::install_crd(&client).await.expect("install CRD");
        cluster.start_runner(None).await;
        let operator_kubeconfig = cluster.operator_kubeconfig().await;
        Plane {
            client,
            namespace: "default".into(),
            kubeconfig: cluster.kubeconfig(),
            operator_kubeconfig,
            gates: gates(),
            backend: Backend::Embedded(cluster),
        }
    }

    /// A namespace of its own on the real control plane (started on first use), a node agent for it,
    /// and a kubeconfig for the operator holding a TokenRequest token of deploy/'s ServiceAccount
    /// `cdkube-system/cdkube`: the operator has exactly the rights deploy/rbac.yaml grants.
    pub async fn start_real() -> Plane {
        let realkube::Namespace {
            dir,
            name: namespace,
            kubeconfig,
            client,
        } = realkube::Namespace::create().await;
        let real = realkube::shared();
        let operator_kubeconfig = dir.path().join("operator.kubeconfig");
        let token = operator_token(&client).await;
        realkube::kubeconfig_for(&real.kubeconfig, &token, &namespace, &operator_kubeconfig);
        let mut runner = RunnerConfig::new(dir.path().join("node"), env!("CARGO_BIN_EXE_cdkube"));
        runner.node_name = format!("cdkube-{namespace}");
        runner.namespace = Some(namespace.clone());
        let config = NodeConfig {
            runner,
            listen: "127.0.0.1:0".parse().expect("address"),
        };
        let agent = NodeAgent::start(client.clone(), config)
            .await
            .expect("start the node agent");
        Plane {
            client,
            namespace,
            kubeconfig,
            operator_kubeconfig,
            gates: gates(),
            backend: Backend::Real {
                dir,
                agent: Some(agent),
            },
        }
    }

    /// The test's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A file for [`gated_build`]: absent until the test creates it, visible to builds.
    pub fn gate(&self) -> PathBuf {
        self.gates.path().join("gate")
    }

    /// A scratch directory that lives as long as the plane.
    pub fn dir(&self) -> &Path {
        match &self.backend {
            Backend::Embedded(cluster) => cluster.dir.path(),
            Backend::Real { dir, .. } => dir.path(),
        }
    }

    /// The admin kubeconfig (the test's namespace is its default).
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// kubectl against this plane, as admin, in the test's namespace.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig, self.dir())
    }

    /// Starts `cdkube run` against this plane with local repositories allowed (on the real plane,
    /// watching only the test's namespace, as deploy/'s ServiceAccount).
    pub fn operator(&self) -> Operator {
        self.operator_with("operator", &[])
    }

    /// Like [`Plane::operator`], with storage under `name` (also its Lease identity) and more flags.
    pub fn operator_with(&self, name: &str, args: &[&str]) -> Operator {
        let namespace = matches!(self.backend, Backend::Real { .. }).then(|| self.namespace.clone());
        let args = args.iter().map(|a| a.to_string()).collect();
        Operator::start_with(&self.operator_kubeconfig, &self.dir().join(name), namespace, args)
    }

    /// An API of namespaced kind `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies a Pipeline manifest (YAML) in the test's namespace.
    pub async fn apply(&self, yaml: &str) -> Pipeline {
        let pipeline: Pipeline = serde_yaml::from_str(yaml).expect("Pipeline YAML");
        let name = pipeline.metadata.name.clone().expect("name");
        self.pipelines()
            .patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&pipeline))
            .await
            .expect("apply Pipeline")
    }

    /// Pipelines in the test's namespace.
    pub fn pipelines(&self) -> Api<Pipeline> {
        self.api()
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
        let selector = format!("delivery.inge.4pr.es/pipeline={name}");
        self.api::<Pod>()
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list Pods")
            .items
    }

    /// (reason, note) of the Events on Pipeline `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let selector = format!("involvedObject.name={name},involvedObject.kind=Pipeline");
        let mut events = self
            .api::<Event>()
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

    /// Stops the runner (or node agent) and its Pod processes; on the real plane the test's
    /// namespace is deleted too (without waiting).
    pub async fn shutdown(mut self) {
        match &mut self.backend {
            Backend::Embedded(cluster) => {
                if let Some(runner) = cluster.runner.take() {
                    runner.shutdown().await;
                }
            }
            Backend::Real { agent, .. } => {
                if let Some(agent) = agent.take() {
                    agent.shutdown().await;
                }
                let namespaces: Api<Namespace> = Api::all(self.client.clone());
                let _ = namespaces.delete(&self.namespace, &Default::default()).await;
            }
        }
    }
}

/// A one-hour TokenRequest token of deploy/'s ServiceAccount `cdkube-system/cdkube`.
async fn operator_token(admin: &Client) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "cdkube-system");
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    });
    let issued: serde_json::Value = sas
        .create_subresource("token", "cdkube", &PostParams::default(), &request)
        .await
        .expect("TokenRequest for cdkube-system/cdkube");
    issued["status"]["token"].as_str().expect("token").to_string()
}

impl Drop for Plane {
    /// A real plane's Pod processes are stopped even when the test failed before `shutdown`.
    fn drop(&mut self) {
        if let Backend::Real { dir, agent } = &mut self.backend
            && agent.take().is_some()
        {
            cdkube::embedded::runner::sweep(&dir.path().join("node"));
        }
    }
}

/// The line the log gets before each start of the process.
const RUN_MARKER: &str = "--- cdkube run starting";

/// `cdkube run` as a child process; killed when dropped.
pub struct Operator {
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
    storage: PathBuf,
    kubeconfig: PathBuf,
    namespace: Option<String>,
    args: Vec<String>,
}

impl Operator {
    /// Starts `cdkube run --allow-local-repos` with storage under `storage`, watching `namespace`
    /// (all namespaces when `None`).
    pub fn start(kubeconfig: &Path, storage: &Path, namespace: Option<String>) -> Operator {
        Operator::start_with(kubeconfig, storage, namespace, Vec::new())
    }

    /// Like [`Operator::start`], with more flags. The operator's Lease identity is the storage
    /// directory's name, so a restart re-takes its own Lease at once, as a restarted container of the
    /// same Pod does; its ops endpoints listen on a free port ([`Operator::endpoint`]).
    pub fn start_with(kubeconfig: &Path, storage: &Path, namespace: Option<String>, args: Vec<String>) -> Operator {
        std::fs::create_dir_all(storage).expect("operator storage");
        let mut operator = Operator {
            child: None,
            log: storage.join("operator.log"),
            storage: storage.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            namespace,
            args,
        };
        operator.spawn();
        operator
    }

    /// The base URL (`http://127.0.0.1:PORT`) of the server the log announces as `what` (`ops
    /// endpoints`, `webhook receiver`) in its current run; waits for the announcement.
    pub async fn endpoint(&self, what: &str) -> String {
        let marker = format!("{what} on http://");
        wait_for(&format!("the operator's {what}"), Duration::from_secs(60), || async {
            let log = self.log();
            let this_run = log.rsplit(RUN_MARKER).next().unwrap_or("");
            this_run.rsplit_once(&marker).map(|(_, rest)| {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                format!("http://{addr}")
            })
        })
        .await
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        use std::io::Write;
        let mut marker = log.try_clone().expect("operator log");
        let _ = writeln!(marker, "{RUN_MARKER}");
        let identity = self
            .storage
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("operator")
            .to_owned();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cdkube"));
        command
            .args(["run", "--allow-local-repos", "--artifact-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--leader-identity", &identity])
            .arg("--storage-dir")
            .arg(&self.storage)
            .arg("--signing-key-file")
            .arg(self.storage.join("signing-key"))
            .args(&self.args);
        if let Some(ns) = &self.namespace {
            command.args(["--namespace", ns]);
        }
        let child = command
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

    /// Waits up to `timeout` for the process to exit by itself; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The operator's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    /// Kills the process; when the test is failing, the end of its log goes to the test's output.
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the operator's log, last lines ---");
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

/// A Pipeline manifest following `repo`'s `main` every 10s with `build` as `sh -c` script.
pub fn pipeline_yaml(name: &str, repo: &str, policy: &str, build: &str) -> String {
    format!(
        "apiVersion: delivery.inge.4pr.es/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  \
         repo: {repo}\n  branch: main\n  interval: 10s\n  concurrencyPolicy: {policy}\n  buildImage: busybox\n  \
         buildCommands: [sh, -c]\n  buildArguments: [{build}]\n  targetName: app\n  targetVersion: \"1.0\"\n",
        repo = serde_json::to_string(repo).unwrap(),
        build = serde_json::to_string(build).unwrap(),
    )
}

/// A build script that waits until `gate` exists, then exits 0: the test decides when a build ends. A
/// forgotten build still ends by itself, after 180s (longer than any wait of the tests). The gate must
/// be where builds can see it: [`Plane::gate`].
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
