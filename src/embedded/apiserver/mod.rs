//! The Kubernetes API server emulator: serves the Kubernetes REST API on 127.0.0.1 over HTTPS (a
//! fresh CA per start, bearer token required) to kube-rs and kubectl alike, writes the kubeconfig,
//! bootstraps the default namespaces and runs the garbage collector.
//!
//! Three layers, each using only the ones below it:
//! - [`http`]: the router and everything on the wire — discovery, OpenAPI, query parameters,
//!   protobuf request bodies, server-side Tables, watch streams and Pod logs;
//! - [`storage`]: the object store with its resourceVersions and watch history, create/update/delete
//!   semantics, server-side apply and field managers, patches, selectors, the Pod binding and the
//!   garbage collector;
//! - [`admission`]: what a write must satisfy per type — built-in type rules, CRDs, structural
//!   schemas, CEL rules, Events.
//!
//! Beside them, used by all three: [`error`] (`metav1.Status` errors), [`decode`] (request bodies
//! within the input limits), [`resources`] (the served types), [`ids`] (UIDs, tokens, timestamps),
//! [`tokens`] (ServiceAccount JWTs), and for the start-up only `embedded::tls`, [`kubeconfig`]
//! and [`policy`] (the bootstrap RBAC policy).
//!
//! # Authentication and authorization
//!
//! The kubeconfig's bearer token is the administrator (user `system:admin`, group
//! `system:masters`: allowed everything). ServiceAccount tokens from TokenRequest
//! (`kubectl create token`) authenticate as `system:serviceaccount:NS:NAME` (groups
//! `system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`) while their
//! ServiceAccount exists with the uid they name; every request they make is authorized by RBAC
//! (Roles, ClusterRoles and their bindings, served under rbac.authorization.k8s.io/v1), with
//! kube-apiserver's 403 wording, and may grant through RBAC only what it holds.
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i
//! --list`) and SelfSubjectReview (`kubectl auth whoami`) are served. Every namespace gets a
//! `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap; a Pod naming a missing
//! ServiceAccount is refused (403), and a Pod that automounts a token gets the
//! `kube-api-access-*` volume, as the ServiceAccount admission plugin does.
//!
//! # Deviations from kube-apiserver
//!
//! The emulator is honest about what it is: a single-process stand-in for a development machine.
//! - Storage is in memory: objects are lost when the server stops; one global resourceVersion counter
//!   and a bounded change history (older resourceVersions answer 410 Expired) stand in for etcd.
//! - Authentication is the admin bearer token or a ServiceAccount token (no client certificates,
//!   OIDC, webhook or static token files); anonymous requests reach only `/version` and the health
//!   endpoints (elsewhere 401, not RBAC's 403). Tokens are HS256 JWTs signed with
//!   `<state_dir>/sa-signing.key` (kube-apiserver signs RS256/ES256 and serves
//!   `/openid/v1/jwks`; this server serves no OIDC discovery), with the issuer and only audience
//!   `https://kubernetes.default.svc.cluster.local`; there are no legacy Secret-based tokens and no
//!   `--service-account-max-token-expiration` cap.
//! - Authorization is RBAC alone (no Node or webhook authorizer), with its escalation checks on
//!   writes of Roles and bindings (`escalate` and `bind` verbs) and ClusterRole aggregation
//!   (`aggregationRule`, filled in by the in-process controller). Left out: SubjectAccessReview,
//!   LocalSubjectAccessReview and impersonation. Of the bootstrap policy
//!   only `cluster-admin`, `system:discovery`, `system:basic-user` and `system:public-info-viewer`
//!   exist (with their bindings); `admin`, `edit` and `view` do not.
//! - Tokens mounted into Pods (the `kube-api-access-*` volume the ServiceAccount admission plugin
//!   adds) are requested by the pod runner when the Pod starts and not renewed while it runs.
//! - There are no admission webhooks and no API aggregation.
//! - `pods/exec` and `pods/attach` (see `http::exec`) are served by this process itself from the
//!   pod runner's records in the shared state directory, not forwarded to a kubelet: only Pods of
//!   a runner sharing the state directory (`cdkube dev`) can be exec'd into. They speak WebSocket
//!   (`v5.channel.k8s.io`, `v4.channel.k8s.io`) only; a SPDY upgrade is 400 after the Pod checks.
//!   No terminal is allocated for `tty=true` (stderr joins stdout; resizes are ignored), and
//!   attach streams the container's output from then on without stdin (containers get none).
//!   An exec'd command gets its own mount namespace built like its container's (volumes and
//!   `/tmp` shared) and is killed when the container's process ends or the stream closes.
//!   `pods/ephemeralcontainers` is served (GET, PUT, PATCH); `pods/portforward` is not.
//! - Only the built-in types cdkube, its tests and common tools use are served (namespaces, pods
//!   with `status`, `log`, `binding`, `eviction`, `exec`, `attach` and `ephemeralcontainers`, secrets, configmaps, serviceaccounts with
//!   `token`, events in both views, leases, nodes with `status`, services with `status`, endpoints,
//!   discovery.k8s.io EndpointSlices, apiregistration.k8s.io APIServices, CustomResourceDefinitions,
//!   the four RBAC types and the three self-reviews), plus the custom resources CRDs define, with
//!   `scale` where the CRD declares it. Not served (404): workloads (Deployments, ReplicaSets,
//!   StatefulSets, DaemonSets, Jobs, CronJobs), PersistentVolumes and their claims, StorageClasses,
//!   CertificateSigningRequests, PodDisruptionBudgets (so the `policy` group is absent),
//!   NetworkPolicies, Ingresses, ResourceQuotas, LimitRanges, PriorityClasses, ServiceCIDRs and
//!   IPAddresses, the admission-registration types, ComponentStatuses; and the streaming and proxy
//!   subresources `pods/portforward`, `pods/proxy`, `services/proxy` and `nodes/proxy`.
//! - Metadata-only reads (`as=PartialObjectMetadata`/`PartialObjectMetadataList`, meta.k8s.io v1
//!   and v1beta1) answer as kube-apiserver does, 406s included; a write that asks for the list form
//!   is answered with the object's metadata rather than a 406 after the write.
//! - Aggregated discovery (apidiscovery.k8s.io v2 and v2beta1) and the legacy documents are both
//!   served. APIServices exist for the served group/versions as local ones (Available, reason
//!   Local); nothing is aggregated, so an APIService a client writes is stored but never proxied
//!   to and its status is never computed.
//! - Services get ClusterIPs from 10.96.0.0/12 (`kubernetes` is 10.96.0.1) and node ports from
//!   30000-32767 (the lowest free one, where kube-apiserver picks at random); IPv4 single-stack
//!   only. Nothing routes to them (no kube-proxy, no `services/proxy`), and no endpoints or
//!   EndpointSlice controller fills in Endpoints for selectors: only the `kubernetes` Service's
//!   Endpoints and EndpointSlice exist (naming this server's address), besides what clients write.
//!   Validation covers the basics (type, ports and their names, protocols, session affinity,
//!   ClusterIP allocation and immutability; Endpoints addresses and ports; EndpointSlice address
//!   type and addresses).
//! - Nodes are validated for pod CIDRs and taints only; there is no node lifecycle controller (a
//!   Node whose heartbeat Lease expires stays as it was reported), no `not-ready` taint added on
//!   creation (TaintNodesByCondition) and no NodeRestriction admission.
//! - Eviction (`pods/eviction`, policy/v1 and v1beta1) deletes the Pod with the Eviction's
//!   `deleteOptions` and answers 201 Success; with no PodDisruptionBudgets every eviction is
//!   allowed (never 429); `kubectl drain` evicts through it.
//! - `scale` exists for custom resources only (no built-in workloads); it takes GET, PUT and merge
//!   or JSON patches, not server-side apply (415).
//! - CRDs are established synchronously on write (no apiextensions controller delay), and objects
//!   are never converted between a CRD's versions (no conversion webhook is called).
//! - Responses are JSON only: an Accept header that allows nothing but protobuf or CBOR is 406;
//!   protobuf request bodies are decoded only for the types `kubectl create` sends that way.
//! - The garbage collector and namespace controller (and with them the serviceaccount and
//!   clusterrole-aggregation controllers) run in-process after writes, not as a separate
//!   controller manager.
//! - Built-in types are validated for the fields cdkube, its runner and common manifests use, with
//!   kube-apiserver's rules, field paths and messages (Pods: containers, volumes and their common
//!   sources, env, ports, resources, probes, security contexts, tolerations; ObjectMeta; ConfigMaps,
//!   Secrets, Leases, Events, CRDs). Pod affinity, topology spread, DNS config, host aliases,
//!   OS-specific fields, resource claims, sysctls and the cloud volume sources are accepted as sent.
//! - CRD validation rules are type-checked against their schema at CRD creation for undefined
//!   fields, operator and function overloads, undeclared names and a non-bool result; types it
//!   cannot be sure of (unknown-field objects, int-or-string, the Kubernetes CEL libraries) are
//!   not judged, so a rule kube-apiserver would refuse for those may be accepted. The cost
//!   estimate (`estimated rule cost exceeds budget`) is not computed.
//! - Messages that carry Go-specific text are approximated: the Pod update refusal has no Go diff
//!   after its first line, a JSON body that does not parse reports serde's wording, and a CRD
//!   error naming its versions prints a version's own schema as null when versions differ.
//! - Request limits are kube-apiserver's (3 MiB bodies → 413, 1 MiB of headers → 431, header-read
//!   32 s, idle 90 s, body 60 s; JSON patches: 10 000 operations, 3 MiB of copies; see
//!   `embedded::conn` and [`decode`]), but bodies nested deeper than 100 levels are refused (400)
//!   where kube-apiserver's decoders allow 10 000, a patch whose result nests deeper is 422, and
//!   idle HTTP/1.1 connections close after the 32 s header timeout rather than 90 s. A patch body
//!   is decoded before the object is looked up, so a malformed patch of a missing object is 400,
//!   not 404. There is no etcd request size limit (1.5 MiB): an object of up to 3 MiB is stored,
//!   and writing a huge one holds the store's lock while it is checked.
//!
//! `tests/conformance.rs` sends the same requests to the emulator and to a real kube-apiserver
//! and compares the answers; a case listed there as a deviation names one of the points above.
//!
//! Where it does emulate, the wording of errors, Status reasons and codes follows kube-apiserver,
//! because clients (kubectl, kube-rs) match on them.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::json;
use tokio::task::JoinHandle;

