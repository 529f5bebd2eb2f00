//! `cdkube dev`: a whole local control plane in one command — the API server emulator, the Pipeline
//! CRD, the local pod runner — plus the user's manifests, until Ctrl-C.
//!
//! The operator runs here too (`--no-operator` leaves it out, for tests that run `cdkube run` as a
//! separate process), with local repositories allowed and its artifact server on 127.0.0.1. It runs
//! as it does on a cluster: as ServiceAccount `cdkube-system/cdkube`, bound only by deploy/'s RBAC
//! (applied at start), with a TokenRequest token kept in `<state_dir>/operator/token` and renewed
//! before it expires (its client re-reads the file, as in-cluster clients do); the same identity is
//! in `<state_dir>/operator.kubeconfig` for `kubectl auth can-i`. With no
//! `-f`, a demo repository and a Pipeline that follows it are created, so a first build is one
//! `git commit` away. Each run Event is printed as one line.
//!
//! The API server keeps its objects in memory, so each start is a fresh cluster: Pod directories
//! (and any Pod processes) a killed earlier run left under `<state_dir>/pods/` are cleared first.
//! Run one `cdkube dev` per state directory.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use super::runner::{Runner, RunnerConfig};
use super::{ApiServer, ApiServerConfig};

/// Field manager of everything `cdkube dev` applies.
pub const FIELD_MANAGER: &str = "cdkube-dev";

/// deploy/'s namespace and RBAC, which the operator runs under.
const OPERATOR_MANIFESTS: [(&str, &str); 2] = [
    ("deploy/namespace.yaml", include_str!("../../deploy/namespace.yaml")),
    ("deploy/rbac.yaml", include_str!("../../deploy/rbac.yaml")),
];
/// The operator's ServiceAccount in deploy/rbac.yaml.
pub const OPERATOR_NAMESPACE: &str = "cdkube-system";
/// The operator's ServiceAccount in deploy/rbac.yaml.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "cdkube";
/// Lifetime of the operator's tokens (kube's default); renewed at 80% of it, as kubelet does.
const OPERATOR_TOKEN_SECONDS: i64 = 3600;

/// What went wrong; each is reported as one line and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory could not be created or resolved.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The API server did not start, or no client could be built for it.
    #[error("starting the API server: {0}")]
    Server(#[source] super::ApiServerError),
    /// The path of the running cdkube binary (which the runner starts for `cdkube` commands) is unknown.
    #[error("starting the API server: locating the cdkube binary: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// The server refused the Pipeline CRD.
    #[error("installing the Pipeline CRD: {}", api_message(.0))]
    Crd(#[source] kube::Error),
    /// The server took the Pipeline CRD but did not serve Pipelines in time.
    #[error("installing the Pipeline CRD: {name} is not served after 30s: {source}")]
    CrdNotServed {
        /// The CRD's name.
        name: String,
        /// The last discovery error.
        source: kube::Error,
    },
    /// The pod runner did not start.
    #[error(transparent)]
    Runner(#[from] super::runner::Error),
    /// A `-f` file could not be read: an I/O error, not a regular file, over the size limit, not UTF-8.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::input::ReadError,
    },
    /// A manifest nests deeper than the limit (checked before parsing, see [`crate::input`]).
    #[error("{source_name}: {source}")]
    Limit {
        /// File name.
        source_name: String,
        /// The limit it passed.
        source: crate::input::LimitError,
    },
    /// A document of a `-f` file is not a Kubernetes object or was refused by the server.
    #[error("{source_name}: document {index}: {source}")]
    Manifest {
        /// File name.
        source_name: String,
        /// 1-based index of the YAML document.
        index: usize,
        /// What is wrong.
        source: Box<ManifestError>,
    },
    /// The operator did not start.
    #[error("starting the operator: {0}")]
    Operator(#[from] crate::controller::StartError),
    /// The operator's ServiceAccount, RBAC or token could not be set up.
    #[error("running the operator as {OPERATOR_NAMESPACE}/{OPERATOR_SERVICE_ACCOUNT}: {0}")]
    OperatorAccount(String),
    /// The demo repository could not be created.
    #[error("creating the demo repository: {0}")]
    Demo(String),
    /// Installing the Ctrl-C / SIGTERM handler failed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Why one document of a manifest was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document is not YAML, or not a Kubernetes object.
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    /// A required part of the object is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The server serves no resource of the object's apiVersion and kind.
    #[error("the server does not serve {api_version}/{kind}: {source}")]
    NotServed {
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
        /// The discovery error.
        source: kube::Error,
    },
    /// The server refused the request; the message is the server's own (it names the field).
    #[error("{}", api_message(.0))]
    Api(#[source] kube::Error),
}

/// Options of `cdkube dev`.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// API server port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where the kubeconfig, Pod workspaces and logs live.
    pub state_dir: PathBuf,
    /// Manifests to apply once the plane is up.
    pub files: Vec<PathBuf>,
    /// Print only the kubeconfig path on stdout, once everything is ready (for scripts).
    pub print_kubeconfig_path: bool,
    /// Run the operator in the plane.
    pub operator: bool,
}

/// One applied object, as reported to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `kind.group/name` as kubectl prints it (`pipeline.delivery.inge.4pr.es/doing-nothing`).
    pub object: String,
    /// `created` or `configured`.
    pub verb: &'static str,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.object, self.verb)
    }
}

