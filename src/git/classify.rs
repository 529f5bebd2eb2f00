//! Turning gix errors (and the stderr of ssh / `git upload-pack`) into classified, actionable [`Error`]s.
//!
//! gix reports failures as a tree of errors with semantic classes (unauthenticated, not found, …) and, for
//! transports, the underlying `std::io::Error` or `reqwest::Error`. We look at all of them plus the child
//! process's stderr, pick the most specific kind, and write a message that says what to do about it.
use std::io::ErrorKind as Io;

use super::error::{Error, ErrorKind, redact};
use super::http_pool::HttpStatus;
use super::remote::RemoteSpec;
use super::sideband::clean;

/// What the failed operation was, to phrase the message.
pub(crate) struct Context<'a> {
    /// The remote (its URL names the repository; its credentials are redacted from the message).
    pub spec: &'a RemoteSpec,
    /// What we were doing, e.g. [`super::probe::ACTION`] or [`super::fetch::ACTION`].
    pub action: &'a str,
    /// Stderr of the ssh / upload-pack process, if any.
    pub stderr: Option<String>,
    /// Error messages the server sent (`ERR` lines, sideband errors; see [`super::sideband`]).
    pub remote: Vec<String>,
}

/// Classify `err` from an operation described by `ctx`.
pub(crate) fn classify(err: &gix::Error, ctx: &Context<'_>) -> Error {
    let chain = chain_text(err);
    let stderr = ctx.stderr.as_deref().unwrap_or_default();
    // The server's own words: an ERR packet, or fatal messages in the sideband.
    let said = err_packet(err).or_else(|| (!ctx.remote.is_empty()).then(|| ctx.remote.join("; ")));
    let kind = from_stderr(stderr)
        .or_else(|| said.as_deref().map(from_remote))
        .or_else(|| from_classes(err))
        .or_else(|| from_sources(err))
        .or_else(|| from_text(&chain))
        .unwrap_or(ErrorKind::Protocol);
    let detail = match (said, last_line(stderr)) {
        (Some(said), Some(line)) if !said.split("; ").any(|m| line.contains(m) || m.contains(&line)) => {
            format!("the server said: \"{}\"; {}", clean(&said), clean(&line))
        }
        (Some(said), _) => format!("the server said: \"{}\"", clean(&said)),
        (None, _) => detail(stderr, &chain),
    };
    message(kind, ctx, &detail)
}

/// The text of an `ERR` packet line the server sent, if that is what ended the exchange.
fn err_packet(err: &gix::Error) -> Option<String> {
    use gix::protocol::transport::packetline::read::Error as ErrLine;
    err.iter_errors().find_map(|source| {
        let direct = source.downcast_ref::<ErrLine>();
        let wrapped = || {
            source
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<ErrLine>())
        };
        direct.or_else(wrapped).map(|e| e.message.to_string())
    })
}

/// The kind of a failure the server explained itself: a missing repository keeps its own kind.
fn from_remote(said: &str) -> ErrorKind {
    let lower = said.to_ascii_lowercase();
    let missing = [
        "not exported",
        "not found",
        "does not exist",
        "no such repository",
        "not a git repository",
    ];
    if missing.iter().any(|m| lower.contains(m)) {
        ErrorKind::RepositoryNotFound
    } else {
        ErrorKind::Remote
    }
}

/// Build the user-facing error of `kind` with `detail` (the technical cause), redacting secrets.
pub(crate) fn message(kind: ErrorKind, ctx: &Context<'_>, detail: &str) -> Error {
    let url = &ctx.spec.url;
    let has_creds = !ctx.spec.credentials.is_empty();
    let advice = match kind {
        ErrorKind::AuthenticationFailed if has_creds => "the server rejected the credentials from the Secret",
        ErrorKind::AuthenticationFailed => {
            "the server requires authentication; reference a Secret with username/password, bearerToken or identity"
        }
        ErrorKind::HostKeyVerificationFailed => {
            "the server's ssh host key does not match `known_hosts` in the Secret; if the key changed on purpose, \
             update `known_hosts` (ssh-keyscan)"
        }
        ErrorKind::RepositoryNotFound => "the repository does not exist, or these credentials cannot see it",
        ErrorKind::Timeout => "the server did not answer in time",
        ErrorKind::Network if detail.contains("certificate") => {
            "the server's TLS certificate is not trusted; put the CA that signed it in the Secret as `ca.crt`"
        }
        ErrorKind::Network => "the server could not be reached",
        ErrorKind::Protocol => "the server's answer was not understood",
        ErrorKind::Remote => "the server reported an error",
        ErrorKind::TooLarge => "the server sent more than cdkube accepts",
        ErrorKind::Cancelled => "the operation was cancelled",
        ErrorKind::InvalidInput => "the request is invalid",
        ErrorKind::BranchNotFound => "the branch does not exist",
        ErrorKind::Storage => "the local cache failed",
    };
    let mut text = format!("cannot {} {url}: {advice}", ctx.action);
    if !detail.is_empty() {
        text.push_str(&format!(" ({detail})"));
    }
    Error::new(kind, redact(&text, &ctx.spec.credentials.secrets()))
}

