//! Errors of the operator. A reconcile error carries its reason (for logs and, later, metrics) and when
//! to try again; problems a user must fix (bad spec, bad Secret, unreachable repository) are not errors
//! here but conditions and Events in the Pipeline's status.
use std::time::Duration;

/// Why a reconcile could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The status changed since it was read (another writer, or a stale cache): read again and retry.
    #[error("the Pipeline changed while it was reconciled; retrying with the new version")]
    Conflict,
    /// The Pipeline object lacks a namespace or a name (never true for objects the API server returns).
    #[error("the Pipeline has no {0}")]
    Incomplete(&'static str),
}

impl Error {
    /// A short reason, stable for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::Conflict => "Conflict",
            Error::Incomplete(_) => "IncompleteObject",
        }
    }

    /// How long to wait before the next attempt: a conflict resolves as soon as the cache catches up; an
    /// API or storage failure gets a few seconds.
    pub fn requeue(&self) -> Duration {
        match self {
            Error::Conflict => Duration::from_millis(500),
            Error::Kube(_) => Duration::from_secs(5),
            Error::Incomplete(_) => Duration::from_secs(300),
        }
    }
}

/// What stops the operator from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The git engine could not open its storage.
    #[error("git engine: {0}")]
    Git(#[from] crate::git::Error),
    /// The artifact store or signing key could not be set up.
    #[error("artifacts: {0}")]
    Artifact(#[from] crate::artifact::Error),
    /// Leader election failed, or this replica lost its Lease.
    #[error("leader election: {0}")]
    Election(String),
    /// A server (artifacts, webhooks) could not listen.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Pipelines cannot be listed: the CRD is not installed, RBAC forbids it, or the API server is away.
    #[error(
        "cannot list Pipelines (is the CRD installed — `cdkube crd | kubectl apply -f -` — and does RBAC allow it?): {0}"
    )]
    Crd(#[source] kube::Error),
    /// The artifact server listens on every address and no `--artifact-url` says how Pods reach it.
    #[error(
        "--artifact-url is required when --artifact-listen is {0} (builder Pods need an address they can reach, such as the Service's)"
    )]
    ArtifactUrl(std::net::SocketAddr),
}