/// Installs (create-or-update) the Pipeline CRD and waits until the server serves Pipelines.
pub async fn install_crd(client: &Client) -> Result<(), Error> {
    let crd = crate::api::crd::crd();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(&crd)).await.map_err(Error::Crd)?;
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.served)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let gvk = GroupVersionKind::gvk(&crd.spec.group, &version, &crd.spec.names.kind);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match discovery::pinned_kind(client, &gvk).await {
            Ok(_) => return Ok(()),
            Err(source) if tokio::time::Instant::now() > deadline => {
                return Err(Error::CrdNotServed { name, source });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A token for ServiceAccount `ns/name` from a TokenRequest, valid for `seconds` (at least 600), for
/// the API server's own audience.
pub async fn request_token(client: &Client, ns: &str, name: &str, seconds: i64) -> Result<String, kube::Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued: TokenRequest = api
        .create_subresource("token", name, &kube::api::PostParams::default(), &request)
        .await?;
    Ok(issued.status.and_then(|s| s.token).unwrap_or_default())
}

/// Writes `token` to `path` (mode 0600) by renaming a new file over it, so readers see a whole token.
fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    crate::embedded::state_dir::replace_file(path, token.as_bytes())
}

/// The operator's identity on this plane: deploy/'s namespace and RBAC applied, a token for its
/// ServiceAccount in `<state_dir>/operator/token`, a kubeconfig using that file, and a task that
/// renews the token.
struct OperatorAccount {
    client: Client,
    renewal: tokio::task::JoinHandle<()>,
}

async fn operator_account(plane: &ApiServer, admin: &Client, state_dir: &Path) -> Result<OperatorAccount, Error> {
    for (name, text) in OPERATOR_MANIFESTS {
        apply_manifests(admin, text, name).await?;
    }
    let failed = |e: &dyn std::fmt::Display| Error::OperatorAccount(e.to_string());
    let token_file = state_dir.join("operator").join("token");
    let token = request_token(
        admin,
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
        OPERATOR_TOKEN_SECONDS,
    )
    .await
    .map_err(|e| failed(&api_message(&e)))?;
    write_token(&token_file, &token).map_err(|e| failed(&e))?;
    let kubeconfig = state_dir.join("operator.kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, super::Credential::TokenFile(&token_file))
        .map_err(|e| failed(&e))?;
    let client = ApiServer::client_from(&kubeconfig).await.map_err(|e| failed(&e))?;
    let renewal = tokio::spawn(renew_token(admin.clone(), token_file));
    Ok(OperatorAccount { client, renewal })
}

/// Renews the operator's token at 80% of its lifetime (every 30s after a failure) until aborted.
async fn renew_token(admin: Client, token_file: PathBuf) {
    let every = Duration::from_secs((OPERATOR_TOKEN_SECONDS as u64) * 4 / 5);
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let renewed = request_token(
            &admin,
            OPERATOR_NAMESPACE,
            OPERATOR_SERVICE_ACCOUNT,
            OPERATOR_TOKEN_SECONDS,
        )
        .await
        .map_err(|e| api_message(&e))
        .and_then(|token| write_token(&token_file, &token).map_err(|e| e.to_string()));
        wait = match renewed {
            Ok(()) => every,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the operator's ServiceAccount token; retrying in 30s");
                Duration::from_secs(30)
            }
        };
    }
}