use self::error::ApiError;
use self::http::Server;
use self::storage::gc;
use self::storage::ops::{self, WriteOpts};
use self::storage::store::Store;
use self::storage::{apiservices, services};
use crate::embedded::tls;

pub(crate) mod admission;
pub(crate) mod decode;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod ids;
mod kubeconfig;
pub use kubeconfig::Credential;
mod policy;
pub(crate) mod resources;
pub(crate) mod storage;
pub(crate) mod tokens;

/// Errors starting or using the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// 127.0.0.1:port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port.
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The written kubeconfig could not be read back or turned into a client configuration.
    #[error("cannot build a kube client: {0}")]
    ClientConfig(#[source] kube::config::KubeconfigError),
    /// Building a kube client from the configuration failed.
    #[error("cannot build a kube client: {0}")]
    Client(#[source] kube::Error),
    /// The serving certificate could not be generated.
    #[error("cannot generate the serving certificate: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The ServiceAccount token signing key could not be read or created.
    #[error("cannot read or create the ServiceAccount signing key in {path}: {source}")]
    SigningKey {
        /// The state directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Creating a bootstrap object failed.
    #[error("cannot bootstrap the store: {0}")]
    Bootstrap(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Where the kubeconfig and pod logs live.
    pub state_dir: PathBuf,
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Bearer token; a random one when `None`.
    pub token: Option<String>,
    /// How many changes are kept for watch replay and `continue` (older → 410 Expired).
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Timeouts and header size limits of each connection (kube-apiserver's by default).
    pub limits: crate::embedded::ServeLimits,
}

impl ApiServerConfig {
    /// Defaults for a state directory: any port, random token, 10 000 changes of history,
    /// bookmarks every minute (as kube-apiserver).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            port: 0,
            token: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(60),
            limits: Default::default(),
        }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self::new(".cdkube-dev")
    }
}

impl ApiServer {
    /// Starts serving; returns once the port is bound and the kubeconfig written.
    pub async fn start(config: ApiServerConfig) -> Result<ApiServer, Error> {
        crate::embedded::state_dir::create_state_dir(&config.state_dir).map_err(|source| Error::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| hex::encode(ids::random_bytes(32)));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| Error::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            port: config.port,
            source,
        })?;
        let signer = tokens::Signer::load_or_create(&config.state_dir).map_err(|source| Error::SigningKey {
            path: config.state_dir.clone(),
            source,
        })?;
        let certs = tls::generate("cdkube-embedded-apiserver").map_err(|e| Error::Tls(e.into()))?;
        let store = Arc::new(Store::new(config.watch_history));
        store.lock().set_root_ca(&certs.ca_pem);
        bootstrap(&store, addr)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let server = Arc::new(Server {
            store: store.clone(),
            token: token.clone(),
            signer,
            state_dir: config.state_dir.clone(),
            addr,
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown_rx.clone(),
        });
        let app = Router::new().fallback(http::entry).with_state(server);
        let serve = tokio::spawn(tls::serve(
            listener,
            certs.acceptor,
            app,
            config.limits.clone(),
            shutdown_rx.clone(),
        ));
        let gc = tokio::spawn(gc::run(store, shutdown_rx));
        let kubeconfig_path = config.state_dir.join("kubeconfig");
        let url = format!("https://{addr}");
        let ca_path = config.state_dir.join("ca.crt");
        crate::embedded::state_dir::write_file(&ca_path, certs.ca_pem.as_bytes())
            .map_err(|source| Error::Kubeconfig { path: ca_path, source })?;
        kubeconfig::write(&kubeconfig_path, &url, &certs.ca_pem, Credential::Token(&token)).map_err(|source| {
            Error::Kubeconfig {
                path: kubeconfig_path.clone(),
                source,
            }
        })?;
        tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "embedded API server listening");
        Ok(ApiServer {
            addr,
            token,
            kubeconfig_path,
            ca_pem: certs.ca_pem,
            shutdown: Some(shutdown_tx),
            tasks: vec![serve, gc],
        })
    }
}

