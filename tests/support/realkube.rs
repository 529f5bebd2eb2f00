//! The real control plane: etcd, kube-apiserver and kube-controller-manager from `tests/realkube/`,
//! built by its `build.sh` (once; reused while its inputs are unchanged) and started by its `up.sh` —
//! once per test binary, shared by that binary's tests, each of which works in a namespace of its own.
//! `up.sh` watches this process and stops everything when it exits, so nothing outlives the tests.
//!
//! With `CDKUBE_E2E_KUBECONFIG` set, that cluster is used instead and nothing is started.
//! The first use also installs what `deploy/` gives the operator: its namespace, the CRD and RBAC.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::fixtures::repo_root;

/// A cluster ready for the tests: CRD established, deploy/'s RBAC applied.
pub struct RealKube {
    /// Admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// Where the launcher keeps certificates, data and logs (none for a user's cluster).
    pub dir: Option<PathBuf>,
}

/// The shared cluster, started on first use. A start failure fails every test that asks.
pub fn shared() -> &'static RealKube {
    static SHARED: OnceLock<Result<RealKube, String>> = OnceLock::new();
    match SHARED.get_or_init(start) {
        Ok(k) => k,
        Err(e) => panic!("the real control plane is not available: {e}"),
    }
}

fn start() -> Result<RealKube, String> {
    let cluster = match std::env::var_os("CDKUBE_E2E_KUBECONFIG") {
        Some(path) => RealKube {
            kubeconfig: PathBuf::from(path),
            dir: None,
        },
        None => launch()?,
    };
    install_deploy(&cluster.kubeconfig)?;
    Ok(cluster)
}

/// The target directory cargo builds into (the parent of this test's tmp dir).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// Builds (if needed) and starts the plane; waits for `DIR/ready`.
fn launch() -> Result<RealKube, String> {
    let script = repo_root().join("tests/realkube");
    let build = Command::new("bash")
        .arg(script.join("build.sh"))
        .env("CARGO_TARGET_DIR", target_dir())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running tests/realkube/build.sh: {e}"))?;
    if !build.success() {
        return Err(format!("tests/realkube/build.sh failed ({build})"));
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("realkube-{}", std::process::id()));
    let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("bash")
        .arg(script.join("up.sh"))
        .arg(&dir)
        .args(["--watch-pid", &std::process::id().to_string(), "--remove-dir"])
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting tests/realkube/up.sh: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.join("ready").exists() {
        let exited = child.try_wait().map_err(|e| e.to_string())?;
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
            return Err(format!("up.sh did not become ready ({exited:?}):\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The child is not waited for: it lives as long as this process, and stops when it is gone. Its
    // log was only needed to explain a failed start.
    std::mem::forget(child);
    let _ = std::fs::remove_file(dir.with_extension("log"));
    Ok(RealKube {
        kubeconfig: dir.join("admin.kubeconfig"),
        dir: Some(dir),
    })
}

/// What the operator needs from `deploy/` besides its Deployment: namespace, CRD, ServiceAccount and RBAC.
fn install_deploy(kubeconfig: &Path) -> Result<(), String> {
    let deploy = repo_root().join("deploy");
    let files = ["namespace.yaml", "crd.yaml", "rbac.yaml"].map(|f| deploy.join(f));
    let mut apply = vec!["apply", "--server-side", "--force-conflicts"];
    for f in &files {
        apply.extend(["-f", f.to_str().expect("utf-8 path")]);
    }
    kubectl(kubeconfig, &apply)?;
    kubectl(
        kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/pipelines.delivery.inge.4pr.es",
        ],
    )?;
    Ok(())
}

/// Runs kubectl with the admin kubeconfig; the error carries its stderr.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(super::kubectl::KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "30s"])
        .args(args)
        .output()
        .map_err(|e| format!("running kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A kubeconfig for the cluster of `admin` with `user` in place of the admin's credentials and
/// `namespace` as the default namespace.
pub fn kubeconfig_for(admin: &Path, token: &str, namespace: &str, out: &Path) {
    let config = kube::config::Kubeconfig::read_from(admin).expect("admin kubeconfig");
    let cluster = config.clusters[0].cluster.clone().expect("cluster");
    let server = cluster.server.expect("server");
    let ca = match (cluster.certificate_authority_data, cluster.certificate_authority) {
        (Some(data), _) => format!("certificate-authority-data: {data}"),
        (None, Some(file)) => format!("certificate-authority: {file}"),
        (None, None) => "insecure-skip-tls-verify: true".into(),
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {ca}\n\
         users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: {namespace}}}\n\
         current-context: c\n"
    );
    std::fs::write(out, yaml).expect("write kubeconfig");
}

/// A fresh namespace on the shared cluster for one test, with an admin kubeconfig and client whose
/// default namespace it is, and the namespace's `default` ServiceAccount in place (Pods need it).
pub struct Namespace {
    /// Scratch directory of the test; holds the kubeconfig.
    pub dir: tempfile::TempDir,
    /// The namespace.
    pub name: String,
    /// Admin kubeconfig with `name` as the default namespace.
    pub kubeconfig: PathBuf,
    /// Admin client with `name` as the default namespace.
    pub client: kube::Client,
}

impl Namespace {
    /// Creates `e2e-<random>` on the shared cluster (started on first use).
    pub async fn create() -> Namespace {
        let real = shared();
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let kubeconfig = dir.path().join("admin.kubeconfig");
        std::fs::copy(&real.kubeconfig, &kubeconfig).expect("copy admin kubeconfig");
        let path = kubeconfig.to_str().expect("utf-8 path");
        let ns_flag = format!("--namespace={name}");
        kubectl(
            &kubeconfig,
            &["config", "set-context", "--current", &ns_flag, "--kubeconfig", path],
        )
        .expect("set the test namespace");
        kubectl(&kubeconfig, &["create", "namespace", &name]).expect("create namespace");
        let client = super::cluster::client_for(&kubeconfig).await;
        super::cluster::wait_for(
            "the namespace's default ServiceAccount",
            Duration::from_secs(30),
            || async {
                let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    kube::Api::default_namespaced(client.clone());
                sas.get_opt("default").await.ok().flatten()
            },
        )
        .await;
        Namespace {
            dir,
            name,
            kubeconfig,
            client,
        }
    }
}
