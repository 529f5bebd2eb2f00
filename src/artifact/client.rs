//! The download half, behind `cdkube fetch-source`: fetch an artifact by its signed URL, verify its
//! digest, extract it safely.
//!
//! Every attempt runs under what is left of one overall deadline and the size cap; transient failures
//! (connection errors, timeouts, 5xx, 408, 429) are retried with exponential backoff, refusals (403, 404, …)
//! fail at once with the server's message. Nothing is extracted unless the whole download has the
//! expected digest. Messages show the URL without its query: the signature in it is a credential.
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::Error;
use super::extract::{self, DOWNLOAD_PREFIX, STAGING_PREFIX};
use super::store::parse_digest;

/// Limits of [`fetch_and_extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Deadline of the whole download, retries included. Default 5 minutes.
    pub timeout: Duration,
    /// Largest artifact accepted, in bytes (compressed). Default 1 GiB.
    pub max_bytes: u64,
    /// Retries after a transient failure. Default 4.
    pub retries: u32,
    /// Largest total size of the extracted files, in bytes. Default 4 GiB.
    pub max_unpacked_bytes: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: Duration::from_secs(300),
            max_bytes: 1 << 30,
            retries: 4,
            max_unpacked_bytes: 4 << 30,
        }
    }
}

/// What [`fetch_and_extract`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The verified digest.
    pub digest: String,
    /// Bytes downloaded (the artifact's size).
    pub bytes: u64,
    /// Regular files extracted.
    pub files: usize,
    /// Their total size in bytes.
    pub unpacked_bytes: u64,
    /// HTTP attempts made (1 when nothing was retried).
    pub attempts: u32,
}

/// Download `url`, check that its sha256 is `digest`, and extract it into `dest` (created if needed).
/// The download is kept in a hidden temporary file inside `dest` (in a builder Pod the workspace volume is
/// the one writable place) and removed before returning. On any error nothing is extracted, and a `dest`
/// created here is removed again.
pub fn fetch_and_extract(url: &str, digest: &str, dest: &Path, options: &FetchOptions) -> Result<FetchReport, Error> {
    parse_digest(digest).ok_or_else(|| Error::InvalidDigest(digest.to_owned()))?;
    let created = !dest.exists();
    fs::create_dir_all(dest).map_err(|e| Error::io("create the directory", dest, e))?;
    let result = remove_leftovers(dest).and_then(|()| fetch_into(url, digest, dest, options));
    if result.is_err() && created {
        // Only if still empty: never delete what someone else put there meanwhile.
        let _ = fs::remove_dir(dest);
    }
    result
}

fn fetch_into(url: &str, digest: &str, dest: &Path, options: &FetchOptions) -> Result<FetchReport, Error> {
    let deadline = Instant::now() + options.timeout;
    let mut temp = tempfile::Builder::new()
        .prefix(DOWNLOAD_PREFIX)
        .tempfile_in(dest)
        .map_err(|e| Error::io("create a temporary file in", dest, e))?;
    let download = Download::new(url, options, deadline)?.run(temp.as_file_mut())?;
    if download.digest != digest {
        return Err(Error::DigestMismatch {
            expected: digest.to_owned(),
            actual: download.digest,
        });
    }
    let extracted = extract::extract(temp.path(), dest, options.max_unpacked_bytes)?;
    Ok(FetchReport {
        digest: download.digest,
        bytes: download.bytes,
        files: extracted.files,
        unpacked_bytes: extracted.bytes,
        attempts: download.attempts,
    })
}

/// Remove cdkube temporary files a killed earlier attempt left in `dest` (the init container restarts).
fn remove_leftovers(dest: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dest).map_err(|e| Error::io("list", dest, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Exactly our own prefixes: a repository's own dot-files are never touched.
        let ours = name
            .to_str()
            .is_some_and(|n| n.starts_with(STAGING_PREFIX) || n.starts_with(DOWNLOAD_PREFIX));
        if ours {
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.map_err(|e| Error::io("remove the leftover", path, e))?;
        }
    }
    Ok(())
}

/// The result of a download.
struct Downloaded {
    digest: String,
    bytes: u64,
    attempts: u32,
}

/// How one attempt failed.
enum Failure {
    /// Retrying may help.
    Transient {
        message: String,
        source: Option<reqwest::Error>,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help.
    Fatal(Error),
}

/// One download with its retries.
struct Download<'a> {
    client: reqwest::blocking::Client,
    url: &'a str,
    /// The URL without its query, for messages.
    shown: String,
    options: &'a FetchOptions,
    deadline: Instant,
}

