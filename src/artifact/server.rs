//! The artifact HTTP server: `GET /artifacts/{namespace}/{pipeline}/{commit}/{hex}.tar.gz?expires=…&signature=…`.
//!
//! The URL path is what is signed, so a URL opens exactly one artifact, until it expires. An artifact
//! missing from the store (a fresh volume after a restart) is rebuilt through the [`Rebuild`] hook, once
//! however many builder Pods ask for it at the same time.
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::error::SignatureError;
use super::signing::{Signer, unix_now};
use super::store::{Store, is_sha256_hex, parse_digest};

/// The deadline of each request: for finding (or rebuilding) the artifact, and again for sending it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a connection is served: a request's two deadlines (finding, sending) and some slack.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2 * 600 + 60);
/// The path prefix of every artifact URL.
const PREFIX: &str = "/artifacts/";

/// Rebuilds an artifact the store does not have: fetch the commit, export it into
/// [`Store::temp_path`], [`Store::insert`] it, and answer its digest (or a message saying why not).
pub trait Rebuild: Send + Sync + 'static {
    /// Rebuild the artifact of `commit` for Pipeline `namespace/pipeline`.
    fn rebuild(
        &self,
        namespace: String,
        pipeline: String,
        commit: String,
    ) -> BoxFuture<'static, Result<String, String>>;
}

/// The URL path of an artifact, which the controller signs and the server checks:
/// `/artifacts/{namespace}/{pipeline}/{commit}/{hex}.tar.gz`, where `digest` is `sha256:{hex}`.
/// `commit` is the full lowercase sha.
pub fn artifact_path(namespace: &str, pipeline: &str, commit: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("{PREFIX}{namespace}/{pipeline}/{commit}/{hex}.tar.gz")
}

/// What the server needs: the store to serve from, the signer to check URLs, and the rebuild hook.
pub struct ArtifactServer {
    /// Where the artifacts are.
    pub store: Store,
    /// Checks the URLs' signatures (the same key the controller signs with).
    pub signer: Signer,
    /// Makes missing artifacts again.
    pub rebuild: Arc<dyn Rebuild>,
}

impl ArtifactServer {
    /// A server over `store`, checking URLs with `signer` and rebuilding with `rebuild`.
    pub fn new(store: Store, signer: Signer, rebuild: Arc<dyn Rebuild>) -> Self {
        ArtifactServer { store, signer, rebuild }
    }

    /// The axum router: the artifact route, and 404 for everything else.
    pub fn router(self) -> Router {
        let shared = Arc::new(Shared {
            server: self,
            rebuilds: Mutex::default(),
        });
        Router::new()
            .route("/artifacts/{*rest}", get(handle))
            .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
            .with_state(shared)
    }
}

/// Serve `server` on `listener` until `shutdown` completes, then let the requests in flight finish (each
/// within its deadline) and return. See [`crate::serve`] for the connection deadlines.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: ArtifactServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = crate::serve::Limits {
        header_timeout: HEADER_TIMEOUT,
        connection_timeout: CONNECTION_TIMEOUT,
    };
    crate::serve::serve(listener, server.router(), limits, shutdown).await
}

struct Shared {
    server: ArtifactServer,
    /// One lock per digest being rebuilt, so concurrent requests wait for a single rebuild.
    rebuilds: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The artifact a URL path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArtifactRef {
    namespace: String,
    pipeline: String,
    commit: String,
    digest: String,
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    match tokio::time::timeout_at(deadline, respond(&shared, &uri)).await {
        Ok(response) => response,
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the artifact was not ready in time; try again",
        ),
    }
}

async fn respond(shared: &Shared, uri: &Uri) -> Response {
    let path = uri.path();
    let Some(artifact) = parse_path(path) else {
        return text(
            StatusCode::NOT_FOUND,
            "no such artifact: the path is not an artifact path",
        );
    };
    if let Err(message) = check_signature(&shared.server.signer, path, uri.query()) {
        tracing::info!(path, message, "artifact request refused");
        return text(StatusCode::FORBIDDEN, message);
    }
    match find_or_rebuild(shared, &artifact).await {
        Ok(file) => stream_file(&file).await,
        Err(response) => response,
    }
}