/// Known OpenSSH / git messages on stderr.
fn from_stderr(stderr: &str) -> Option<ErrorKind> {
    let has = |needle: &str| stderr.contains(needle);
    if has("Host key verification failed")
        || has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("host key is known for")
        || has("No matching host key")
    {
        Some(ErrorKind::HostKeyVerificationFailed)
    } else if has("Load key") || has("invalid format") || has("Bad configuration option") {
        Some(ErrorKind::InvalidInput)
    } else if has("Permission denied") || has("Too many authentication failures") {
        Some(ErrorKind::AuthenticationFailed)
    } else if has("does not appear to be a git repository") || has("not a git repository") {
        Some(ErrorKind::RepositoryNotFound)
    } else if has("timed out") {
        Some(ErrorKind::Timeout)
    } else if has("Could not resolve hostname")
        || has("Connection refused")
        || has("Connection closed")
        || has("Connection reset")
        || has("No route to host")
    {
        Some(ErrorKind::Network)
    } else {
        None
    }
}

/// gix's own semantic classes.
fn from_classes(err: &gix::Error) -> Option<ErrorKind> {
    if err.is_unauthenticated() || err.is_permission_denied() {
        Some(ErrorKind::AuthenticationFailed)
    } else if err.is_cancelled() {
        Some(ErrorKind::Cancelled)
    } else {
        None
    }
}

/// Concrete transport errors: HTTP status, reqwest flags, io kinds.
fn from_sources(err: &gix::Error) -> Option<ErrorKind> {
    for source in err.iter_errors() {
        let io = source.downcast_ref::<std::io::Error>();
        // An io::Error hides the error it wraps from `source()`; look inside too.
        let inner = io
            .and_then(std::io::Error::get_ref)
            .map(|e| e as &(dyn std::error::Error + 'static));
        for e in std::iter::once(source).chain(inner) {
            if let Some(kind) = from_http(e) {
                return Some(kind);
            }
        }
        if let Some(e) = io {
            match e.kind() {
                Io::TimedOut | Io::WouldBlock => return Some(ErrorKind::Timeout),
                Io::PermissionDenied => return Some(ErrorKind::AuthenticationFailed),
                Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::NotConnected
                | Io::BrokenPipe
                | Io::UnexpectedEof
                | Io::HostUnreachable
                | Io::NetworkUnreachable => return Some(ErrorKind::Network),
                _ => {}
            }
        }
    }
    None
}

/// An HTTP status or a reqwest failure.
fn from_http(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if let Some(HttpStatus(status)) = e.downcast_ref::<HttpStatus>() {
        return Some(match status {
            401 | 403 => ErrorKind::AuthenticationFailed,
            404 | 410 => ErrorKind::RepositoryNotFound,
            _ => ErrorKind::Network,
        });
    }
    let e = e.downcast_ref::<reqwest::Error>()?;
    if e.is_timeout() {
        Some(ErrorKind::Timeout)
    } else if e.is_connect() || e.is_request() {
        Some(ErrorKind::Network)
    } else {
        None
    }
}

/// Last resort: well-known phrases in the error chain.
fn from_text(chain: &str) -> Option<ErrorKind> {
    let lower = chain.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("repository not exported") || has("http status 404") || has("not found") {
        Some(ErrorKind::RepositoryNotFound)
    } else if has("timed out") || has("timeout") {
        Some(ErrorKind::Timeout)
    } else if has("http status 401") || has("http status 403") || has("access denied") {
        Some(ErrorKind::AuthenticationFailed)
    } else if has("connection") || has("dns error") || has("tls") || has("certificate") {
        Some(ErrorKind::Network)
    } else {
        None
    }
}

/// The innermost two distinct messages of the error tree (the cause, not the layers of context),
/// joined with `: `.
fn chain_text(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for source in err.iter_errors() {
        let text = source.to_string();
        if text.starts_with("No credentials were returned") {
            // gix's wording for "the server answered 401 and we have nothing (else) to offer".
            return "HTTP 401 Unauthorized".to_owned();
        }
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
    }
    let start = parts.len().saturating_sub(2);
    parts[start..].join(": ")
}

/// The most useful technical detail: the last meaningful stderr line, else the deepest error messages;
/// cleaned of control characters (the server chose some of this text) and cut short.
fn detail(stderr: &str, chain: &str) -> String {
    clean(&last_line(stderr).unwrap_or_else(|| chain.to_owned()))
}

/// The last meaningful line of a process's stderr, without its `fatal: ` or `ERROR: ` prefix.
fn last_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .map(|l| l.trim_start_matches("fatal: ").trim_start_matches("ERROR: ").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_patterns() {
        assert_eq!(
            from_stderr("Host key verification failed.\r\n"),
            Some(ErrorKind::HostKeyVerificationFailed)
        );
        assert_eq!(
            from_stderr("git@h: Permission denied (publickey)."),
            Some(ErrorKind::AuthenticationFailed)
        );
        assert_eq!(
            from_stderr("fatal: '/x' does not appear to be a git repository"),
            Some(ErrorKind::RepositoryNotFound)
        );
        assert_eq!(
            from_stderr("Load key \"/tmp/k\": invalid format"),
            Some(ErrorKind::InvalidInput)
        );
        assert_eq!(from_stderr(""), None);
    }

    #[test]
    fn detail_prefers_last_stderr_line() {
        assert_eq!(detail("x\nfatal: boom\n\n", "chain"), "boom");
        assert_eq!(detail("", "a: b"), "a: b");
    }
}