fn bootstrap(store: &Store, addr: SocketAddr) -> Result<(), Error> {
    let mut st = store.lock();
    let rt = st
        .find_type("", "v1", "namespaces")
        .ok_or_else(|| Error::Bootstrap(ApiError::internal("no namespaces type").into()))?;
    let opts = WriteOpts {
        manager: "kube-apiserver".into(),
        ..Default::default()
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ops::create(&mut st, &rt, None, ns, &opts).map_err(|e| Error::Bootstrap(e.into()))?;
    }
    for (plural, obj) in policy::objects() {
        let rt = st
            .find_type("rbac.authorization.k8s.io", "v1", plural)
            .ok_or_else(|| Error::Bootstrap(ApiError::internal("no RBAC types").into()))?;
        ops::create(&mut st, &rt, None, obj, &opts).map_err(|e| Error::Bootstrap(e.into()))?;
    }
    apiservices::sync(&mut st);
    services::bootstrap_kubernetes(&mut st, addr).map_err(|e| Error::Bootstrap(e.into()))?;
    Ok(())
}

/// kube's rustls needs a process-wide crypto provider when several are compiled in (ring via kube,
/// aws-lc via other dependencies); ring is kube's choice. A second install is a harmless no-op.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running API server, started with [`ApiServer::start`]. Dropping it stops the server too
/// (without waiting).
pub struct ApiServer {
    addr: SocketAddr,
    token: String,
    kubeconfig_path: PathBuf,
    ca_pem: String,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the serving certificate (also in `<state_dir>/ca.crt`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The kubeconfig written for this server (mode 0600).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kube-rs client configured from the written kubeconfig (the administrator's).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        Self::client_from(&self.kubeconfig_path).await
    }

    /// Writes (mode 0600) a kubeconfig for this server that authenticates with `credential`, e.g.
    /// a ServiceAccount token from a TokenRequest.
    pub fn write_kubeconfig(&self, path: &Path, credential: Credential<'_>) -> Result<(), Error> {
        kubeconfig::write(path, &self.url(), &self.ca_pem, credential).map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A kube-rs client configured from a kubeconfig file.
    pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client, Error> {
        install_crypto_provider();
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(Error::ClientConfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(Error::ClientConfig)?;
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// Stops serving: open watches and log streams end, the port is released.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}