/// `Ok` if the query holds a valid, unexpired signature of `path`; else the reason, for the 403 body.
fn check_signature(signer: &Signer, path: &str, query: Option<&str>) -> Result<(), String> {
    let mut expires = None;
    let mut signature = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "expires" => expires = Some(value.into_owned()),
            "signature" => signature = Some(value.into_owned()),
            _ => {}
        }
    }
    let (Some(expires), Some(signature)) = (expires, signature) else {
        return Err("forbidden: the URL is not signed (expires and signature are required)".to_owned());
    };
    let expires: u64 = expires
        .parse()
        .map_err(|_| "forbidden: the URL's expires is not a unix time".to_owned())?;
    signer
        .verify(path, expires, &signature, unix_now())
        .map_err(|e| match e {
            SignatureError::Expired { .. } => format!("forbidden: {e}"),
            other => format!("forbidden: invalid signature ({other})"),
        })
}

/// The stored file of `artifact`, rebuilding it first if it is missing.
async fn find_or_rebuild(shared: &Shared, artifact: &ArtifactRef) -> Result<PathBuf, Response> {
    let store = &shared.server.store;
    if let Some(file) = store.path(&artifact.digest) {
        return Ok(file);
    }
    let slot = RebuildSlot::take(shared, &artifact.digest);
    let _turn = slot.lock.lock().await;
    // The request we waited for may have rebuilt it.
    match store.path(&artifact.digest) {
        Some(file) => Ok(file),
        None => rebuild(shared, artifact).await,
    }
}

/// Call the rebuild hook for `artifact` and find the result in the store.
async fn rebuild(shared: &Shared, artifact: &ArtifactRef) -> Result<PathBuf, Response> {
    tracing::info!(
        namespace = artifact.namespace,
        pipeline = artifact.pipeline,
        commit = artifact.commit,
        digest = artifact.digest,
        "artifact missing from the store; rebuilding"
    );
    let rebuilt = shared
        .server
        .rebuild
        .rebuild(
            artifact.namespace.clone(),
            artifact.pipeline.clone(),
            artifact.commit.clone(),
        )
        .await;
    match rebuilt {
        Err(message) => Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the artifact is missing and rebuilding it failed: {message}"),
        )),
        Ok(digest) if digest != artifact.digest => Err(text(
            StatusCode::NOT_FOUND,
            format!(
                "commit {} now exports as {digest}, not {}; this artifact no longer exists",
                artifact.commit, artifact.digest
            ),
        )),
        Ok(_) => shared.server.store.path(&artifact.digest).ok_or_else(|| {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the artifact was rebuilt but is not in the store; try again",
            )
        }),
    }
}

/// A per-digest rebuild lock, removed from the map by the last request holding it (also when a request
/// is cancelled by its deadline or a disconnect).
struct RebuildSlot<'a> {
    shared: &'a Shared,
    digest: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> RebuildSlot<'a> {
    fn take(shared: &'a Shared, digest: &str) -> Self {
        let mut map = shared.rebuilds.lock().unwrap_or_else(|poison| poison.into_inner());
        let lock = Arc::clone(map.entry(digest.to_owned()).or_default());
        RebuildSlot {
            shared,
            digest: digest.to_owned(),
            lock,
        }
    }
}

impl Drop for RebuildSlot<'_> {
    fn drop(&mut self) {
        let mut map = self.shared.rebuilds.lock().unwrap_or_else(|poison| poison.into_inner());
        // Two references: the map's and ours. More means another request still waits on it.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.digest);
        }
    }
}

async fn stream_file(path: &Path) -> Response {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        // Pruned between the lookup and the open.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the artifact was just removed; try again",
            );
        }
        Err(e) => return internal_error(path, e),
    };
    let len = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(e) => return internal_error(path, e),
    };
    let body = with_deadline(
        tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024),
        Instant::now() + REQUEST_TIMEOUT,
    );
    (
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `stream`, failing once `deadline` passes, so a client reading too slowly cannot hold a connection (and
/// a graceful shutdown) forever.
fn with_deadline<S>(stream: S, deadline: Instant) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = io::Result<Bytes>> + Unpin + Send + 'static,
{
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(io::ErrorKind::TimedOut, "response deadline passed")),
                None,
            )),
        }
    })
}

