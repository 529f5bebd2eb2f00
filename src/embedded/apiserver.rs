//! The embedded API server: binds 127.0.0.1, checks the bearer token, writes the kubeconfig,
//! bootstraps the default namespaces and runs the garbage collector.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::Response;
use futures::FutureExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::ops::{self, WriteOpts};
use super::status::ApiError;
use super::store::Store;
use super::{gc, handlers, ids, kubeconfig, params, tls};

/// The Kubernetes version the server reports. The kubectl dispatcher on our machines runs
/// `kubectl.<major>.<minor>` when it exists, so this also picks kubectl 1.32.
pub const KUBE_GIT_VERSION: &str = "v1.32.4-cdkube";

/// `GET /version`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Errors starting or using the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// 127.0.0.1:port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Building a kube client from the kubeconfig failed.
    #[error("cannot build a kube client: {0}")]
    Client(String),
    /// The serving certificate could not be generated.
    #[error("cannot generate the serving certificate: {0}")]
    Tls(String),
    /// Creating a bootstrap object failed.
    #[error("cannot bootstrap the store: {0}")]
    Bootstrap(ApiError),
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Where the kubeconfig and pod logs live.
    pub state_dir: PathBuf,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Bearer token; a random one when `None`.
    pub token: Option<String>,
    /// How many changes are kept for watch replay and `continue` (older → 410 Expired).
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl ApiServerConfig {
    /// Defaults for a state directory: any port, random token, 10 000 changes of history,
    /// bookmarks every minute (as kube-apiserver).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            port: 0,
            token: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self::new(".cdkube-dev")
    }
}

/// Shared by all request handlers.
pub struct Server {
    /// The object store.
    pub store: Arc<Store>,
    /// The accepted bearer token.
    pub token: String,
    /// The state directory (pod logs).
    pub state_dir: PathBuf,
    /// The bound address.
    pub addr: SocketAddr,
    /// Bookmark period of watches.
    pub bookmark_interval: Duration,
    /// Flips to true on shutdown; long requests end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Entry point: `ApiServer::start(config)`.
pub struct ApiServer;

impl ApiServer {
    /// Starts serving; returns once the port is bound and the kubeconfig written.
    pub async fn start(config: ApiServerConfig) -> Result<RunningApiServer, Error> {
        super::create_state_dir(&config.state_dir).map_err(|source| Error::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| hex::encode(ids::random_bytes(32)));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| Error::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            port: config.port,
            source,
        })?;
        let store = Arc::new(Store::new(config.watch_history));
        bootstrap(&store)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let server = Arc::new(Server {
            store: store.clone(),
            token: token.clone(),
            state_dir: config.state_dir.clone(),
            addr,
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown_rx.clone(),
        });
        let certs = tls::generate().map_err(Error::Tls)?;
        let app = Router::new().fallback(entry).with_state(server);
        let serve = tokio::spawn(serve_tls(listener, certs.acceptor, app, shutdown_rx.clone()));
        let gc = tokio::spawn(gc::run(store, shutdown_rx));
        let kubeconfig_path = config.state_dir.join("kubeconfig");
        let url = format!("https://{addr}");
        let ca_path = config.state_dir.join("ca.crt");
        std::fs::write(&ca_path, &certs.ca_pem).map_err(|source| Error::Kubeconfig { path: ca_path, source })?;
        kubeconfig::write(&kubeconfig_path, &url, &certs.ca_pem, &token).map_err(|source| Error::Kubeconfig {
            path: kubeconfig_path.clone(),
            source,
        })?;
        tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "embedded API server listening");
        Ok(RunningApiServer {
            addr,
            token,
            kubeconfig_path,
            ca_pem: certs.ca_pem,
            shutdown: Some(shutdown_tx),
            tasks: vec![serve, gc],
        })
    }
}

fn bootstrap(store: &Store) -> Result<(), Error> {
    let mut st = store.lock();
    let rt = st
        .find_type("", "v1", "namespaces")
        .ok_or_else(|| Error::Bootstrap(ApiError::internal("no namespaces type")))?;
    let opts = WriteOpts {
        manager: "kube-apiserver".into(),
        ..Default::default()
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ops::create(&mut st, &rt, None, ns, &opts).map_err(Error::Bootstrap)?;
    }
    Ok(())
}

/// Accepts TLS connections until shutdown; each connection is served by the router.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                conns.spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let _ = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
}

/// The bearer token check. Like kube-apiserver with anonymous access limited to the public
/// info endpoints (`/version`, health): a request without a bearer token (or with another
/// scheme) is anonymous and only reaches those (the kubectl dispatcher asks `/version`
/// anonymously); a wrong token is 401 anywhere.
fn authorized(server: &Server, req: &Request) -> bool {
    let public = req.method() == axum::http::Method::GET
        && matches!(
            req.uri().path().trim_end_matches('/'),
            "/version" | "/healthz" | "/livez" | "/readyz"
        );
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match header.and_then(bearer) {
        None => public,
        // Constant-time comparison: the token is a credential.
        Some(given) => {
            let (a, b) = (given.as_bytes(), server.token.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn entry(State(server): State<Arc<Server>>, req: Request) -> Response {
    if !authorized(&server, &req) {
        return handlers::error_response(&ApiError::unauthorized());
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            let mut err = ApiError::bad_request(format!("cannot read request body: {e}"));
            err.code = 413;
            err.reason = "RequestEntityTooLarge";
            return handlers::error_response(&err);
        }
    };
    let query = params::parse(parts.uri.query());
    tracing::debug!(method = %parts.method, uri = %parts.uri, "api request");
    let handled = handlers::handle(server, parts.method, parts.uri.path(), query, parts.headers, bytes);
    // Like kube-apiserver's panic recovery: a bug answers 500 instead of dropping the connection.
    // Request data must never get here; the store lock survives it (see `Store::lock`).
    match std::panic::AssertUnwindSafe(handled).catch_unwind().await {
        Ok(response) => response,
        Err(_) => handlers::error_response(&ApiError::internal("the server panicked handling this request")),
    }
}

/// kube's rustls needs a process-wide crypto provider when several are compiled in (ring via kube,
/// aws-lc via other dependencies); ring is kube's choice. A second install is a harmless no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A started server. Dropping it stops the server too (without waiting).
pub struct RunningApiServer {
    addr: SocketAddr,
    token: String,
    kubeconfig_path: PathBuf,
    ca_pem: String,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningApiServer {
    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the serving certificate (also in `<state_dir>/ca.crt`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The kubeconfig written for this server (mode 0600).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kube-rs client configured from the written kubeconfig.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        install_crypto_provider();
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig_path).map_err(|e| Error::Client(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Client(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }

    /// Stops serving: open watches and log streams end, the port is released.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic YTpi"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
