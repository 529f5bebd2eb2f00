//! The delivery controller (`cdkube run`): a kube-runtime [`Controller`] on Pipelines that owns their
//! builder Pods. The shared poller's head changes, probe failures and recoveries are fed into it as
//! reconcile triggers; each reconcile is the chain in [`reconcile`]; the artifact server hands builder
//! Pods their source.
//!
//! One [`Context`] is shared by every reconcile. Errors carry their own requeue policy
//! ([`Error::requeue`]); problems of a Pipeline (bad spec, bad Secret, unreachable repository, failed
//! build) are status conditions and Events, not errors.
mod election;
mod error;
pub mod history;
mod instruments;
pub mod pod;
mod reconcile;
mod source;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

pub use election::{Election, LEADER_LABEL, LEASE_NAME, lease_name, run_elected};
pub use error::{Error, StartError};

use crate::api::Pipeline;
use crate::artifact::{self, ArtifactServer, Signer};
use crate::git::{Engine, EngineOptions};
use crate::schedule::{Backoff, Event as PollEvent, Poller, PollerOptions};
use crate::telemetry::{Health, Metrics};
use crate::webhook::SecretSource;

/// `reportingController` of the operator's Events.
pub const REPORTER: &str = "cdkube-controller";

/// Where the artifact signing key lives.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// A file (created 0600 if absent): `cdkube dev`.
    File(PathBuf),
    /// A Secret (created if absent), so URLs survive restarts and are shared by replicas.
    Secret {
        /// Its namespace (the operator's own).
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch Pipelines in this namespace only; `None` for all.
    pub namespace: Option<String>,
    /// Git caches (`repos/`) and artifacts (`artifacts/`).
    pub storage_dir: PathBuf,
    /// Where the artifact server listens.
    pub artifact_listen: SocketAddr,
    /// The base URL builder Pods reach the artifact server at (`http://cdkube.cdkube-system.svc`); empty:
    /// `http://<artifact_listen>`, allowed only for a specific address such as 127.0.0.1.
    pub artifact_url: String,
    /// Image of the builder Pods' `fetch-source` init container (the operator's own image).
    pub fetch_image: String,
    /// Git operations (probe, fetch, export) at once.
    pub probe_concurrency: usize,
    /// Largest pack a repository server may send for one fetch (`cdkube run --max-pack-size`); see
    /// [`EngineOptions::max_pack_bytes`].
    pub max_pack_bytes: u64,
    /// Pipelines reconciled at once.
    pub reconcile_concurrency: u16,
    /// Accept `file://` and local-path repositories (only `cdkube dev`).
    pub allow_local_repos: bool,
    /// The artifact URL signing key.
    pub signing_key: SigningKey,
    /// Receives one line per run Event (`cdkube dev` prints them).
    pub notify: Option<mpsc::UnboundedSender<String>>,
    /// Handle only the Pipelines this label selector selects (a shard); `None` for all.
    pub label_selector: Option<String>,
    /// The webhook receiver, if enabled.
    pub webhook: Option<WebhookOptions>,
    /// Where the operator's metrics go.
    pub metrics: Arc<Metrics>,
    /// Where the operator reports its health.
    pub health: Health,
    /// Notified once reconciling has stopped (or the start failed), before the servers drain: leader
    /// election releases its Lease then.
    pub reconciling_stopped: Option<Arc<tokio::sync::Notify>>,
}

/// Notifies its `Notify` when dropped (see [`Options::reconciling_stopped`]).
struct NotifyOnDrop(Option<Arc<tokio::sync::Notify>>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        if let Some(notify) = &self.0 {
            notify.notify_one();
        }
    }
}

/// The webhook receiver's port and secrets.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Where its secrets come from.
    pub secrets: SecretSource,
}

