//! Smart HTTP for gix: one async `reqwest` client per host, on a small runtime of the engine's own, behind
//! gix's blocking `Http` trait.
//!
//! Why not gix's own reqwest backend: it runs each request on a worker thread whose reads cannot be
//! interrupted, and `reqwest::blocking`'s timeout applies to each read, so a server that drips one byte a
//! second kept an operation (and its thread, socket and memory) alive for as long as it liked. Here every
//! request is a task on our runtime, bounded by the operation's deadline; a stop aborts the task, which drops
//! the connection at once; and the blocking side receives the body through a small bounded channel, so a
//! flooding server cannot run ahead of the cap by more than a few chunks.
//!
//! Clients are kept per (scheme, host, port, CA), so consecutive probes of repositories on one host reuse
//! kept-alive connections. The pool also keeps protocol-v2 capability advertisements (see [`super::advert`]).
use std::collections::HashMap;
use std::io::{self, BufRead, Cursor, Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gix::protocol::transport::client::AuthenticationRequired;
use gix::protocol::transport::client::blocking_io::http::{self, GetResponse, Http, PostBodyDataKind, PostResponse};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::{mpsc, oneshot};

use super::advert::{self, Adverts, Body};
use super::bounds::{Bounds, Hook};
use super::sideband::Sniffer;

/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 16;
/// Redirects followed for the first request of an operation, as git's curl does at most.
const MAX_REDIRECTS: usize = 10;
/// Body chunks buffered between the network task and the reading thread.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Largest request body (want/have lines) gix may post.
const MAX_POST_BODY: usize = 64 << 20;

/// What makes two clients interchangeable: the endpoint and the trust roots it was built with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The server's host name or address.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The identity of the CA bundle (`None`: system roots only).
    pub ca: Option<String>,
}

/// The HTTP clients of an engine and the runtime their requests run on. Cheap to share behind an `Arc`.
#[derive(Default)]
pub(crate) struct HttpPool {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    clients: Mutex<HashMap<PoolKey, reqwest::Client>>,
    adverts: Adverts,
}

impl Drop for HttpPool {
    fn drop(&mut self) {
        // Requests still running are cancelled; dropping a runtime may not block in an async context.
        if let Some(Ok(runtime)) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How a checked-out client connects.
pub(crate) struct ClientSettings<'a> {
    /// The endpoint and trust roots.
    pub key: PoolKey,
    /// A PEM CA bundle to trust besides the system roots.
    pub ca_pem: Option<&'a str>,
    /// The operation's timeout (the connect timeout is at most 10s of it).
    pub timeout: Duration,
}

impl HttpPool {
    /// A client for `settings.key` whose requests are bounded by `bounds`.
    pub(super) fn checkout(self: &Arc<Self>, settings: ClientSettings<'_>, bounds: &Arc<Bounds>) -> PooledHttp {
        let client = self.client(&settings);
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let on_stop = Arc::clone(&tasks);
        bounds.on_stop(Hook::Call(Box::new(move || abort_all(&on_stop))));
        PooledHttp {
            pool: Arc::clone(self),
            client,
            bounds: Arc::clone(bounds),
            tasks,
            extra_headers: Vec::new(),
            redirected: Arc::default(),
            followed_first: false,
        }
    }

    /// Forget the kept advertisements of repository `base_url` (after a failed operation).
    pub(super) fn forget_adverts(&self, base_url: &str) {
        self.adverts.forget(base_url);
    }

    fn runtime(&self) -> io::Result<&tokio::runtime::Runtime> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("cdkube-git-http")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        runtime
            .as_ref()
            .map_err(|e| io::Error::other(format!("cannot start the HTTP runtime: {e}")))
    }

    fn client(&self, settings: &ClientSettings<'_>) -> io::Result<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&settings.key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("git/2.0 (cdkube/", env!("CARGO_PKG_VERSION"), ")"))
            // Redirects are followed here (see `follow`), with git's rules.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = settings.ca_pem {
            // Validated when the credentials were built; a failure here leaves the system roots only.
            if let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
                builder = builder.tls_certs_merge(certs);
            }
        }
        let client = builder.build().map_err(io::Error::other)?;
        clients.insert(settings.key.clone(), client.clone());
        Ok(client)
    }
}

fn abort_all(tasks: &Mutex<Vec<tokio::task::AbortHandle>>) {
    let tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.iter().for_each(tokio::task::AbortHandle::abort);
}

