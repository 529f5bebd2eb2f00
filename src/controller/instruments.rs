//! The controller's metrics and health reports, kept out of the reconcile logic: a timer around each
//! reconcile (recorded on drop, as in controller-rs), the probe observer, the Pipeline watch that tells
//! [`Health`](crate::telemetry::Health) whether it makes progress, and the gauges read at scrape time.
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::{Context, Error, Options, reconcile};
use crate::api::{Pipeline, PipelineStatus, RunPhase};
use crate::schedule::{Event as PollEvent, Key, ProbeObserver};
use crate::telemetry::{Metrics, ProbeLabels, Timer, TransportLabels, TriggerLabels};

/// The controller's work in numbers: poll triggers waiting, reconciles running.
#[derive(Default)]
pub(super) struct Queue {
    waiting: AtomicI64,
    running: AtomicI64,
}

/// Reconciles `pipeline`, timing it and counting it as running meanwhile.
pub(super) async fn timed_reconcile(pipeline: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = Timer::start(&ctx.options.metrics.reconcile_duration);
    let _running = Running::start(&ctx.queue.running);
    reconcile::reconcile(pipeline, Arc::clone(&ctx)).await
}

/// Counts a reconcile as running until dropped (also when the controller drops it unfinished).
struct Running<'a>(&'a AtomicI64);

impl<'a> Running<'a> {
    fn start(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Running(counter)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a failed reconcile by its reason.
pub(super) fn reconcile_failed(ctx: &Context, error: &Error) {
    let labels = crate::telemetry::ReasonLabels {
        reason: error.reason().to_owned(),
    };
    ctx.options.metrics.reconcile_errors.get_or_create(&labels).inc();
}

/// Takes note of a poller event (`pending`: how many more wait behind it).
pub(super) fn poll_event_received(ctx: &Context, event: Option<&PollEvent>, pending: usize) {
    ctx.queue.waiting.store(pending as i64, Ordering::Relaxed);
    // A first sighting (after a start or a new subscription) is not a change.
    if let Some(PollEvent::HeadChanged { old: Some(_), .. }) = event {
        ctx.options.metrics.head_changes.inc();
    }
}

/// How a repository URL is reached, for the `transport` label.
fn transport(url: &str) -> &'static str {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("https") => "https",
        Some("http") => "http",
        Some("ssh") => "ssh",
        Some("git") => "git",
        Some("file") => "file",
        Some(_) => "other",
        None if url.starts_with('/') => "file",
        None => "ssh",
    }
}

/// Records one probe of `url`.
pub(super) fn record_probe<T>(metrics: &Metrics, url: &str, result: &crate::git::Result<T>, took: Duration) {
    let transport = transport(url).to_owned();
    let result = match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.kind().to_string(),
    };
    metrics
        .probes
        .get_or_create(&ProbeLabels {
            result,
            transport: transport.clone(),
        })
        .inc();
    metrics
        .probe_duration
        .get_or_create(&TransportLabels { transport })
        .observe(took.as_secs_f64());
}

/// The poller's observer: every probe it sends goes into `metrics`.
pub(super) fn probe_observer(metrics: Arc<Metrics>) -> ProbeObserver {
    ProbeObserver(Arc::new(move |key: &Key, result, took| {
        record_probe(&metrics, &key.url, result, took)
    }))
}

/// Counts the runs a status write starts and finishes.
pub(super) fn record_runs(metrics: &Metrics, old: &PipelineStatus, new: &PipelineStatus) {
    for run in &new.history {
        let before = old.history.iter().find(|r| r.run == run.run);
        if before.is_none() && run.phase != RunPhase::Skipped {
            let trigger = serde_json::to_value(run.trigger)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            metrics.builds_started.get_or_create(&TriggerLabels { trigger }).inc();
        }
        let finished = matches!(run.phase, RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled);
        if finished && before.is_none_or(|b| b.phase != run.phase) {
            let took = match (&run.start_time, &run.completion_time) {
                (Some(start), Some(end)) => end.0.duration_since(start.0).try_into().ok(),
                _ => None,
            };
            metrics.build_finished(&format!("{:?}", run.phase), took);
        }
    }
}

/// The Pipelines this process handles (all, or the shard `--label-selector` picks), as a reflector
/// store and the stream of changes that drives the controller. Every watch result goes to the health
/// state: errors without a success in between make `/healthz` fail after the stall timeout.
pub(super) fn watched_pipelines(
    api: Api<Pipeline>,
    options: &Options,
) -> (
    Store<Pipeline>,
    impl Stream<Item = Result<Pipeline, watcher::Error>> + Send + 'static,
) {
    let mut config = watcher::Config::default();
    if let Some(selector) = &options.label_selector {
        config = config.labels(selector);
    }
    let (reader, writer) = reflector::store();
    let health = options.health.clone();
    let events = reflector::reflector(writer, watcher(api, config))
        .inspect(move |event| match event {
            Ok(_) => health.watch_ok(),
            Err(e) => health.watch_failed(e.to_string()),
        })
        .applied_objects();
    (reader, events)
}

/// Sets the gauges read at scrape time: Pipelines by phase, artifact bytes, the work queue.
pub(super) fn set_refresher(ctx: &Arc<Context>) {
    let weak = Arc::downgrade(ctx);
    ctx.options.metrics.set_refresher(Box::new(move |metrics| {
        let Some(ctx) = weak.upgrade() else {
            return;
        };
        metrics.artifact_bytes.set(ctx.store.total_bytes() as i64);
        let depth = ctx.queue.waiting.load(Ordering::Relaxed) + ctx.queue.running.load(Ordering::Relaxed);
        metrics.workqueue_depth.set(depth);
        let Some(store) = ctx.pipelines() else {
            return;
        };
        metrics.pipelines.clear();
        for pipeline in store.state() {
            let phase = pipeline
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .map_or_else(|| "Unknown".to_owned(), |p| format!("{p:?}"));
            metrics
                .pipelines
                .get_or_create(&crate::telemetry::PhaseLabels { phase })
                .inc();
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_by_url() {
        for (url, expected) in [
            ("https://h/r", "https"),
            ("http://h/r", "http"),
            ("ssh://git@h/r", "ssh"),
            ("git@h:r.git", "ssh"),
            ("git://h/r", "git"),
            ("file:///r", "file"),
            ("/srv/r", "file"),
        ] {
            assert_eq!(transport(url), expected, "{url}");
        }
    }
}
