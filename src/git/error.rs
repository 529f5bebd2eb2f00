//! The one error type of the git engine: a classified kind plus a message a user can act on.
//!
//! Messages never contain credentials: URLs are shown without user info, and every message built from a
//! transport error passes through [`redact`] with the secrets of the operation.
use std::fmt;

/// What went wrong, coarse enough for a controller to pick a condition reason and a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (URL, branch, Secret content); retrying will not help.
    InvalidInput,
    /// The server rejected the credentials, or wanted some and none were given.
    AuthenticationFailed,
    /// The ssh server's host key is not the one in `known_hosts`.
    HostKeyVerificationFailed,
    /// The server has no such repository (or hides it from these credentials).
    RepositoryNotFound,
    /// The repository exists but the branch does not (or the remote HEAD is unborn or detached).
    BranchNotFound,
    /// The server did not answer in time.
    Timeout,
    /// The caller cancelled the operation.
    Cancelled,
    /// The server could not be reached, or the connection broke.
    Network,
    /// The server answered with something that is not the git protocol we expect.
    Protocol,
    /// The server reported an error of its own (an `ERR` packet, a `fatal:` message); the message shows it.
    Remote,
    /// The server sent more than a limit allows (ref advertisement, pack size); the message names the limit.
    TooLarge,
    /// The local cache or output directory failed (disk full, permissions, corruption).
    Storage,
}

impl ErrorKind {
    /// The kind's name, stable, for condition reasons and metrics (`"AuthenticationFailed"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::AuthenticationFailed => "AuthenticationFailed",
            ErrorKind::HostKeyVerificationFailed => "HostKeyVerificationFailed",
            ErrorKind::RepositoryNotFound => "RepositoryNotFound",
            ErrorKind::BranchNotFound => "BranchNotFound",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Cancelled => "Cancelled",
            ErrorKind::Network => "Network",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::Remote => "Remote",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::Storage => "Storage",
        }
    }

    /// Whether trying again later, unchanged, may succeed. Used by the poller's backoff; a non-retryable
    /// failure is still retried by the poller (the remote may be fixed), but a controller can say "fix it".
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Protocol | ErrorKind::Remote | ErrorKind::Storage
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified git engine error. `Display` prints only the message; use [`Error::kind`] for the class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A new error of `kind` with a message meant for the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::Storage`] error about local file `what`.
    pub fn storage(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Storage, format!("{what}: {err}"))
    }

    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message alone, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later, unchanged, may succeed (see [`ErrorKind::retryable`]).
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

/// Replace every occurrence of each (non-trivial) secret in `text` by `***`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret, "***");
    }
    out
}

/// The result type of the git engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_secrets_but_not_short_noise() {
        let text = "token s3cr3t-token rejected for s3cr3t-token at a";
        assert_eq!(redact(text, &["s3cr3t-token", "a"]), "token *** rejected for *** at a");
    }

    #[test]
    fn retryable_follows_kind() {
        assert!(Error::new(ErrorKind::Timeout, "x").retryable());
        assert!(!Error::invalid("x").retryable());
        assert_eq!(ErrorKind::BranchNotFound.to_string(), "BranchNotFound");
    }
}
