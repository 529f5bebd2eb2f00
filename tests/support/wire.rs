//! Raw HTTP/1.1 over TLS to the embedded servers, for what a polite client never does: trickle
//! headers or bodies, send oversized heads, connect and say nothing. And a stopwatch for
//! `/healthz`, the request that must keep answering meanwhile.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName};

/// An HTTPS connection to a server whose CA is `ca_pem`.
pub struct Wire {
    pub stream: TlsStream<TcpStream>,
}

/// A response read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Wire {
    /// Connects and completes the TLS handshake (HTTP/1.1 only).
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> Wire {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(pem_to_der(ca_pem)))
            .expect("CA certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Wire { stream }
    }

    /// Writes `bytes`; false once the server has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Reads one response (head and a Content-Length body), waiting at most `timeout`.
    pub async fn reply(&mut self, timeout: Duration) -> Option<Reply> {
        tokio::time::timeout(timeout, self.read_reply()).await.ok().flatten()
    }

    async fn read_reply(&mut self) -> Option<Reply> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
        Some(Reply { status, body })
    }

    /// How long until the server closes this connection (reading and discarding what it sends),
    /// or `None` if it is still open after `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let drain = async {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = self.stream.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::time::timeout(timeout, drain).await.ok()?;
        Some(start.elapsed())
    }
}

/// Sends `head` and then `drip` every `every`, as a client that never finishes its headers;
/// returns how long until the server closed the connection (`None`: still open after `give_up`).
pub async fn trickle(wire: Wire, head: &[u8], drip: &[u8], every: Duration, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(wire.stream);
    let _ = writer.write_all(head).await;
    let mut chunk = [0u8; 1024];
    while start.elapsed() < give_up {
        tokio::select! {
            read = reader.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(every) => {
                if writer.write_all(drip).await.is_err() || writer.flush().await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

/// How long `GET /healthz` takes on a fresh connection (at most `timeout`, else `None`).
pub async fn healthz(addr: SocketAddr, ca_pem: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let probe = async {
        let mut wire = Wire::connect(addr, ca_pem).await;
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await;
        wire.read_reply().await
    };
    let reply = tokio::time::timeout(timeout, probe).await.ok()??;
    assert_eq!(reply.status, 200, "/healthz: {}", reply.body);
    Some(start.elapsed())
}

/// The slowest `/healthz` of probes taken every 100 ms until `busy` ends (and at least one), each
/// allowed `timeout`; `None` if one did not answer in time.
pub async fn slowest_healthz_while<F: std::future::Future>(
    addr: SocketAddr,
    ca_pem: &str,
    timeout: Duration,
    busy: F,
) -> (Option<Duration>, F::Output) {
    let mut busy = std::pin::pin!(busy);
    let mut slowest = Duration::ZERO;
    loop {
        let Some(took) = healthz(addr, ca_pem, timeout).await else {
            return (None, busy.await);
        };
        slowest = slowest.max(took);
        tokio::select! {
            out = busy.as_mut() => return (Some(slowest), out),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// DER bytes of a PEM certificate.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("pem")
}
