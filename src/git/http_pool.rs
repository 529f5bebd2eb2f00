//! One HTTP client per host, shared by every repository on it.
//!
//! gix's reqwest backend (`Remote`) owns a worker thread with one `reqwest` client, built on its first
//! request and reused for the connection's lifetime. Creating one per probe would open a new TCP (and TLS)
//! connection every time. The pool keeps idle `Remote`s per (scheme, host, port, CA) and lends them out, so
//! consecutive probes of repositories on the same host reuse kept-alive connections. The pool also keeps
//! protocol-v2 capability advertisements (see [`super::advert`]).
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::http::{
    self, GetResponse, Http, PostBodyDataKind, PostResponse, reqwest::Remote,
};

use super::advert::{self, Adverts, Body};

/// Idle clients kept per host; more concurrent probes than this open extra connections that are dropped.
const MAX_IDLE_PER_HOST: usize = 16;

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

/// The pool of idle HTTP clients. Cheap to share behind an `Arc`.
#[derive(Default)]
pub(crate) struct HttpPool {
    idle: Mutex<HashMap<PoolKey, Vec<Remote>>>,
    adverts: Adverts,
}

impl HttpPool {
    /// Borrow an idle client for `key`, or a fresh one; it returns to the pool when dropped.
    pub(super) fn checkout(self: &Arc<Self>, key: PoolKey) -> PooledHttp {
        let remote = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.get_mut(&key).and_then(Vec::pop))
            .unwrap_or_default();
        PooledHttp {
            remote: Some(remote),
            pool: Arc::clone(self),
            key,
            extra_headers: Vec::new(),
        }
    }

    /// Forget the kept advertisements of repository `base_url` (after a failed operation).
    pub(super) fn forget_adverts(&self, base_url: &str) {
        self.adverts.forget(base_url);
    }

    fn give_back(&self, key: PoolKey, remote: Remote) {
        if let Ok(mut idle) = self.idle.lock() {
            let slot = idle.entry(key).or_default();
            if slot.len() < MAX_IDLE_PER_HOST {
                slot.push(remote);
            }
        }
    }
}

/// A client lent by the [`HttpPool`]; implements gix's `Http` by delegating to the pooled `Remote`.
pub(crate) struct PooledHttp {
    remote: Option<Remote>,
    pool: Arc<HttpPool>,
    key: PoolKey,
    /// The configured extra headers (authorization), part of the advertisement key.
    extra_headers: Vec<String>,
}

impl PooledHttp {
    fn remote(&mut self) -> &mut Remote {
        self.remote.get_or_insert_with(Remote::default)
    }
}

impl Drop for PooledHttp {
    fn drop(&mut self) {
        if let Some(remote) = self.remote.take() {
            // A client that followed a redirect rewrites later URLs to the redirect target: never reuse it.
            if remote.redirected_base_url().is_none() {
                self.pool.give_back(self.key.clone(), remote);
            }
        }
    }
}

type LiveHeaders = <Remote as Http>::Headers;
type LiveBody = <Remote as Http>::ResponseBody;

impl Http for PooledHttp {
    type Headers = Body<LiveHeaders>;
    type ResponseBody = Body<LiveBody>;
    type PostBody = <Remote as Http>::PostBody;

    fn get(
        &mut self,
        url: &str,
        base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix::Result<GetResponse<Self::Headers, Self::ResponseBody>> {
        let headers: Vec<String> = headers.into_iter().map(|h| h.as_ref().to_owned()).collect();
        if !advert::is_advert_url(url) {
            let GetResponse { headers, body } = self.remote().get(url, base_url, &headers)?;
            return Ok(GetResponse {
                headers: Body::Live(headers),
                body: Body::Live(body),
            });
        }
        let key = advert::key(url, &headers, &self.extra_headers);
        if let Some((headers, body)) = self.pool.adverts.get(&key) {
            return Ok(GetResponse {
                headers: Body::Memory(Cursor::new(headers)),
                body: Body::Memory(Cursor::new(body)),
            });
        }
        let GetResponse {
            headers: mut live_headers,
            body: mut live_body,
        } = self.remote().get(url, base_url, &headers)?;
        let head = match advert::read_ahead(&mut live_headers, false) {
            Ok(head) => head,
            // An HTTP error status (401, 404, …) arrives here; gix reads it from the headers as usual.
            Err(e) => {
                return Ok(GetResponse {
                    headers: Body::Failed(Some(e)),
                    body: Body::Live(live_body),
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
        if self.remote.as_ref().is_some_and(|r| r.redirected_base_url().is_none()) {
            self.pool.adverts.store(key, base_url, &head, &body);
        }
        let body = Body::Prefixed(Cursor::new(body).chain(live_body));
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
        body: PostBodyDataKind,
    ) -> gix::Result<PostResponse<Self::Headers, Self::ResponseBody, Self::PostBody>> {
        match self.remote().post(url, base_url, headers, body) {
            Ok(PostResponse {
                post_body,
                headers,
                body,
            }) => Ok(PostResponse {
                post_body,
                headers: Body::Live(headers),
                body: Body::Live(body),
            }),
            Err(e) => {
                self.pool.adverts.forget(base_url);
                Err(e)
            }
        }
    }

    fn configure(&mut self, config: &dyn std::any::Any) -> gix::Result {
        if let Some(options) = config.downcast_ref::<http::Options>() {
            self.extra_headers = options.extra_headers.clone();
        }
        self.remote().configure(config)
    }

    fn redirected_base_url(&self) -> Option<String> {
        self.remote.as_ref().and_then(Http::redirected_base_url)
    }
}

/// The transport options for one HTTP operation: `Authorization` header value, redirects, and how to build
/// the client (timeouts, private CA) should this be the client's first request.
pub(crate) fn options(authorization: Option<&str>, ca_pem: Option<&str>, timeout: Duration) -> http::Options {
    let ca = ca_pem.map(|pem| pem.as_bytes().to_vec());
    let configure_client = move |builder: reqwest::blocking::ClientBuilder| {
        let mut builder = builder
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(pem) = &ca {
            // Validated when the credentials were built; a failure here leaves the system roots only.
            if let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem) {
                builder = builder.tls_certs_merge(certs);
            }
        }
        Ok(builder)
    };
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(configure_client)),
        configure_request: None,
    };
    http::Options {
        extra_headers: authorization
            .map(|value| format!("Authorization: {value}"))
            .into_iter()
            .collect(),
        follow_redirects: http::options::FollowRedirects::All,
        user_agent: Some(concat!("cdkube/", env!("CARGO_PKG_VERSION")).to_owned()),
        connect_timeout: Some(timeout.min(Duration::from_secs(10))),
        backend: Some(Arc::new(Mutex::new(backend))),
        ..Default::default()
    }
}
