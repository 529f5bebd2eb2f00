//! The state every request handler shares: the store, the admin token, the token signer, where Pod logs are, and the
//! shutdown signal that ends long requests.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::embedded::apiserver::storage::store::Store;
use crate::embedded::apiserver::tokens::Signer;

/// Shared by all request handlers.
pub(crate) struct Server {
    /// The object store.
    pub store: Arc<Store>,
    /// The admin bearer token.
    pub token: String,
    /// Signs and verifies ServiceAccount tokens.
    pub signer: Signer,
    /// The state directory (pod logs).
    pub state_dir: PathBuf,
    /// The bound address.
    pub addr: SocketAddr,
    /// Bookmark period of watches.
    pub bookmark_interval: Duration,
    /// Flips to true on shutdown; long requests end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
