//! Replaying protocol-v2 capability advertisements, so a steady-state HTTP probe is one request, not two.
//!
//! A smart-HTTP probe is `GET …/info/refs?service=git-upload-pack` (the server's capabilities) followed by
//! `POST …/git-upload-pack` (`ls-refs`). Under protocol v2 the first answer lists no refs, only
//! capabilities, which do not change between probes, and HTTP git is stateless: the POST does not depend
//! on the GET having happened. So we keep the v2 advertisement per (URL, request headers) for a while and
//! answer the GET from memory, halving the requests every poll sends. Protocol v0/v1 advertisements (they
//! carry the refs) are never kept; a failed request forgets the URL's entries; entries expire after [`TTL`].
use std::collections::HashMap;
use std::io::{BufRead, Cursor, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long an advertisement is replayed before it is fetched again.
pub(crate) const TTL: Duration = Duration::from_secs(600);

/// Larger bodies are not v2 capability lists.
const MAX_BODY: usize = 16 * 1024;

/// The kept advertisements.
#[derive(Default)]
pub(crate) struct Adverts {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

struct Entry {
    stored: Instant,
    base_url: String,
    headers: Vec<u8>,
    body: Vec<u8>,
}

/// The identity of a request: URL, the headers gix sends and the extra (auth) headers of the client.
pub(crate) fn key(url: &str, headers: &[String], extra_headers: &[String]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in std::iter::once(url)
        .chain(headers.iter().map(String::as_str))
        .chain(extra_headers.iter().map(String::as_str))
    {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// Whether `url` is the capability advertisement of upload-pack.
pub(crate) fn is_advert_url(url: &str) -> bool {
    url.ends_with("/info/refs?service=git-upload-pack")
}

impl Adverts {
    /// The kept (headers, body) for `key`, if fresh.
    pub(super) fn get(&self, key: &[u8; 32]) -> Option<(Vec<u8>, Vec<u8>)> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key).filter(|e| e.stored.elapsed() < TTL)?;
        Some((entry.headers.clone(), entry.body.clone()))
    }

    /// Keep a successful answer if it is a protocol-v2 capability advertisement.
    pub(super) fn store(&self, key: [u8; 32], base_url: &str, headers: &[u8], body: &[u8]) {
        let is_v2 = body.len() <= MAX_BODY
            && body.windows(14).take(64).any(|w| w == b"000eversion 2\n")
            && String::from_utf8_lossy(headers)
                .to_ascii_lowercase()
                .contains("application/x-git-upload-pack-advertisement");
        if is_v2 && let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.stored.elapsed() < TTL);
            let entry = Entry {
                stored: Instant::now(),
                base_url: base_url.to_owned(),
                headers: headers.to_vec(),
                body: body.to_vec(),
            };
            entries.insert(key, entry);
        }
    }

    /// Drop every advertisement of `base_url` (after a failure: the server may have changed).
    pub(super) fn forget(&self, base_url: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.base_url != base_url);
        }
    }
}

/// A response stream: live from the network, from memory, or a failure to report on first read.
pub(crate) enum Body<R> {
    /// Straight from the HTTP client.
    Live(R),
    /// Kept bytes only.
    Memory(Cursor<Vec<u8>>),
    /// Bytes read ahead, then whatever the live stream still has.
    Prefixed(std::io::Chain<Cursor<Vec<u8>>, R>),
    /// The error the live stream gave while being read ahead.
    Failed(Option<std::io::Error>),
}

fn failed(e: &mut Option<std::io::Error>) -> std::io::Error {
    e.take().unwrap_or_else(|| std::io::Error::other("the request failed"))
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Live(r) => r.read(buf),
            Body::Memory(r) => r.read(buf),
            Body::Prefixed(r) => r.read(buf),
            Body::Failed(e) => Err(failed(e)),
        }
    }
}

impl<R: BufRead> BufRead for Body<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            Body::Live(r) => r.fill_buf(),
            Body::Memory(r) => r.fill_buf(),
            Body::Prefixed(r) => r.fill_buf(),
            Body::Failed(e) => Err(failed(e)),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Body::Live(r) => r.consume(amount),
            Body::Memory(r) => r.consume(amount),
            Body::Prefixed(r) => r.consume(amount),
            Body::Failed(_) => {}
        }
    }
}

/// Read `reader` to its end, or up to `MAX_BODY + 1` bytes when `bounded`.
pub(crate) fn read_ahead(reader: &mut impl Read, bounded: bool) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if bounded {
        reader.take(MAX_BODY as u64 + 1).read_to_end(&mut bytes)?;
    } else {
        reader.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &[u8] = b"001e# service=git-upload-pack\n0000000eversion 2\n0013ls-refs=unborn\n0000";
    const HEADERS: &[u8] = b"content-type:application/x-git-upload-pack-advertisement\n";

    #[test]
    fn keeps_only_v2_advertisements() {
        let adverts = Adverts::default();
        let k = key("http://h/r.git/info/refs?service=git-upload-pack", &[], &[]);
        adverts.store(
            k,
            "http://h/r.git",
            HEADERS,
            b"001e# service=git-upload-pack\n0000003f0123 refs/heads/main\n",
        );
        assert!(adverts.get(&k).is_none(), "v1 advertisements carry refs");
        adverts.store(k, "http://h/r.git", HEADERS, V2);
        assert_eq!(adverts.get(&k).map(|(_, b)| b), Some(V2.to_vec()));
        adverts.forget("http://h/r.git");
        assert!(adverts.get(&k).is_none());
    }

    #[test]
    fn keys_depend_on_auth_headers() {
        let url = "http://h/r.git/info/refs?service=git-upload-pack";
        assert_ne!(
            key(url, &[], &["Authorization: Bearer a".into()]),
            key(url, &[], &["Authorization: Bearer b".into()])
        );
    }

    #[test]
    fn read_ahead_then_live() {
        let mut body = Body::Prefixed(Cursor::new(b"ab".to_vec()).chain(Cursor::new(b"cd".to_vec())));
        let mut out = String::new();
        body.read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcd");
    }
}