/// A client lent for one operation; implements gix's `Http`.
pub(crate) struct PooledHttp {
    pool: Arc<HttpPool>,
    client: io::Result<reqwest::Client>,
    bounds: Arc<Bounds>,
    /// The operation's requests, aborted when it stops or ends.
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// The configured extra headers (authorization), part of the advertisement key.
    extra_headers: Vec<String>,
    /// The base URL after a redirect of the first request.
    redirected: Arc<Mutex<Option<String>>>,
    /// Whether the first request (the only one that may follow redirects) was sent.
    followed_first: bool,
}

impl Drop for PooledHttp {
    fn drop(&mut self) {
        abort_all(&self.tasks);
    }
}

type Exchange = (Body<HeadReader>, Body<BodyReader>);

impl PooledHttp {
    /// Send a request; its response arrives through the returned readers.
    fn send(
        &mut self,
        method: Method,
        url: &str,
        base_url: &str,
        headers: Vec<String>,
        post_body: Option<oneshot::Receiver<Vec<u8>>>,
    ) -> gix::Result<(HeadReader, BodyReader)> {
        let fail = |e: io::Error| gix::Error::from_error(e);
        let client = self
            .client
            .as_ref()
            .map_err(|e| fail(io::Error::new(e.kind(), e.to_string())))?;
        let runtime = self.pool.runtime().map_err(fail)?;
        let tail = url.strip_prefix(base_url).unwrap_or_default().to_owned();
        let url = Url::parse(url).map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let mut header_map = HeaderMap::new();
        for line in headers.iter().chain(&self.extra_headers) {
            insert_header(&mut header_map, line);
        }
        let request = Request {
            client: client.clone(),
            method,
            tail: tail.clone(),
            url,
            headers: header_map,
            post_body,
            may_redirect: !std::mem::replace(&mut self.followed_first, true),
        };
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let deadline = self.bounds.deadline().map(tokio::time::Instant::from_std);
        let task = runtime.spawn(async move {
            let exchange = exchange(request, head_tx, body_tx);
            match deadline {
                // Past the deadline the channels close; the reader reports the deadline.
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline, exchange).await;
                }
                None => exchange.await,
            }
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        drop(tasks);
        // A stop that raced the spawn must still end the request.
        if self.bounds.is_stopped() {
            abort_all(&self.tasks);
        }
        Ok((
            HeadReader {
                rx: Some(head_rx),
                text: Cursor::default(),
                bounds: Arc::clone(&self.bounds),
                redirected: Arc::clone(&self.redirected),
                base_url: base_url.to_owned(),
                tail,
            },
            BodyReader {
                rx: body_rx,
                chunk: Cursor::default(),
                bounds: Arc::clone(&self.bounds),
                sniffer: Sniffer::default(),
            },
        ))
    }

    fn get_live(&mut self, url: &str, base_url: &str, headers: Vec<String>) -> gix::Result<Exchange> {
        let (head, body) = self.send(Method::GET, url, base_url, headers, None)?;
        Ok((Body::Live(head), Body::Live(body)))
    }
}

impl Http for PooledHttp {
    type Headers = Body<HeadReader>;
    type ResponseBody = Body<BodyReader>;
    type PostBody = PostBody;

