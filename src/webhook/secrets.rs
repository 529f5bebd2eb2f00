//! The receivers' secrets: one Kubernetes Secret (named by `--webhook-secret`) with a key per provider —
//! `github`, `gitlab`, `generic` — or a single `token` key for all. Read through a short cache, so a
//! flood of requests costs at most one API read per [`CACHE_TTL`], and a rotated secret is used within it.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// How long a read Secret is used before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// The deadline of one read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the secrets come from.
#[derive(Clone)]
pub enum SecretSource {
    /// A Secret in the cluster.
    Kubernetes {
        /// The client to read it with.
        client: Client,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Fixed values, by key (`github`, `gitlab`, `generic`, `token`).
    Fixed(BTreeMap<String, Vec<u8>>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Kubernetes { namespace, name, .. } => write!(f, "Secret {namespace}/{name}"),
            SecretSource::Fixed(keys) => write!(f, "fixed secrets {:?}", keys.keys().collect::<Vec<_>>()),
        }
    }
}

/// The secrets, cached.
pub(crate) struct SecretStore {
    source: SecretSource,
    cache: Mutex<Option<(Instant, Keys)>>,
    reading: tokio::sync::Mutex<()>,
}

/// A Secret's keys and values.
type Keys = Arc<BTreeMap<String, Vec<u8>>>;

impl SecretStore {
    pub(crate) fn new(source: SecretSource) -> Self {
        SecretStore {
            source,
            cache: Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached keys, unless they are older than [`CACHE_TTL`].
    fn fresh(&self) -> Option<Keys> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .as_ref()
            .filter(|(read, _)| read.elapsed() < CACHE_TTL)
            .map(|(_, keys)| keys.clone())
    }

    /// The secret of `provider`: its own key, else `token`. `Err` says why there is none (for the answer).
    pub(crate) async fn secret(&self, provider: &str) -> Result<Vec<u8>, String> {
        let keys = self.keys().await?;
        let usable = |key: &str| keys.get(key).filter(|v| !v.is_empty());
        usable(provider).or_else(|| usable("token")).cloned().ok_or_else(|| {
            format!(
                "{provider} webhooks are not set up: {:?} has no key {provider:?} (or \"token\")",
                self.source
            )
        })
    }

    async fn keys(&self) -> Result<Keys, String> {
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        // One read at a time: a burst after the cache went stale waits for it rather than each reading.
        let _reading = self.reading.lock().await;
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match self.read().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys.clone()));
                Ok(keys)
            }
            // A passing API hiccup: keep using what was read before.
            Err(e) => match cached {
                Some((_, keys)) => {
                    tracing::warn!("reading the webhook secret failed, using the last one read: {e}");
                    Ok(keys)
                }
                None => Err(e),
            },
        }
    }

    async fn read(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let (client, namespace, name) = match &self.source {
            SecretSource::Fixed(keys) => return Ok(keys.clone()),
            SecretSource::Kubernetes {
                client,
                namespace,
                name,
            } => (client, namespace, name),
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = tokio::time::timeout(READ_TIMEOUT, api.get_opt(name))
            .await
            .map_err(|_| format!("reading Secret {namespace}/{name} timed out"))?
            .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?;
        let Some(secret) = secret else {
            return Ok(BTreeMap::new());
        };
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }
}