/// Applies every document of a multi-document YAML text (server-side apply, create-or-update),
/// in order. `source_name` names the text in errors. The text is parsed on the blocking pool.
pub async fn apply_manifests(client: &Client, text: &str, source_name: &str) -> Result<Vec<Applied>, Error> {
    let (text, name) = (text.to_owned(), source_name.to_owned());
    let objects = blocking(move || parse_manifests(&text, &name)).await?;
    apply_objects(client, source_name, objects).await
}

/// The objects of a multi-document YAML text, by 1-based document index, after the input limits
/// (serde_yaml is quadratic on deep nesting). Blocking: call it off the async workers.
pub fn parse_manifests(text: &str, source_name: &str) -> Result<Vec<(usize, DynamicObject)>, Error> {
    crate::input::check(text.as_bytes(), crate::input::Limits::FILE).map_err(|source| Error::Limit {
        source_name: source_name.into(),
        source,
    })?;
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let err = |source: serde_yaml::Error| manifest_error(source_name, index, source.into());
        let value = serde_yaml::Value::deserialize(doc).map_err(err)?;
        if value.is_null() {
            continue;
        }
        objects.push((index, serde_yaml::from_value(value).map_err(err)?));
    }
    Ok(objects)
}

fn manifest_error(source_name: &str, index: usize, source: ManifestError) -> Error {
    Error::Manifest {
        source_name: source_name.into(),
        index,
        source: Box::new(source),
    }
}

/// Applies parsed objects in order.
async fn apply_objects(
    client: &Client,
    source_name: &str,
    objects: Vec<(usize, DynamicObject)>,
) -> Result<Vec<Applied>, Error> {
    let mut applied = Vec::new();
    for (index, obj) in objects {
        let one = apply_one(client, obj).await;
        applied.push(one.map_err(|source| manifest_error(source_name, index, source))?);
    }
    Ok(applied)
}

/// Runs `f` on the blocking pool; a panic there continues here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn apply_one(client: &Client, mut obj: DynamicObject) -> Result<Applied, ManifestError> {
    let invalid = |message: &str| ManifestError::Invalid(message.into());
    let types = obj
        .types
        .clone()
        .ok_or_else(|| invalid("apiVersion and kind are required"))?;
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name is required"))?;
    // As client-go's IsValidPathSegmentName: the name becomes a URL path segment.
    if name == "." || name == ".." || name.contains(['/', '%']) {
        return Err(ManifestError::Invalid(format!(
            "invalid resource name {name:?}: may not be '.' or '..' or contain '/' or '%'"
        )));
    }
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), types.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|source| ManifestError::NotServed {
            api_version: types.api_version.clone(),
            kind: types.kind.clone(),
            source,
        })?;
    let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
        let ns = obj.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        obj.metadata.namespace = Some(ns.clone());
        Api::namespaced_with(client.clone(), &ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let existed = api.get_opt(&name).await.map_err(ManifestError::Api)?.is_some();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(&obj))
        .await
        .map_err(ManifestError::Api)?;
    Ok(Applied {
        object: format!("{}/{name}", kind_label(&resource)),
        verb: if existed { "configured" } else { "created" },
    })
}

/// The server's own message for a refused request (it names the field), else the client error.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// `pipeline.delivery.inge.4pr.es` / `pod`, as kubectl names objects.
fn kind_label(r: &ApiResource) -> String {
    let kind = r.kind.to_lowercase();
    if r.group.is_empty() {
        kind
    } else {
        format!("{kind}.{}", r.group)
    }
}

/// One `-f` file, read and parsed before the plane starts.
struct ManifestFile {
    name: String,
    objects: Vec<(usize, DynamicObject)>,
}

/// Reads and parses the `-f` files on the blocking pool: a file that is not a regular file, is over
/// the size limit, nests too deep or is not YAML ends `cdkube dev` before anything starts.
async fn read_files(files: &[PathBuf]) -> Result<Vec<ManifestFile>, Error> {
    let files = files.to_vec();
    blocking(move || {
        let mut out = Vec::new();
        for path in files {
            let text = crate::input::read_text(&path, crate::input::MAX_FILE_BYTES).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let name = path.display().to_string();
            let objects = parse_manifests(&text, &name)?;
            out.push(ManifestFile { name, objects });
        }
        Ok(out)
    })
    .await
}

/// Applies the `-f` files in order.
async fn apply_files(client: &Client, files: Vec<ManifestFile>) -> Result<Vec<Applied>, Error> {
    let mut out = Vec::new();
    for file in files {
        out.extend(apply_objects(client, &file.name, file.objects).await?);
    }
    Ok(out)
}

