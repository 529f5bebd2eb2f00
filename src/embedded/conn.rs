//! Connection limits of the embedded HTTPS servers (the API server, the node agent's kubelet
//! endpoint), as kube-apiserver sets them on its `http.Server`: a client that trickles its headers
//! or its body, sends oversized headers, or holds a connection open without using it is dropped,
//! so it costs the server one socket for a bounded time and no worker.
//!
//! - the TLS handshake must finish within [`ServeLimits::tls_handshake_timeout`];
//! - request headers must arrive within [`ServeLimits::header_read_timeout`] (`ReadHeaderTimeout`);
//!   a new connection must start its first request within it too (HTTP/1.1 and HTTP/2 alike);
//! - headers larger than [`ServeLimits::max_header_bytes`] (`MaxHeaderBytes`) are answered 431;
//! - a connection with no request in flight is closed after [`ServeLimits::idle_timeout`]
//!   (`IdleTimeout`); a request body must arrive within [`ServeLimits::request_body_timeout`].
//!
//! Deviation: on HTTP/1.1 the header timeout also runs while a kept-alive connection waits for its
//! next request (hyper's `header_read_timeout` starts there), so idle HTTP/1.1 connections close
//! after 32 s rather than 90 s.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection may take over each step; defaults are kube-apiserver's.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// The TLS handshake (10 s).
    pub tls_handshake_timeout: Duration,
    /// Request headers, and a new connection's first request (32 s, `ReadHeaderTimeout`).
    pub header_read_timeout: Duration,
    /// A connection without a request in flight (90 s, `IdleTimeout`).
    pub idle_timeout: Duration,
    /// A request body, from its headers to its last byte (60 s, the default `--request-timeout`).
    pub request_body_timeout: Duration,
    /// Request headers, HTTP/1.1 head or HTTP/2 header list (1 MiB, `MaxHeaderBytes`); more is 431.
    pub max_header_bytes: usize,
    /// HTTP/2 streams at once per connection (250, Go's default).
    pub max_concurrent_streams: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            request_body_timeout: Duration::from_secs(60),
            max_header_bytes: 1 << 20,
            max_concurrent_streams: 250,
        }
    }
}

/// A request body that did not arrive within [`ServeLimits::request_body_timeout`].
#[derive(Debug)]
pub(crate) struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// Serves one accepted TCP connection with `app` under `limits`, until it ends or is dropped.
pub(crate) async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ServeLimits,
) {
    let Ok(Ok(stream)) = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await else {
        return;
    };
    let activity = Arc::new(Activity::default());
    let (tracker, body_timeout) = (activity.clone(), limits.request_body_timeout);
    let service = hyper::service::service_fn(move |req| handle(app.clone(), tracker.clone(), body_timeout, req));
    let builder = builder(&limits);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = activity.idle(&limits) => {}
    }
    // Idle: nothing is in flight, so a graceful close (HTTP/2 GOAWAY) is quick; a peer that stalls
    // it loses the connection anyway.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

fn builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when a request head does not fit its read buffer (8 KiB at least).
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams);
    builder
}

/// How long to wait after an accept error (out of file descriptors, say), doubling from 5 ms to
/// 1 s, so the accept loop does not spin.
pub(crate) fn accept_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_millis(5), |d| (d * 2).min(Duration::from_secs(1)))
}

/// What a connection is doing: requests in flight (until their response body is sent) and when
/// the last one ended.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
    idle_since: Mutex<Option<Instant>>,
    changed: tokio::sync::Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once the connection has been idle too long: no first request within the header
    /// timeout, or no request in flight for the idle timeout.
    async fn idle(&self, limits: &ServeLimits) {
        let start = Instant::now();
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let deadline = if self.served.load(Ordering::SeqCst) {
                let since = self.idle_since.lock().map(|t| t.unwrap_or(start)).unwrap_or(start);
                since + limits.idle_timeout
            } else {
                start + limits.header_read_timeout
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = changed => {}
            }
        }
    }
}

/// One request in flight; dropped with its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.idle_since.lock() {
            *since = Some(Instant::now());
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// One request through `app`: counted as in flight until its response body is done, with a
/// deadline on its body.
async fn handle(
    app: Router,
    activity: Arc<Activity>,
    body_timeout: Duration,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Tracked>, Infallible> {
    use hyper::service::Service;
    let guard = activity.begin();
    let req = req.map(|body| Body::new(Deadline::new(body, body_timeout)));
    let response = hyper_util::service::TowerToHyperService::new(app).call(req).await?;
    Ok(response.map(|body| Tracked { body, _guard: guard }))
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
pub(crate) struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct Deadline {
    body: Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Self {
        Deadline {
            body,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