/// Shared by every reconcile.
pub struct Context {
    client: Client,
    engine: Engine,
    poller: Poller,
    store: artifact::Store,
    signer: Signer,
    recorder: Recorder,
    options: Options,
    /// Builder Pods the API server refused, by (Pipeline uid, Pod name): the next reconcile fails the run.
    refusals: Mutex<HashMap<(String, String), String>>,
    /// Backoff of Pipelines whose Secret is unusable.
    backoff: Retries,
    /// The controller's cache of Pipelines, once it runs (the artifact server's rebuild hook reads it).
    pipelines: OnceLock<Store<Pipeline>>,
    /// Triggers waiting and reconciles running, for the work queue gauge.
    queue: instruments::Queue,
}

impl Context {
    fn template(&self) -> pod::PodTemplate {
        pod::PodTemplate {
            fetch_image: self.options.fetch_image.clone(),
        }
    }

    fn pipelines(&self) -> Option<&Store<Pipeline>> {
        self.pipelines.get()
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_refusal(&self, pipeline: &Pipeline, pod: String, message: String) {
        self.refusals()
            .insert((pipeline.uid().unwrap_or_default(), pod), message);
    }

    /// Refused Pods of `pipeline`, by name. Taken, not copied: once the run is failed, they are done.
    fn create_failures(&self, pipeline: &Pipeline) -> HashMap<String, String> {
        let uid = pipeline.uid().unwrap_or_default();
        let mut refusals = self.refusals();
        let mine: Vec<(String, String)> = refusals.keys().filter(|(u, _)| *u == uid).cloned().collect();
        mine.into_iter()
            .filter_map(|key| refusals.remove(&key).map(|message| (key.1, message)))
            .collect()
    }
}

/// Consecutive failures per Pipeline, and the backoff they earn.
#[derive(Default)]
struct Retries {
    failures: Mutex<HashMap<String, u32>>,
    backoff: Backoff,
}

impl Retries {
    /// One more failure of `id`: how long to wait before the next attempt.
    fn next(&self, id: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(id.to_owned()).or_default();
        *n = n.saturating_add(1);
        self.backoff.delay(*n)
    }