/// What to try, printed once the plane is up. `demo` is the demo repository, when one was made.
fn banner(server: &str, kubeconfig: &Path, applied: &[Applied], operator: bool, demo: Option<&Path>) -> String {
    let kc = kubeconfig.display();
    let operator = if operator {
        "operator: running as ServiceAccount cdkube-system/cdkube under deploy/rbac.yaml (polls Pipelines' repositories and builds each new commit)"
    } else {
        "operator: not started (--no-operator); run `cdkube run --allow-local-repos` against this plane"
    };
    let mut out = format!(
        "cdkube dev: API server {server}, pod runner on node {node}\n{operator}\nkubeconfig: {kc}\n",
        node = super::runner::DEFAULT_NODE_NAME,
    );
    for a in applied {
        out.push_str(&format!("applied: {a}\n"));
    }
    out.push_str(&format!(
        "\nTry:\n  export KUBECONFIG={kc}\n  kubectl get pipelines -w\n"
    ));
    match demo {
        Some(repo) => out.push_str(&format!(
            "  kubectl describe pipeline demo\n\
             and push a commit to the demo repository to see it built:\n  \
             git -C {repo} commit --allow-empty -m 'my first change'\n  \
             kubectl get pods; kubectl logs POD\n",
            repo = repo.display()
        )),
        None => out.push_str(
            "  kubectl apply -f fixtures/pipelines/doing-nothing.yaml\n  kubectl describe pipeline doing-nothing\n  \
             kubectl get pods\n  kubectl logs POD\n",
        ),
    }
    out.push_str(&format!(
        "(or pass --kubeconfig {kc} to each kubectl command)\n\nCtrl-C stops the plane and every Pod process.\n"
    ));
    out
}

/// The demo Pipeline `cdkube dev` applies when given no `-f`: it follows `repo`'s `main` every 10s.
fn demo_pipeline(repo: &Path) -> String {
    format!(
        "apiVersion: delivery.inge.4pr.es/v1alpha1\n\
         kind: Pipeline\n\
         metadata: {{name: demo, namespace: default}}\n\
         spec:\n  \
           repo: {repo}\n  \
           branch: main\n  \
           interval: 10s\n  \
           buildImage: busybox\n  \
           buildCommands: [sh, -c]\n  \
           buildArguments: ['echo \"building $CDKUBE_COMMIT\"; ls -l; echo done']\n  \
           targetName: demo\n  \
           targetVersion: \"0.1\"\n",
        repo = serde_json::to_string(&repo.display().to_string()).unwrap_or_default()
    )
}

/// Creates (once) a git repository with one commit on `main` under the state directory.
fn demo_repository(state_dir: &Path) -> Result<PathBuf, Error> {
    let repo = state_dir.join("demo");
    if repo.join(".git").is_dir() {
        return Ok(repo);
    }
    std::fs::create_dir_all(&repo).map_err(|e| Error::Demo(e.to_string()))?;
    std::fs::write(
        repo.join("README.md"),
        "# demo\n\nEvery commit here is built by `cdkube dev`.\n",
    )
    .map_err(|e| Error::Demo(e.to_string()))?;
    for args in [
        &["init", "--quiet", "--initial-branch=main"][..],
        &["add", "README.md"],
        &[
            "-c",
            "user.name=cdkube",
            "-c",
            "user.email=cdkube@localhost",
            "commit",
            "--quiet",
            "-m",
            "demo: first commit",
        ],
    ] {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::Demo(format!("running git: {e}")))?;
        if !status.success() {
            return Err(Error::Demo(format!("git {} failed: {status}", args.join(" "))));
        }
    }
    Ok(repo)
}

/// SIGINT and SIGTERM, caught from the moment this exists (so a Ctrl-C during start-up is kept and
/// handled once the plane is up, instead of killing the process and orphaning Pod processes).
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            int: signal(SignalKind::interrupt()).map_err(Error::Signals)?,
            term: signal(SignalKind::terminate()).map_err(Error::Signals)?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The `-f` files, or, without any, the demo repository and its Pipeline (returned with its path).
async fn apply(
    client: &Client,
    files: Vec<ManifestFile>,
    state_dir: &Path,
) -> Result<(Vec<Applied>, Option<PathBuf>), Error> {
    if !files.is_empty() {
        return Ok((apply_files(client, files).await?, None));
    }
    let repo = demo_repository(state_dir)?;
    let applied = apply_manifests(client, &demo_pipeline(&repo), "demo Pipeline").await?;
    Ok((applied, Some(repo)))
}

