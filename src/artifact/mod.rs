//! Artifacts: the exported source tarballs builder Pods download.
//!
//! The git engine exports a commit's tree as a deterministic tar.gz; the operator keeps it in a
//! content-addressed [`Store`] (`sha256/<hex>.tar.gz`), hands the builder Pod a URL signed by a [`Signer`]
//! (HMAC-SHA256, with an expiry), and serves it with an [`ArtifactServer`], which rebuilds an artifact
//! missing after a restart through a [`Rebuild`] hook. In the Pod, `cdkube fetch-source` calls
//! [`fetch_and_extract`]: download with a deadline and a size cap, verify the digest, refuse unsafe archive
//! entries, extract. [`prune`] deletes artifacts no Pipeline refers to any more.
//!
//! ```no_run
//! # async fn demo(rebuild: std::sync::Arc<dyn cdkube::artifact::Rebuild>) -> Result<(), Box<dyn std::error::Error>> {
//! use cdkube::artifact::{ArtifactServer, Signer, Store, artifact_path};
//! let store = Store::open("/var/lib/cdkube/artifacts".as_ref())?;
//! let signer = Signer::generate();
//! let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
//! let path = artifact_path("default", "shop", "5f0c6e3c1d2b4a5f6e7d8c9b0a1f2e3d4c5b6a79", digest);
//! let url = signer.signed_url("http://cdkube.cdkube-system:8080", &path, std::time::Duration::from_secs(3600));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! let server = ArtifactServer { store, signer, rebuild };
//! cdkube::artifact::serve(listener, server, std::future::pending()).await?;
//! # let _ = url; Ok(()) }
//! ```
mod client;
mod error;
mod extract;
mod retention;
mod server;
mod signing;
mod store;

pub use client::{FetchOptions, FetchReport, fetch_and_extract};
pub use error::{Error, SignatureError};
pub use retention::{PruneReport, prune};
pub use server::{ArtifactServer, CONNECTION_TIMEOUT, HEADER_TIMEOUT, REQUEST_TIMEOUT, Rebuild, artifact_path, serve};
pub use signing::{DEFAULT_KEY_SECRET, SIGNING_KEY_FIELD, Signer, load_or_create_key_file, load_or_create_key_secret};
pub use store::{Store, StoredArtifact, parse_digest};