    fn reset(&self, id: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Runs the operator until `shutdown` resolves: then polling stops, in-flight reconciles (and their status
/// writes) finish, and the artifact server closes.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let stopped_reconciling = NotifyOnDrop(options.reconciling_stopped.clone());
    let pipelines: Api<Pipeline> = scoped_api(&client, options.namespace.as_deref());
    pipelines
        .list(&ListParams::default().limit(1))
        .await
        .map_err(StartError::Crd)?;
    let addr = options.artifact_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let mut webhook_listener = match &options.webhook {
        Some(webhook) => {
            let addr = webhook.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?;
            if let Ok(bound) = listener.local_addr() {
                tracing::info!("webhook receiver on http://{bound} (/hooks/github, /hooks/gitlab, /hooks/generic)");
            }
            Some((listener, webhook.secrets.clone()))
        }
        None => None,
    };
    let mut options = options;
    if options.artifact_url.is_empty() {
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?;
        if bound.ip().is_unspecified() {
            return Err(StartError::ArtifactUrl(bound));
        }
        options.artifact_url = format!("http://{bound}");
    }
    let (ctx, events) = context(client.clone(), options).await?;
    let ctx = Arc::new(ctx);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = ArtifactServer::new(
        ctx.store.clone(),
        ctx.signer.clone(),
        Arc::new(source::Rebuilder { ctx: Arc::clone(&ctx) }),
    );
    let server_task = tokio::spawn(artifact::serve(listener, server, wait_stop(stop_rx.clone())));
    let webhook_task = match webhook_listener.take() {
        Some((listener, secrets)) => {
            let router = crate::webhook::router(ctx.poller.clone(), secrets, Arc::clone(&ctx.options.metrics));
            let limits = crate::serve::Limits::SHORT;
            Some(tokio::spawn(crate::serve::serve(
                listener,
                router,
                limits,
                wait_stop(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let poller_task = tokio::spawn(ctx.poller.clone().run());
    controller(Arc::clone(&ctx), events, pipelines, shutdown).await;
    drop(stopped_reconciling);
    tracing::info!("stopped reconciling; closing the artifact server");
    poller_task.abort();
    let _ = stop_tx.send(true);
    let _ = server_task.await;
    if let Some(task) = webhook_task {
        let _ = task.await;
    }
    Ok(())
}

async fn wait_stop(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An API for `K` in the watch scope: one namespace, or all.
fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Builds the shared context (git engine, poller, artifact store and signing key, Event recorder) and
/// the receiver of the poller's events.
async fn context(
    client: Client,
    options: Options,
) -> Result<(Context, mpsc::UnboundedReceiver<PollEvent>), StartError> {
    let mut engine_options = EngineOptions::new(options.storage_dir.join("git"));
    engine_options.max_concurrency = options.probe_concurrency.max(1);
    engine_options.max_pack_bytes = options.max_pack_bytes;
    let engine = Engine::new(engine_options)?;
    let poller_options = PollerOptions {
        observer: Some(instruments::probe_observer(Arc::clone(&options.metrics))),
        ..PollerOptions::default()
    };
    let (poller, events) = Poller::new(engine.clone(), poller_options);
    let store = artifact::Store::open(&options.storage_dir.join("artifacts"))?;
    options.health.set_storage(store.dir().to_path_buf());
    let signer = match &options.signing_key {
        SigningKey::File(path) => artifact::load_or_create_key_file(path)?,
        SigningKey::Secret { namespace, name } => {
            artifact::load_or_create_key_secret(client.clone(), namespace, name).await?
        }
    };
    let ctx = Context {
        recorder: Recorder::new(client.clone(), Reporter::from(REPORTER)),
        client,
        engine,
        poller,
        store,
        signer,
        options,
        refusals: Mutex::default(),
        backoff: Retries::default(),
        pipelines: OnceLock::new(),
        queue: instruments::Queue::default(),
    };
    Ok((ctx, events))
}

/// Runs the kube-runtime Controller until `shutdown`: Pipelines, their builder Pods (label-selected), and
/// the poller's events as reconcile triggers.
async fn controller(
    ctx: Arc<Context>,
    events: mpsc::UnboundedReceiver<PollEvent>,
    pipelines: Api<Pipeline>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let pods: Api<Pod> = scoped_api(&ctx.client, ctx.options.namespace.as_deref());
    let pod_watch = watcher::Config::default().labels(&format!("{}={}", pod::MANAGED_BY_LABEL, pod::MANAGED_BY));
    let config = ControllerConfig::default().concurrency(ctx.options.reconcile_concurrency.max(1));
    // One signal, two uses: the controller's graceful shutdown, and a deadline for it.
    let (graceful, stopped) = split_shutdown(shutdown);
    let (store, pipeline_events) = instruments::watched_pipelines(pipelines, &ctx.options);
    let controller = Controller::for_stream(pipeline_events, store.clone())
        .owns(pods, pod_watch)
        .reconcile_on(poll_triggers(events, Arc::clone(&ctx)))
        .with_config(config)
        .graceful_shutdown_on(graceful);
    let _ = ctx.pipelines.set(store.clone());
    instruments::set_refresher(&ctx);
    let deadline = async move {
        stopped.await;
        // Before the caches are filled no reconcile can be running: a stop then needs no grace.
        let ready = tokio::time::timeout(Duration::ZERO, store.wait_until_ready())
            .await
            .is_ok();
        if ready {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&ctx)));
    let running = controller
        .run(instruments::timed_reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("reconcile: {e}");
            }
        });
    tokio::select! {
        () = running => {}
        () = deadline => tracing::warn!("reconciles still running {SHUTDOWN_GRACE:?} after the stop signal; stopping anyway"),
    }
    housekeeping.abort();
}

/// How long in-flight reconciles may take to finish after the stop signal. (A stop that comes before the
/// controller's caches are filled would otherwise wait for caches that no longer fill.)
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Splits `shutdown` into the controller's graceful-shutdown trigger and a second future resolving at the
/// same time (the start of [`SHUTDOWN_GRACE`]).
fn split_shutdown(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    impl std::future::Future<Output = ()> + Send + Sync + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = graceful_tx.send(());
        let _ = deadline_tx.send(());
    });
    let graceful = futures::FutureExt::map(graceful_rx, |_| ());
    let stopped = async move {
        if deadline_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    (graceful, stopped)
}

/// The poller's events as Pipeline references: every subscriber of a key whose head changed, whose probe
/// failed or recovered.
fn poll_triggers(
    events: mpsc::UnboundedReceiver<PollEvent>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = ObjectRef<Pipeline>> + Send {
    let receive = move |mut rx: mpsc::UnboundedReceiver<PollEvent>| {
        let ctx = Arc::clone(&ctx);
        async move {
            let event = rx.recv().await;
            instruments::poll_event_received(&ctx, event.as_ref(), rx.len());
            event.map(|e| (e, rx))
        }
    };
    futures::stream::unfold(events, receive).flat_map(|event| {
        let subscribers = match event {
            PollEvent::HeadChanged { subscribers, .. }
            | PollEvent::ProbeFailed { subscribers, .. }
            | PollEvent::Recovered { subscribers, .. } => subscribers,
        };
        futures::stream::iter(subscribers.into_iter().filter_map(|id| {
            let (namespace, name) = id.split_once('/')?;
            Some(ObjectRef::new(name).within(namespace))
        }))
    })
}

/// Every few seconds: Pipelines that are gone leave the poller (a key with no subscribers is never probed
/// again); every few minutes, artifacts no retained run references are pruned.
async fn housekeeping(ctx: Arc<Context>) {
    let Some(store) = ctx.pipelines().cloned() else {
        return;
    };
    wait_ready(&store).await;
    ctx.options.health.set_caches_synced();
    tracing::info!("Pipeline cache synced");
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(HOUSEKEEPING).await;
        for id in ctx.poller.subscriptions() {
            let Some((namespace, name)) = id.split_once('/') else {
                continue;
            };
            if store.get(&ObjectRef::new(name).within(namespace)).is_none() {
                ctx.poller.unsubscribe(&id);
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(PRUNE_EVERY) {
            prune(&ctx, &store);
        }
    }
}

/// Waits until `store` holds its first list. Polled rather than awaited once: kube-runtime's readiness
/// signal wakes only the last of several waiters, and the controller itself waits on it too.
async fn wait_ready(store: &Store<Pipeline>) {
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Prune every [`PRUNE_EVERY`] housekeeping ticks.
const PRUNE_EVERY: u64 = 30;
/// An artifact younger than this is never pruned (its run may not be recorded yet).
const PRUNE_MIN_AGE: Duration = Duration::from_secs(600);

/// Deletes artifacts that no Pipeline's status references any more.
fn prune(ctx: &Context, store: &Store<Pipeline>) {
    let keep: HashSet<String> = store
        .state()
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            let runs = s.history.iter().filter_map(|r| r.source_digest.clone());
            runs.chain(s.artifact.as_ref().map(|a| a.digest.clone()))
        })
        .collect();
    match artifact::prune(&ctx.store, &keep, PRUNE_MIN_AGE) {
        Ok(report) if report.removed > 0 => {
            tracing::info!("pruned {} artifacts ({} bytes)", report.removed, report.bytes_freed)
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("pruning artifacts: {e}"),
    }
}

/// Logs a reconcile error and says when to retry.
fn error_policy(pipeline: Arc<Pipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    instruments::reconcile_failed(&ctx, error);
    if matches!(error, Error::Conflict) {
        // Expected now and then: the cache had not yet seen the previous status write.
        tracing::debug!(pipeline = %pipeline.name_any(), "status conflict; retrying");
        return Action::requeue(error.requeue());
    }
    tracing::warn!(
        pipeline = %format!("{}/{}", pipeline.namespace().unwrap_or_default(), pipeline.name_any()),
        reason = error.reason(),
        "reconcile failed: {error}"
    );
    Action::requeue(error.requeue())
}

/// How often Pipelines that no longer exist are unsubscribed.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// A future that resolves at the first SIGTERM or SIGINT (for [`run`]'s `shutdown`). Must be called
/// inside a tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + Sync + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: stopping");
        let _ = tx.send(());
    });
    Ok(futures::FutureExt::map(rx, |_| ()))
}