    fn get(
        &mut self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix::Result<GetResponse<Self::Headers, Self::ResponseBody>> {
        let headers: Vec<String> = headers.into_iter().map(|h| h.as_ref().to_owned()).collect();
        if !advert::is_advert_url(url) {
            let (headers, body) = self.get_live(url, base_url, headers)?;
            return Ok(GetResponse { headers, body });
        }
        let key = advert::key(url, &headers, &self.extra_headers);
        if let Some((headers, body)) = self.pool.adverts.get(&key) {
            // A kept advertisement stands for the first request: the next one may not be redirected.
            self.followed_first = true;
            return Ok(GetResponse {
                headers: Body::Memory(Cursor::new(headers)),
                body: Body::Memory(Cursor::new(body)),
            });
        }
        let (mut live_headers, mut live_body) = self.get_live(url, base_url, headers)?;
        let head = match advert::read_ahead(&mut live_headers, false) {
            Ok(head) => head,
            // An HTTP error status (401, 404, …) arrives here; gix reads it from the headers as usual.
            Err(e) => {
                return Ok(GetResponse {
                    headers: Body::Failed(Some(e)),
                    body: live_body,
                });
            }
        };
        let body = match advert::read_ahead(&mut live_body, true) {
            Ok(body) => body,
            Err(e) => {
                return Ok(GetResponse {
                    headers: Body::Memory(Cursor::new(head)),
                    body: Body::Failed(Some(e)),
                });
            }
        };
        if self.redirected_base_url().is_none() {
            self.pool.adverts.store(key, base_url, &head, &body);
        }
        let body = match live_body {
            Body::Live(live) => Body::Prefixed(Cursor::new(body).chain(live)),
            other => other,
        };
        Ok(GetResponse {
            headers: Body::Memory(Cursor::new(head)),
            body,
        })
    }

    fn post(
        &mut self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix::Result<PostResponse<Self::Headers, Self::ResponseBody, Self::PostBody>> {
        let headers: Vec<String> = headers.into_iter().map(|h| h.as_ref().to_owned()).collect();
        let (body_tx, body_rx) = oneshot::channel();
        let (head, body) = self.send(Method::POST, url, base_url, headers, Some(body_rx))?;
        Ok(PostResponse {
            post_body: PostBody {
                bytes: Vec::new(),
                tx: Some(body_tx),
            },
            headers: Body::Live(head),
            body: Body::Live(body),
        })
    }

    fn configure(&mut self, config: &dyn std::any::Any) -> gix::Result {
        if let Some(options) = config.downcast_ref::<http::Options>() {
            self.extra_headers = options.extra_headers.clone();
        }
        Ok(())
    }

    fn redirected_base_url(&self) -> Option<String> {
        self.redirected.lock().ok().and_then(|r| r.clone())
    }
}

/// The transport options for one HTTP operation: the `Authorization` header value, if any.
pub(crate) fn options(authorization: Option<&str>) -> http::Options {
    http::Options {
        extra_headers: authorization
            .map(|value| format!("Authorization: {value}"))
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Add one `name: value` line to `map`, skipping malformed lines (gix only sends well-formed ones).
fn insert_header(map: &mut HeaderMap, line: &str) {
    let Some((name, value)) = line.split_once(':') else {
        return;
    };
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.trim()), HeaderValue::try_from(value.trim())) {
        map.append(name, value);
    }
}

/// One request, as the network task sends it.
struct Request {
    client: reqwest::Client,
    method: Method,
    url: Url,
    /// What the URL adds to the repository's base URL (`/info/refs?…`), which a redirect must keep.
    tail: String,
    headers: HeaderMap,
    post_body: Option<oneshot::Receiver<Vec<u8>>>,
    may_redirect: bool,
}

/// The status line and headers as gix reads them (`name:value` lines), and where the request ended up.
struct Head {
    text: Vec<u8>,
    url: Url,
}

/// Send `request` and stream its response into the channels. Any failure goes to whichever reader is
/// waiting; a dropped body reader ends the task (and the connection with it).
async fn exchange(
    request: Request,
    head_tx: oneshot::Sender<io::Result<Head>>,
    body_tx: mpsc::Sender<io::Result<Vec<u8>>>,
) {
    let mut response = match respond(request).await {
        Ok(response) => response,
        Err(e) => {
            let _ = head_tx.send(Err(e));
            return;
        }
    };
    let mut text = Vec::new();
    for (name, value) in response.headers() {
        text.extend_from_slice(name.as_str().as_bytes());
        text.push(b':');
        text.extend_from_slice(value.as_bytes());
        text.push(b'\n');
    }
    let url = response.url().clone();
    if head_tx.send(Ok(Head { text, url })).is_err() {
        return;
    }
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            () = body_tx.closed() => return,
        };
        let item = match chunk {
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => return,
            Err(e) => Err(io::Error::other(e)),
        };
        let failed = item.is_err();
        if body_tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The final response of `request`: redirects followed (first request only), error statuses turned into the
/// I/O errors gix expects.
async fn respond(mut request: Request) -> io::Result<reqwest::Response> {
    let body = match request.post_body.take() {
        Some(rx) => Some(
            rx.await
                .map_err(|_| io::Error::other("the request body was never finished"))?,
        ),
        None => None,
    };
    let original = request.url.clone();
    let mut url = request.url.clone();
    let mut headers = request.headers.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = request
            .client
            .request(request.method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(body) = &body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(request_error)?;
        let status = response.status();
        if status.is_redirection() && request.may_redirect {
            let next = follow(&url, &original, &request.tail, &response)?;
            if !same_origin(&next, &original) {
                // Credentials are for the host they were given for, as git's curl does.
                headers.remove(AUTHORIZATION);
            }
            url = next;
            continue;
        }
        return match status {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED => {
                let www_authenticate = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| v.as_bytes().into())
                    .collect();
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    AuthenticationRequired { www_authenticate },
                ))
            }
            s => {
                let kind = if s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED {
                    io::ErrorKind::ConnectionAborted
                } else {
                    io::ErrorKind::Other
                };
                Err(io::Error::new(kind, HttpStatus(s.as_u16())))
            }
        };
    }
    Err(io::Error::other(format!("more than {MAX_REDIRECTS} redirects")))
}

