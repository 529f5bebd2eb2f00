//! The operator's Prometheus metrics (prometheus-client, OpenMetrics text on `/metrics`). One [`Metrics`]
//! per process, shared by the poller, the controller and the webhook receiver. Names follow Prometheus
//! conventions: counters end in `_total` (prometheus-client appends it), durations are `_seconds`.
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `cdkube_probes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `ok`, or the error kind (`Network`, `Authentication`, `Timeout`, …).
    pub result: String,
    /// `https`, `http`, `ssh`, `git`, `file`.
    pub transport: String,
}

/// Labels of the probe duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `https`, `http`, `ssh`, `git`, `file`.
    pub transport: String,
}

/// Labels of `cdkube_builds_started_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `poll`, `webhook`, `manual`, `spec-change`.
    pub trigger: String,
}

/// Labels of finished builds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `Succeeded`, `Failed`, `Cancelled`.
    pub result: String,
}

/// Labels of `cdkube_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The error's reason (`KubeApi`, `Conflict`, …).
    pub reason: String,
}

/// Labels of `cdkube_webhook_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `github`, `gitlab`, `generic`.
    pub provider: String,
    /// `accepted` (a push that probed), `ignored` (202, nothing to do), `unauthorized`, `bad_request`,
    /// `too_large`, `unavailable` (the secret cannot be read or has no key for the provider).
    pub result: String,
}

/// Labels of `cdkube_pipelines`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The Pipeline's `status.phase` (`Unknown` before the first status).
    pub phase: String,
}

/// Histograms of durations from 5 ms to about 11 min, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// Histograms of build durations, from 1 s to about 4.5 h, doubling.
fn build_seconds() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    /// Probes by result and transport.
    pub probes: Family<ProbeLabels, Counter>,
    /// Probe durations by transport.
    pub probe_duration: Family<TransportLabels, Histogram, fn() -> Histogram>,
    /// Branch heads that moved.
    pub head_changes: Counter,
    /// Builds started, by trigger.
    pub builds_started: Family<TriggerLabels, Counter>,
    /// Builds finished, by result.
    pub builds_finished: Family<ResultLabels, Counter>,
    /// Build durations (Pod start to completion), by result.
    pub build_duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    /// Reconcile durations.
    pub reconcile_duration: Histogram,
    /// Reconciles that failed, by reason.
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    /// Reconcile triggers waiting, and reconciles running.
    pub workqueue_depth: Gauge,
    /// Webhook requests, by provider and result.
    pub webhook_requests: Family<WebhookLabels, Counter>,
    /// Bytes of artifacts in the store.
    pub artifact_bytes: Gauge,
    /// Pipelines by phase (this process's watch scope).
    pub pipelines: Family<PhaseLabels, Gauge>,
    /// 1 while this process is the leader (or runs without election), else 0.
    pub leader: Gauge,
    /// Sets the gauges that are read rather than counted (Pipelines by phase, artifact bytes) before a scrape.
    refresher: std::sync::Mutex<Option<Refresher>>,
}

/// Sets read-at-scrape gauges; see [`Metrics::set_refresher`].
pub type Refresher = Box<dyn Fn(&Metrics) + Send + Sync>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            probes: Family::default(),
            probe_duration: Family::new_with_constructor(seconds),
            head_changes: Counter::default(),
            builds_started: Family::default(),
            builds_finished: Family::default(),
            build_duration: Family::new_with_constructor(build_seconds),
            reconcile_duration: seconds(),
            reconcile_errors: Family::default(),
            workqueue_depth: Gauge::default(),
            webhook_requests: Family::default(),
            artifact_bytes: Gauge::default(),
            pipelines: Family::default(),
            leader: Gauge::default(),
            refresher: std::sync::Mutex::new(None),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "cdkube_probes",
            "Ref probes of repositories, by result and transport",
            self.probes.clone(),
        );
        r.register(
            "cdkube_probe_duration_seconds",
            "Duration of ref probes",
            self.probe_duration.clone(),
        );
        r.register(
            "cdkube_head_changes",
            "Branch heads that moved",
            self.head_changes.clone(),
        );
        r.register(
            "cdkube_builds_started",
            "Builds started, by trigger",
            self.builds_started.clone(),
        );
        r.register(
            "cdkube_builds_finished",
            "Builds finished, by result",
            self.builds_finished.clone(),
        );
        r.register(
            "cdkube_build_duration_seconds",
            "Duration of finished builds",
            self.build_duration.clone(),
        );
        r.register(
            "cdkube_reconcile_duration_seconds",
            "Duration of reconciles",
            self.reconcile_duration.clone(),
        );
        r.register(
            "cdkube_reconcile_errors",
            "Reconciles that failed, by reason",
            self.reconcile_errors.clone(),
        );
        r.register(
            "cdkube_workqueue_depth",
            "Reconcile triggers waiting for the controller, plus reconciles running",
            self.workqueue_depth.clone(),
        );
        r.register(
            "cdkube_webhook_requests",
            "Webhook requests, by provider and result",
            self.webhook_requests.clone(),
        );
        r.register(
            "cdkube_artifact_bytes",
            "Bytes of source artifacts stored",
            self.artifact_bytes.clone(),
        );
        r.register("cdkube_pipelines", "Pipelines by phase", self.pipelines.clone());
        r.register(
            "cdkube_leader",
            "1 while this process leads (or runs without election)",
            self.leader.clone(),
        );
    }

    /// Runs `refresher` before each scrape (the controller sets it once its caches exist).
    pub fn set_refresher(&self, refresher: Refresher) {
        *self.refresher.lock().unwrap_or_else(|p| p.into_inner()) = Some(refresher);
    }

    /// Brings the read-at-scrape gauges up to date.
    pub fn refresh(&self) {
        if let Some(refresher) = self.refresher.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            refresher(self);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a webhook request.
    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Records a finished build.
    pub fn build_finished(&self, result: &str, took: Option<Duration>) {
        let labels = ResultLabels {
            result: result.to_owned(),
        };
        self.builds_finished.get_or_create(&labels).inc();
        if let Some(took) = took {
            self.build_duration.get_or_create(&labels).observe(took.as_secs_f64());
        }
    }
}

/// Records the time from its creation to its drop into a histogram (controller-rs's reconcile timer).
pub struct Timer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl<'a> Timer<'a> {
    /// Starts timing into `histogram`.
    pub fn start(histogram: &'a Histogram) -> Self {
        Timer {
            start: Instant::now(),
            histogram,
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