fn internal_error(path: &Path, error: io::Error) -> Response {
    tracing::error!(path = %path.display(), %error, "cannot read a stored artifact");
    text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the stored artifact")
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The artifact `path` names, if it is `/artifacts/{namespace}/{pipeline}/{commit}/{hex}.tar.gz` with
/// Kubernetes names, a full lowercase commit sha and a sha256 hex digest.
fn parse_path(path: &str) -> Option<ArtifactRef> {
    let mut parts = path.strip_prefix(PREFIX)?.split('/');
    let (namespace, pipeline, commit, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = file.strip_suffix(".tar.gz")?;
    let valid = parts.next().is_none() && is_name(namespace) && is_name(pipeline) && is_commit(commit);
    let digest = format!("sha256:{hex}");
    (valid && parse_digest(&digest).is_some()).then(|| ArtifactRef {
        namespace: namespace.to_owned(),
        pipeline: pipeline.to_owned(),
        commit: commit.to_owned(),
        digest,
    })
}

/// A Kubernetes object name (DNS subdomain: lowercase alphanumerics, `-` and `.`, alphanumeric at both ends).
fn is_name(name: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.len() <= 253
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A full commit id: sha1 (40) or sha256 (64) lowercase hex.
fn is_commit(commit: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (commit.len() == 40 && hex(commit)) || is_sha256_hex(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "5f0c6e3c1d2b4a5f6e7d8c9b0a1f2e3d4c5b6a79";
    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn artifact_paths_round_trip() {
        let digest = format!("sha256:{HEX}");
        let path = artifact_path("team-a", "shop.backend", COMMIT, &digest);
        assert_eq!(path, format!("/artifacts/team-a/shop.backend/{COMMIT}/{HEX}.tar.gz"));
        assert_eq!(
            parse_path(&path),
            Some(ArtifactRef {
                namespace: "team-a".into(),
                pipeline: "shop.backend".into(),
                commit: COMMIT.into(),
                digest,
            })
        );
    }

    #[test]
    fn bad_paths_are_not_artifacts() {
        let bad = [
            format!("/artifacts/ns/p/{COMMIT}/{HEX}.tar"),
            format!("/artifacts/ns/p/{COMMIT}/{HEX}.tar.gz/more"),
            format!("/artifacts/ns/p/{COMMIT}/{}.tar.gz", &HEX[1..]),
            format!("/artifacts/ns/p/{COMMIT}/{}.tar.gz", HEX.to_uppercase()),
            format!("/artifacts/ns/p/{}/{HEX}.tar.gz", &COMMIT[1..]),
            format!("/artifacts/NS/p/{COMMIT}/{HEX}.tar.gz"),
            format!("/artifacts/../p/{COMMIT}/{HEX}.tar.gz"),
            format!("/artifacts/-ns/p/{COMMIT}/{HEX}.tar.gz"),
            format!("/artifacts//p/{COMMIT}/{HEX}.tar.gz"),
            format!("/artifacts/ns/p/{COMMIT}"),
            format!("/other/ns/p/{COMMIT}/{HEX}.tar.gz"),
            "/artifacts/".to_owned(),
        ];
        for path in bad {
            assert_eq!(parse_path(&path), None, "{path}");
        }
    }

    #[test]
    fn signature_checks_explain_refusals() {
        let signer = Signer::new(vec![1; 32]).unwrap();
        let path = "/artifacts/ns/p/c/h.tar.gz";
        let later = unix_now() + 60;
        let sig = signer.sign(path, later);
        assert_eq!(
            check_signature(&signer, path, Some(&format!("expires={later}&signature={sig}"))),
            Ok(())
        );
        let missing = check_signature(&signer, path, None).unwrap_err();
        assert!(missing.contains("not signed"), "{missing}");
        let garbled = check_signature(&signer, path, Some(&format!("expires=soon&signature={sig}"))).unwrap_err();
        assert!(garbled.contains("unix time"), "{garbled}");
        let wrong = check_signature(
            &signer,
            path,
            Some(&format!("expires={later}&signature={}", "0".repeat(64))),
        );
        assert!(wrong.unwrap_err().contains("invalid signature"));
        let past = unix_now() - 1;
        let old = signer.sign(path, past);
        let expired = check_signature(&signer, path, Some(&format!("expires={past}&signature={old}"))).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
    }
}