/// The operator running in the plane, and how to stop it.
struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    renewal: tokio::task::JoinHandle<()>,
}

/// Starts the operator as its ServiceAccount (local repositories allowed, artifact server on a free
/// 127.0.0.1 port, signing key in the state directory) and prints one line per run Event.
async fn start_operator(account: OperatorAccount, state_dir: &Path) -> Operator {
    let OperatorAccount { client, renewal } = account;
    let (lines, mut printed) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = printed.recv().await {
            println!("{line}");
        }
    });
    let options = crate::controller::Options {
        namespace: None,
        storage_dir: state_dir.join("operator"),
        artifact_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        artifact_url: String::new(),
        fetch_image: "cdkube".into(),
        probe_concurrency: 8,
        max_pack_bytes: crate::git::DEFAULT_MAX_PACK_BYTES,
        reconcile_concurrency: 4,
        allow_local_repos: true,
        signing_key: crate::controller::SigningKey::File(state_dir.join("operator").join("signing-key")),
        notify: Some(lines),
        label_selector: None,
        webhook: None,
        metrics: std::sync::Arc::new(crate::telemetry::Metrics::new()),
        health: crate::telemetry::Health::new(std::time::Duration::from_secs(60)),
        reconciling_stopped: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = futures::FutureExt::map(stopped, |_| ());
        if let Err(e) = crate::controller::run(client, options, shutdown).await {
            eprintln!("cdkube dev: operator: {e}");
        }
    });
    Operator { stop, task, renewal }
}

async fn stop_operator(operator: Option<Operator>) {
    if let Some(operator) = operator {
        let _ = operator.stop.send(());
        let _ = operator.task.await;
        operator.renewal.abort();
    }
}

/// Runs the plane until SIGINT/SIGTERM; then stops every Pod process and the server.
pub async fn run(opts: DevOptions) -> Result<(), Error> {
    // Bad input is refused before anything starts.
    let files = read_files(&opts.files).await?;
    let state_err = |source| Error::StateDir {
        path: opts.state_dir.clone(),
        source,
    };
    crate::embedded::state_dir::create_state_dir(&opts.state_dir).map_err(state_err)?;
    let state_dir = std::fs::canonicalize(&opts.state_dir).map_err(state_err)?;
    // Signals are caught from here on, so a Ctrl-C during start-up still stops cleanly.
    let mut stop = StopSignals::install()?;
    // The API server starts empty: Pods (and processes) of an earlier, killed plane are gone.
    super::runner::sweep(&state_dir);
    let mut config = ApiServerConfig::new(&state_dir);
    config.port = opts.port;
    let plane = ApiServer::start(config).await.map_err(Error::Server)?;
    let client = match plane.client().await {
        Ok(c) => c,
        Err(e) => {
            plane.shutdown().await;
            return Err(Error::Server(e));
        }
    };
    let result = async {
        install_crd(&client).await?;
        let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
        let mut config = RunnerConfig::new(&state_dir, exe);
        config.api_server = Some(plane.addr());
        let runner = Runner::start(client.clone(), config)?;
        Ok::<_, Error>(runner)
    }
    .await;
    let runner = match result {
        Ok(r) => r,
        Err(e) => {
            plane.shutdown().await;
            return Err(e);
        }
    };
    // Manifests first: a bad -f file ends the plane before the operator starts.
    let applied = match apply(&client, files, &state_dir).await {
        Ok(a) => a,
        Err(e) => {
            runner.shutdown().await;
            plane.shutdown().await;
            return Err(e);
        }
    };
    let operator = match opts.operator {
        true => match operator_account(&plane, &client, &state_dir).await {
            Ok(account) => Some(start_operator(account, &state_dir).await),
            Err(e) => {
                runner.shutdown().await;
                plane.shutdown().await;
                return Err(e);
            }
        },
        false => None,
    };
    // Write errors (a closed pipe) must not panic the plane away from its Pod processes.
    let mut out = std::io::stdout();
    let text = if opts.print_kubeconfig_path {
        format!("{}\n", plane.kubeconfig_path().display())
    } else {
        banner(
            &plane.url(),
            plane.kubeconfig_path(),
            &applied.0,
            opts.operator,
            applied.1.as_deref(),
        )
    };
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    stop.wait().await;
    tracing::info!("stopping: the operator, then Pod processes, then the API server");
    stop_operator(operator).await;
    runner.shutdown().await;
    plane.shutdown().await;
    Ok(())
}