/// Where a redirect leads, refused if it leaves http(s), goes from https to http, or moves to another
/// host without keeping the request's path tail (git's rules).
fn follow(current: &Url, original: &Url, tail: &str, response: &reqwest::Response) -> io::Result<Url> {
    let refused = |why: &str| io::Error::other(format!("refusing to follow the redirect: {why}"));
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| refused("it names no location"))?;
    let next = current
        .join(location)
        .map_err(|_| refused("its location is not a URL"))?;
    match (original.scheme(), next.scheme()) {
        ("https", "https") | ("http", "http" | "https") => {}
        _ => return Err(refused("it leaves https")),
    }
    if !same_origin(&next, original) && !next.as_str().ends_with(tail) {
        return Err(refused("it changes the repository path"));
    }
    Ok(next)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// The I/O error for a failed request: timeouts and connection failures keep their kinds.
fn request_error(e: reqwest::Error) -> io::Error {
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connect() {
        io::ErrorKind::ConnectionRefused
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// An HTTP error status, as gix words it ("Received HTTP status 404").
#[derive(Debug)]
pub(crate) struct HttpStatus(pub u16);

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Received HTTP status {}", self.0)
    }
}

impl std::error::Error for HttpStatus {}

/// The request body gix writes; sent when dropped (gix drops it before reading the response).
pub(crate) struct PostBody {
    bytes: Vec<u8>,
    tx: Option<oneshot::Sender<Vec<u8>>>,
}

impl Write for PostBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_POST_BODY {
            return Err(io::Error::other("the request body is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PostBody {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(std::mem::take(&mut self.bytes));
        }
    }
}

/// The response headers, once they arrived.
pub(crate) struct HeadReader {
    rx: Option<oneshot::Receiver<io::Result<Head>>>,
    text: Cursor<Vec<u8>>,
    bounds: Arc<Bounds>,
    redirected: Arc<Mutex<Option<String>>>,
    /// The repository's base URL, and what this request added to it.
    base_url: String,
    tail: String,
}

impl HeadReader {
    fn wait(&mut self) -> io::Result<()> {
        let Some(rx) = self.rx.take() else {
            return Ok(());
        };
        self.bounds.check()?;
        let head = match rx.blocking_recv() {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => return Err(self.bounds.explain(e)),
            // The task was aborted by a stop, or ran out of time: the bounds say which.
            Err(_) => {
                self.bounds.check()?;
                return Err(io::Error::other("the HTTP request ended without an answer"));
            }
        };
        self.bounds.count(head.text.len())?;
        let landed = head.url.as_str();
        if let Some(base) = landed.strip_suffix(self.tail.as_str())
            && !self.tail.is_empty()
            && base != self.base_url
            && let Ok(mut redirected) = self.redirected.lock()
        {
            *redirected = Some(base.to_owned());
        }
        self.text = Cursor::new(head.text);
        Ok(())
    }
}

impl Read for HeadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait()?;
        self.text.read(buf)
    }
}

impl BufRead for HeadReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.wait()?;
        self.text.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.text.consume(amount);
    }
}

/// The response body, chunk by chunk, counted against the operation's bounds and looked at for the
/// server's error messages.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Cursor<Vec<u8>>,
    bounds: Arc<Bounds>,
    sniffer: Sniffer,
}

impl BodyReader {
    fn refill(&mut self) -> io::Result<()> {
        if self.chunk.position() < self.chunk.get_ref().len() as u64 {
            return Ok(());
        }
        self.bounds.check()?;
        match self.rx.blocking_recv() {
            Some(Ok(bytes)) => {
                self.sniffer.feed(&bytes, self.bounds.said());
                self.bounds.count(bytes.len())?;
                self.chunk = Cursor::new(bytes);
                Ok(())
            }
            Some(Err(e)) => Err(self.bounds.explain(e)),
            // The end of the body, or a stopped operation.
            None => self.bounds.check(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.refill()?;
        self.chunk.read(buf)
    }
}

impl BufRead for BodyReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill()?;
        self.chunk.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.chunk.consume(amount);
    }
}
