//! The one error type of the artifact module, and the reasons a signed URL is refused.
//!
//! Messages name the file, URL or archive entry involved and say what to change. URLs in messages never
//! carry their query string: it holds the signature, which grants access until it expires.
use std::io;
use std::path::PathBuf;

/// Why [`Signer::verify`](super::Signer::verify) refused a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not 64 hex digits.
    #[error("the signature is malformed")]
    Malformed,
    /// The signature does not match the path and expiry (tampered, or signed with another key).
    #[error("the signature does not match")]
    Mismatch,
    /// The signature is valid but the URL expired at `expires` (unix seconds).
    #[error("the URL expired at {expires} (unix seconds, now {now}); ask for a new one")]
    Expired {
        /// When the URL expired, unix seconds.
        expires: u64,
        /// The time of the check, unix seconds.
        now: u64,
    },
}

/// An artifact store, signing, serving or fetching error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"rename into place"`, …).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    InvalidDigest(String),
    /// A signing key is unusable (too short, unreadable encoding).
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// Reading or creating the signing key Secret failed.
    #[error("signing key Secret {namespace}/{name}: {source}")]
    KeySecret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The artifact URL is not an absolute http(s) URL.
    #[error("invalid artifact URL {url}: {reason}")]
    InvalidUrl {
        /// The URL without its query.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The download failed in transport (connection, timeout, broken body), after the retries.
    #[error("downloading {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        /// The URL without its query.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last cause, with its chain, without the URL.
        message: String,
        /// The last transport error (its URL removed).
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The server refused the download with a status that retrying will not change (e.g. 403, 404).
    #[error("{url}: the server answered {status}: {message}")]
    Refused {
        /// The URL without its query.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The first line of the response body.
        message: String,
    },
    /// The artifact is larger than the download limit.
    #[error("{url}: the artifact is larger than the limit of {limit} bytes (raise --max-bytes)")]
    TooLarge {
        /// The URL without its query.
        url: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The downloaded bytes do not have the expected digest; nothing was extracted.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// The archive holds an entry that would escape the destination or is of a refused type; nothing was
    /// extracted.
    #[error("refusing archive entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive unpacks to more bytes than allowed; nothing was extracted.
    #[error("the archive unpacks to more than {limit} bytes")]
    UnpackedTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The archive is not a valid tar.gz.
    #[error("the artifact is not a valid tar.gz: {source}")]
    InvalidArchive {
        /// The decoding error.
        #[source]
        source: io::Error,
    },
    /// An entry extracted into the staging directory already exists in the destination.
    #[error("{} already exists; extract into an empty directory", path.display())]
    DestinationConflict {
        /// The existing path.
        path: PathBuf,
    },
}

impl Error {
    /// An [`Error::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::UnsafeEntry`] for the archive entry `entry`.
    pub(crate) fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_fix() {
        let e = Error::DigestMismatch {
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        };
        assert_eq!(e.to_string(), "digest mismatch: expected sha256:aa, got sha256:bb");
        let e = Error::unsafe_entry("../evil", "its path climbs out of the destination");
        assert_eq!(
            e.to_string(),
            "refusing archive entry \"../evil\": its path climbs out of the destination"
        );
        let e = SignatureError::Expired { expires: 5, now: 9 };
        assert!(e.to_string().contains("expired"));
    }
}