impl<'a> Download<'a> {
    fn new(url: &'a str, options: &'a FetchOptions, deadline: Instant) -> Result<Self, Error> {
        let shown = url.split(['?', '#']).next().unwrap_or_default().to_owned();
        check_url(url, &shown)?;
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            // The server never redirects; following one would carry the signature somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cdkube/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                url: shown.clone(),
                attempts: 0,
                message: format!("cannot build the HTTP client: {}", chain(&e)),
                source: Some(e.without_url()),
            })?;
        Ok(Download {
            client,
            url,
            shown,
            options,
            deadline,
        })
    }

    fn run(&self, file: &mut fs::File) -> Result<Downloaded, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            file.set_len(0)
                .and_then(|()| file.rewind())
                .map_err(|e| Error::io("truncate", "the download file", e))?;
            let (message, source, retry_after) = match self.attempt(file) {
                Ok((digest, bytes)) => {
                    return Ok(Downloaded {
                        digest,
                        bytes,
                        attempts,
                    });
                }
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Transient {
                    message,
                    source,
                    retry_after,
                }) => (message, source, retry_after),
            };
            let delay = backoff(attempts, retry_after);
            if attempts > self.options.retries || Instant::now() + delay >= self.deadline {
                return Err(Error::Transport {
                    url: self.shown.clone(),
                    attempts,
                    message,
                    source,
                });
            }
            tracing::debug!(url = self.shown, attempts, %message, ?delay, "download failed; retrying");
            std::thread::sleep(delay);
        }
    }

    /// One GET, streamed into `file` while hashing: the digest and the size.
    fn attempt(&self, file: &mut fs::File) -> Result<(String, u64), Failure> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let response = self
            .client
            .get(self.url)
            .timeout(remaining)
            .send()
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.refusal(response));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.options.max_bytes)
        {
            return Err(Failure::Fatal(self.too_large()));
        }
        self.copy(response, file)
    }

    fn copy(&self, mut body: impl Read, file: &mut fs::File) -> Result<(String, u64), Failure> {
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::Transient {
                        message: format!("reading the response failed: {}", self.scrub(&chain(&e))),
                        source: None,
                        retry_after: None,
                    });
                }
            };
            bytes += n as u64;
            // The client's timeout covers the body too; this makes the overall deadline explicit.
            if Instant::now() >= self.deadline {
                return Err(Failure::Transient {
                    message: "the download deadline passed".to_owned(),
                    source: None,
                    retry_after: None,
                });
            }
            if bytes > self.options.max_bytes {
                return Err(Failure::Fatal(self.too_large()));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| Failure::Fatal(Error::io("write the download to", "the workspace", e)))?;
        }
        Ok((format!("sha256:{}", hex::encode(hasher.finalize())), bytes))
    }

    fn transport(&self, error: reqwest::Error) -> Failure {
        let error = error.without_url();
        Failure::Transient {
            message: self.scrub(&chain(&error)),
            source: Some(error),
            retry_after: None,
        }
    }

    /// A non-2xx answer: transient for 5xx, 408 and 429, a refusal otherwise.
    fn refusal(&self, response: reqwest::blocking::Response) -> Failure {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        // The server's explanation, bounded: the first line of at most 4 KiB.
        let mut body = Vec::new();
        let _ = response.take(4096).read_to_end(&mut body);
        let text = String::from_utf8_lossy(&body);
        let message = self.scrub(text.lines().next().unwrap_or("").trim());
        let message = if message.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            message
        };
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            Failure::Transient {
                message: format!("the server answered {code}: {message}"),
                source: None,
                retry_after,
            }
        } else {
            Failure::Fatal(Error::Refused {
                url: self.shown.clone(),
                status: code,
                message,
            })
        }
    }

    fn too_large(&self) -> Error {
        Error::TooLarge {
            url: self.shown.clone(),
            limit: self.options.max_bytes,
        }
    }

    /// `text` with the full URL (and so its signature) replaced by the URL without its query.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.url, &self.shown);
        if let Some((_, query)) = self.url.split_once('?') {
            out = out.replace(query, "…");
        }
        out
    }
}

/// Refuse, before any request, URLs that no retry would make work.
fn check_url(url: &str, shown: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: shown.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(invalid(format!("the scheme is {other:?}, not http or https"))),
    }
}

/// The wait before retry number `attempt` (1-based): 0.5s, 1s, 2s, … up to 8s; a server's Retry-After
/// is honoured up to 30s.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.min(Duration::from_secs(30)),
        None => Duration::from_millis(500 << attempt.saturating_sub(1).min(4)),
    }
}

/// `error` and its causes, `: `-separated, without repeating a cause already in its parent's message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a, None).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(backoff(1, Some(Duration::from_secs(3600))), Duration::from_secs(30));
    }

    #[test]
    fn messages_never_show_the_signature() {
        let options = FetchOptions::default();
        let url = "http://127.0.0.1:1/artifacts/a.tar.gz?expires=1&signature=deadbeef";
        let download = Download::new(url, &options, Instant::now()).unwrap();
        assert_eq!(download.shown, "http://127.0.0.1:1/artifacts/a.tar.gz");
        let scrubbed = download.scrub(&format!("error sending request for url ({url})"));
        assert!(!scrubbed.contains("deadbeef"), "{scrubbed}");
    }

    #[test]
    fn bad_urls_are_refused_before_any_request() {
        let options = FetchOptions::default();
        for url in [
            "not a url",
            "/artifacts/a.tar.gz",
            "file:///etc/passwd",
            "ftp://host/a?signature=x",
        ] {
            let err = Download::new(url, &options, Instant::now()).err().unwrap().to_string();
            assert!(err.starts_with("invalid artifact URL"), "{url}: {err}");
            assert!(!err.contains("signature"), "{err}");
        }
    }

    #[test]
    fn bad_digests_are_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ws");
        let err = fetch_and_extract("http://127.0.0.1:1/x", "md5:abc", &dest, &FetchOptions::default());
        assert!(matches!(err, Err(Error::InvalidDigest(_))));
        assert!(!dest.exists());
    }
}
