//! `cdkube run`: the operator.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use cdkube::controller::{self, Election, SigningKey, WebhookOptions};
use cdkube::telemetry::{Health, Leadership, LogFormat, Metrics};
use cdkube::webhook::SecretSource;

/// Flags of `cdkube run`; each has an environment fallback for Deployments.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Watch Pipelines in this namespace only (default: all namespaces).
    #[arg(short = 'n', long, env = "CDKUBE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Git caches and artifacts live here.
    #[arg(long, env = "CDKUBE_STORAGE_DIR", default_value = "/var/lib/cdkube")]
    storage_dir: PathBuf,
    /// Address the artifact server listens on.
    #[arg(long, env = "CDKUBE_ARTIFACT_LISTEN", default_value = "0.0.0.0:9090")]
    artifact_listen: SocketAddr,
    /// Base URL builder Pods use to reach the artifact server (default: http://<artifact-listen>).
    #[arg(long, env = "CDKUBE_ARTIFACT_URL", default_value = "")]
    artifact_url: String,
    /// Image of the builder Pods' fetch-source init container (this operator's image).
    #[arg(long, env = "CDKUBE_FETCH_IMAGE", default_value = concat!("ghcr.io/inge4pres/cdkube:", env!("CARGO_PKG_VERSION")))]
    fetch_image: String,
    /// Git operations (probe, fetch, export) at once.
    #[arg(long, env = "CDKUBE_PROBE_CONCURRENCY", default_value_t = 8)]
    probe_concurrency: usize,
    /// Largest pack a repository server may send for one fetch (e.g. `512MiB`); also the largest object a
    /// fetch inflates in memory. A larger one fails the fetch with TooLarge, naming this limit.
    #[arg(long, env = "CDKUBE_MAX_PACK_SIZE", default_value_t = cdkube::git::DEFAULT_MAX_PACK_BYTES, value_parser = cdkube::git::parse_size)]
    max_pack_size: u64,
    /// Pipelines reconciled at once.
    #[arg(long, env = "CDKUBE_RECONCILE_CONCURRENCY", default_value_t = 4)]
    reconcile_concurrency: u16,
    /// Accept file:// and local-path repositories (reads the operator's own disk; for local use only).
    #[arg(long, env = "CDKUBE_ALLOW_LOCAL_REPOS")]
    allow_local_repos: bool,
    /// Namespace of the signing-key Secret (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cdkube-system")]
    operator_namespace: String,
    /// Secret holding the artifact URL signing key (created if absent).
    #[arg(
        long,
        env = "CDKUBE_SIGNING_KEY_SECRET",
        default_value = "cdkube-artifact-signing-key"
    )]
    signing_key_secret: String,
    /// Read the signing key from this file instead (created 0600 if absent).
    #[arg(long, env = "CDKUBE_SIGNING_KEY_FILE", conflicts_with = "signing_key_secret")]
    signing_key_file: Option<PathBuf>,
    /// Handle only the Pipelines this label selector selects (a shard, e.g. `shard=a`); each shard
    /// elects its own leader.
    #[arg(long, env = "CDKUBE_LABEL_SELECTOR")]
    label_selector: Option<String>,
    /// Address of the ops endpoints: /metrics, /healthz, /readyz.
    #[arg(long, env = "CDKUBE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Address of the webhook receiver (/hooks/github, /hooks/gitlab, /hooks/generic).
    #[arg(long, env = "CDKUBE_WEBHOOK_LISTEN", default_value = "0.0.0.0:9292")]
    webhook_listen: SocketAddr,
    /// Secret (in the operator's namespace) with the webhook secrets: keys `github`, `gitlab`, `generic`
    /// or `token`. Without it, no webhook receiver runs.
    #[arg(long, env = "CDKUBE_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// Campaign for a Lease so that only one replica works; `--leader-elect=false` for a single replica.
    #[arg(long, env = "CDKUBE_LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    leader_elect: bool,
    /// How long the leader's Lease holds without renewal: the longest a takeover waits after a crash.
    #[arg(long, env = "CDKUBE_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease (default: the Pod name, else the host name and process id).
    #[arg(long, env = "POD_NAME")]
    leader_identity: Option<String>,
    /// How long the Pipeline watch may fail without a success before /healthz reports unhealthy.
    #[arg(long, env = "CDKUBE_WATCH_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    watch_stall_timeout: Duration,
    /// Log format.
    #[arg(long, env = "CDKUBE_LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    pub(crate) log_format: Format,
}

/// Log formats of `--log-format`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<Format> for LogFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Text => LogFormat::Text,
            Format::Json => LogFormat::Json,
        }
    }
}

impl RunArgs {
    /// How this replica campaigns, if it does.
    fn election(&self) -> Option<Election> {
        if !self.leader_elect {
            return None;
        }
        let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
        let identity = self.leader_identity.clone().unwrap_or_else(default_identity);
        Some(Election {
            namespace: self.operator_namespace.clone(),
            identity,
            lease_duration: self.lease_duration,
            pod,
        })
    }

    fn options(self, client: &kube::Client, metrics: Arc<Metrics>, health: Health) -> controller::Options {
        let webhook = self.webhook_secret.map(|name| WebhookOptions {
            listen: self.webhook_listen,
            secrets: SecretSource::Kubernetes {
                client: client.clone(),
                namespace: self.operator_namespace.clone(),
                name,
            },
        });
        let signing_key = match self.signing_key_file {
            Some(path) => SigningKey::File(path),
            None => SigningKey::Secret {
                namespace: self.operator_namespace,
                name: self.signing_key_secret,
            },
        };
        controller::Options {
            namespace: self.namespace,
            storage_dir: self.storage_dir,
            artifact_listen: self.artifact_listen,
            artifact_url: self.artifact_url,
            fetch_image: self.fetch_image,
            probe_concurrency: self.probe_concurrency,
            max_pack_bytes: self.max_pack_size,
            reconcile_concurrency: self.reconcile_concurrency,
            allow_local_repos: self.allow_local_repos,
            signing_key,
            notify: None,
            label_selector: self.label_selector,
            webhook,
            metrics,
            health,
            reconciling_stopped: None,
        }
    }
}

/// `<host name>-<process id>`: unique among replicas that are not Pods.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Runs the operator until SIGTERM or SIGINT; exit 0 after a graceful stop.
pub(super) fn run(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting the async runtime: {e}")),
    };
    // kube's rustls client needs a process-wide crypto provider; cdkube uses ring (an error means one is set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}"))?;
        let stop = controller::shutdown_signal().map_err(|e| format!("installing signal handlers: {e}"))?;
        let metrics = Arc::new(Metrics::new());
        let health = Health::new(args.watch_stall_timeout);
        let ops = serve_ops(args.metrics_listen, metrics.clone(), health.clone()).await?;
        let election = args.election();
        let options = args.options(&client, metrics.clone(), health.clone());
        let result = match election {
            Some(election) => controller::run_elected(client, options, election, stop).await,
            None => {
                health.set_leadership(Leadership::Disabled);
                metrics.leader.set(1);
                controller::run(client, options, stop).await
            }
        };
        ops.abort();
        result.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Starts the ops endpoints (metrics and health): they answer from start to exit, leader or not.
async fn serve_ops(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("ops endpoints on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("ops endpoints on {addr}: {e}"))?;
    tracing::info!("ops endpoints on http://{bound} (/metrics, /healthz, /readyz)");
    let router = cdkube::telemetry::router(metrics, health);
    let limits = cdkube::serve::Limits::SHORT;
    Ok(tokio::spawn(cdkube::serve::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    )))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cdkube run: {message}");
    ExitCode::FAILURE
}
