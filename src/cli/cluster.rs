//! What the commands for people (`get`, `history`, `trigger`, `logs`, `suspend`, `resume`) share:
//! kubectl's conventions for reaching a cluster (`--kubeconfig`, `-n`, `-A`, the context's
//! namespace), the Pipeline API, and aligned tables.
use std::path::PathBuf;
use std::time::Duration;

use cdkube::api::Pipeline;
use k8s_openapi::jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

/// How to reach the cluster and which namespace, as kubectl takes them.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Scope {
    /// The kubeconfig to use (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
}

/// A connected client and the namespace to work in.
pub(crate) struct Cluster {
    pub(crate) client: Client,
    pub(crate) namespace: String,
}

impl Scope {
    /// Connects as kubectl would; the error is one line saying what to check.
    pub(crate) async fn connect(&self) -> Result<Cluster, String> {
        let config = kube_config(self.kubeconfig.as_deref()).await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| format!("building the API client: {e}"))?;
        Ok(Cluster { client, namespace })
    }
}

/// The client configuration from `path`, or as kubectl finds one (KUBECONFIG, ~/.kube/config,
/// in-cluster); the error is one line. Installs the crypto provider kube's rustls needs.
pub(crate) async fn kube_config(path: Option<&std::path::Path>) -> Result<kube::Config, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match path {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster configured ({e}); set KUBECONFIG or pass --kubeconfig")),
    }
}

impl Cluster {
    /// Pipelines in the namespace.
    pub(crate) fn pipelines(&self) -> Api<Pipeline> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Pipeline `name`, or a one-line error that names it.
    pub(crate) async fn pipeline(&self, name: &str) -> Result<Pipeline, String> {
        match self.pipelines().get_opt(name).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(format!(
                "Pipeline {name:?} not found in namespace {:?}; list them with `cdkube get`",
                self.namespace
            )),
            Err(e) => Err(api_error(&e)),
        }
    }
}

/// An API error in one line (the server's message, not the client's debug dump).
pub(crate) fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the API server refused: {} ({})", s.message, s.code),
        other => format!("cannot reach the API server: {other}"),
    }
}

/// Rows printed with columns padded to their widest cell, three spaces apart, as kubectl does.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        padded.join("   ").trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n") + "\n"
}

/// Age as kubectl prints it: `45s`, `12m`, `3h`, `5d`.
pub(crate) fn age(since: Option<Timestamp>) -> String {
    let Some(since) = since else { return "<unknown>".into() };
    let secs = Timestamp::now().duration_since(since).as_secs().max(0) as u64;
    short_duration(Duration::from_secs(secs))
}

/// A duration in kubectl's short form.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `-o` of the commands that print objects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// An aligned table.
    Table,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON.
    Json,
}

/// Runs `work` on a fresh runtime and maps its result to an exit code, printing an error as
/// `cdkube COMMAND: message`.
pub(crate) fn run_async<F>(command: &str, work: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<std::process::ExitCode, String>>,
{
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("starting the async runtime: {e}"))
        .and_then(|rt| rt.block_on(work));
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cdkube {command}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
