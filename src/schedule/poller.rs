//! The probe table shared by all Pipelines.
//!
//! Pipelines subscribe with a [`RemoteSpec`] and a [`Schedule`]. Subscriptions with the same [`Key`] —
//! (repository URL, branch, credentials identity) — share one probe per due time: when the earliest of them
//! is due, the key is probed once and every subscription of the key is rescheduled from that probe. So
//! 1,000 Pipelines on 100 repositories cost 100 probes per interval. A failing key backs off exponentially
//! and recovers by itself. Only changes produce [`Event`]s; an unchanged head is silent.
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::timing::{Schedule, random_jitter};
use crate::git::{self, Engine, Head, RemoteSpec};

/// What makes two subscriptions share a probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The repository URL (never contains credentials).
    pub url: String,
    /// The branch, or `None` for the remote HEAD.
    pub branch: Option<String>,
    /// [`git::Credentials::identity`] of the credentials used.
    pub credentials: String,
}

impl Key {
    /// The key of `spec`.
    pub fn of(spec: &RemoteSpec) -> Self {
        let (url, branch, credentials) = spec.key();
        Key {
            url,
            branch,
            credentials,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.url, self.branch.as_deref().unwrap_or("HEAD"))?;
        if self.credentials != "none" {
            write!(f, " (credentials {})", self.credentials)?;
        }
        Ok(())
    }
}

/// Something a subscriber needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key's head moved (or was seen for the first time: `old` is `None`).
    HeadChanged {
        /// Which repository branch.
        key: Key,
        /// The head seen before, if any.
        old: Option<Head>,
        /// The head now.
        new: Head,
        /// Ids of the subscriptions on this key.
        subscribers: Vec<String>,
    },
    /// A probe failed; the key is retried after `retry_in`.
    ProbeFailed {
        /// Which repository branch.
        key: Key,
        /// The classified failure.
        error: git::Error,
        /// Consecutive failures so far.
        failures: u32,
        /// Backoff before the next attempt.
        retry_in: Duration,
        /// Ids of the subscriptions on this key.
        subscribers: Vec<String>,
    },
    /// A key that was failing answered again, with the same head as before its failures.
    Recovered {
        /// Which repository branch.
        key: Key,
        /// The (unchanged) head.
        head: Head,
        /// Ids of the subscriptions on this key.
        subscribers: Vec<String>,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::HeadChanged { key, old, new, .. } => {
                let old = old.as_ref().map_or("(none)".to_owned(), Head::revision);
                write!(f, "head changed for key {key}: {old} → {new}")
            }
            Event::ProbeFailed {
                key, error, retry_in, ..
            } => write!(
                f,
                "probe failed for {key}: {}: {error} (retry in {})",
                error.kind(),
                humantime::format_duration(Duration::from_millis(retry_in.as_millis() as u64))
            ),
            Event::Recovered { key, head, .. } => write!(f, "probe recovered for {key}: {head}"),
        }
    }
}

/// The poller's view of one subscription's key ([`Poller::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The last head seen, if any probe succeeded.
    pub head: Option<Head>,
    /// The last probe's error while the key is failing; `None` once a probe succeeds.
    pub error: Option<git::Error>,
    /// Consecutive failed probes.
    pub failures: u32,
    /// Whether the current head was first seen by a probe a push (webhook) asked for, after this
    /// subscription was made.
    pub pushed: bool,
}

/// How the poller behaves. Probe concurrency is the engine's (`EngineOptions::max_concurrency`).
#[derive(Debug, Clone, Default)]
pub struct PollerOptions {
    /// Backoff of failing keys.
    pub backoff: Backoff,
    /// Told of every probe's result and duration (metrics).
    pub observer: Option<ProbeObserver>,
}

/// A callback told of every probe: its key, its result and how long it took.
#[derive(Clone)]
pub struct ProbeObserver(pub Arc<ObserveProbe>);

/// What a [`ProbeObserver`] calls.
pub type ObserveProbe = dyn Fn(&Key, &git::Result<Head>, Duration) + Send + Sync;

impl fmt::Debug for ProbeObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProbeObserver")
    }
}

/// What [`Poller::push`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Keys the push matched.
    pub matched: usize,
    /// Of those, keys made due now (the others already knew the pushed commit, or are probing and will
    /// probe again only if the probe under way misses it).
    pub due: usize,
}

/// What one [`Poller::sweep`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Probes sent (one per due key).
    pub probes: usize,
    /// Keys whose head changed.
    pub changed: usize,
    /// Keys whose probe failed.
    pub failed: usize,
}

/// The shared poller. Cheap to clone; run [`Poller::run`] once in a task.
#[derive(Clone)]
pub struct Poller {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    options: PollerOptions,
    state: Mutex<State>,
    wake: Notify,
    events: mpsc::UnboundedSender<Event>,
    probes: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: HashMap<Key, KeyState>,
    subscriptions: HashMap<String, Subscription>,
}

struct KeyState {
    spec: RemoteSpec,
    head: Option<Head>,
    failures: u32,
    /// The error of the last probe, while the key is failing.
    last_error: Option<git::Error>,
    retry_at: Option<Instant>,
    in_flight: bool,
    /// Subscriptions triggered while a probe was in flight: due again as soon as it completes.
    retrigger: Vec<String>,
    subscribers: BTreeSet<String>,
    /// The next probe is one a push asked for.
    push_due: bool,
    /// Pushes that arrived while a probe was in flight, with the commit each announced (`None`: unknown).
    /// The probe's answer settles those it already shows; the rest make the key due again.
    pushes_in_flight: Vec<Option<String>>,
    /// The current head was first seen by a probe a push asked for.
    head_pushed: bool,
}

struct Subscription {
    key: Key,
    schedule: Schedule,
    next_due: Instant,
    /// The key's head when the subscription was made: a push that revealed it was not this one's.
    joined_at: Option<String>,
}

/// What the pushes that came during a probe still need ([`KeyState::pushes_missed`]).
enum Missed {
    Nothing,
    Probe,
    AfterBackoff,
}

enum Outcome {
    Unchanged,
    Changed,
    Failed,
}

impl Poller {
    /// A poller probing through `engine`, and the receiver of its events.
    pub fn new(engine: Engine, options: PollerOptions) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Shared {
            engine,
            options,
            state: Mutex::default(),
            wake: Notify::new(),
            events,
            probes: AtomicU64::new(0),
        };
        (
            Poller {
                shared: Arc::new(shared),
            },
            receiver,
        )
    }

    /// Subscribe `id` (e.g. `namespace/name` of a Pipeline) to `spec` on `schedule`, replacing an earlier
    /// subscription with the same id. Returns the key's current head if another subscription already knows
    /// it; a new key is probed right away.
    pub fn subscribe(&self, id: impl Into<String>, spec: RemoteSpec, schedule: Schedule) -> Option<Head> {
        let id = id.into();
        let key = Key::of(&spec);
        let head = {
            let mut state = self.state();
            // Subscribing again to the same key (every reconcile does) keeps the key's state and timing.
            if let Some(existing) = state.subscriptions.get_mut(&id)
                && existing.key == key
            {
                if existing.schedule != schedule {
                    // Never later than it already was: a push may have made it due now.
                    existing.next_due = existing.next_due.min(first_due(&schedule));
                    existing.schedule = schedule;
                }
                let head = state.keys.get(&key).and_then(|k| k.head.clone());
                drop(state);
                self.shared.wake.notify_one();
                return head;
            }
            state.remove_subscription(&id);
            let entry = state.keys.entry(key.clone()).or_insert_with(|| KeyState {
                spec,
                head: None,
                failures: 0,
                last_error: None,
                retry_at: None,
                in_flight: false,
                retrigger: Vec::new(),
                subscribers: BTreeSet::new(),
                push_due: false,
                pushes_in_flight: Vec::new(),
                head_pushed: false,
            });
            entry.subscribers.insert(id.clone());
            let known = entry.head.clone();
            // A newcomer on a known key joins the key's next probe (or its own first due time, if
            // sooner); a new key is due now.
            let next_due = match (&known, state.key_next_due(&key)) {
                (Some(_), Some(key_due)) => key_due.min(first_due(&schedule)),
                _ => Instant::now(),
            };
            state.subscriptions.insert(
                id,
                Subscription {
                    key,
                    schedule,
                    next_due,
                    joined_at: known.as_ref().map(|h| h.sha.clone()),
                },
            );
            known
        };
        self.shared.wake.notify_one();
        head
    }

    /// Remove subscription `id`; a key without subscriptions is forgotten.
    pub fn unsubscribe(&self, id: &str) {
        self.state().remove_subscription(id);
        self.shared.wake.notify_one();
    }

    /// Make subscription `id` due now (even if its key is backing off). Returns false for unknown ids.
    pub fn trigger(&self, id: &str) -> bool {
        let found = {
            let mut state = self.state();
            let key = state.subscriptions.get_mut(id).map(|sub| {
                sub.next_due = Instant::now();
                sub.key.clone()
            });
            if let Some(key_state) = key.and_then(|k| state.keys.get_mut(&k)) {
                key_state.retry_at = key_state.retry_at.map(|_| Instant::now());
                // A probe already under way may predate what the caller wants to see: probe again after it.
                if key_state.in_flight && !key_state.retrigger.iter().any(|r| r == id) {
                    key_state.retrigger.push(id.to_owned());
                }
                true
            } else {
                false
            }
        };
        self.shared.wake.notify_one();
        found
    }

    /// Make every subscription due now.
    pub fn trigger_all(&self) {
        {
            let mut state = self.state();
            let now = Instant::now();
            state.subscriptions.values_mut().for_each(|s| s.next_due = now);
            state
                .keys
                .values_mut()
                .for_each(|k| k.retry_at = k.retry_at.map(|_| now));
        }
        self.shared.wake.notify_one();
    }

    /// The last head seen for subscription `id`'s key.
    pub fn head(&self, id: &str) -> Option<Head> {
        let state = self.state();
        let key = &state.subscriptions.get(id)?.key;
        state.keys.get(key)?.head.clone()
    }

    /// What the poller knows of subscription `id`'s key: the last head seen and, while the key is failing,
    /// the last error. `None` for unknown ids.
    pub fn status(&self, id: &str) -> Option<KeyStatus> {
        let state = self.state();
        let sub = state.subscriptions.get(id)?;
        let key_state = state.keys.get(&sub.key)?;
        let head = key_state.head.as_ref().map(|h| h.sha.as_str());
        Some(KeyStatus {
            head: key_state.head.clone(),
            error: key_state.last_error.clone(),
            failures: key_state.failures,
            pushed: key_state.head_pushed && sub.joined_at.as_deref() != head,
        })
    }

    /// A push (webhook) announced commit `after` (if known) on the keys `matches` accepts, given each key
    /// and its last head. A key that already shows `after` is left alone; a key being probed probes again
    /// after, unless its probe sees `after`; any other key is probed at once. So a burst of pushes costs one
    /// probe per key, and no API write.
    pub fn push(&self, matches: impl Fn(&Key, Option<&Head>) -> bool, after: Option<&str>) -> Pushed {
        let mut pushed = Pushed::default();
        {
            let mut state = self.state();
            let keys: Vec<Key> = state
                .keys
                .iter()
                .filter(|(key, k)| matches(key, k.head.as_ref()))
                .map(|(key, _)| key.clone())
                .collect();
            pushed.matched = keys.len();
            for key in keys {
                let Some(key_state) = state.keys.get_mut(&key) else {
                    continue;
                };
                if key_state.in_flight {
                    // A burst repeats the same commit: keep each announcement once.
                    let after = after.map(str::to_owned);
                    if !key_state.pushes_in_flight.contains(&after) {
                        key_state.pushes_in_flight.push(after);
                    }
                    continue;
                }
                if after.is_some() && key_state.head.as_ref().map(|h| h.sha.as_str()) == after {
                    continue;
                }
                key_state.push_due = true;
                let ids: Vec<String> = key_state.subscribers.iter().cloned().collect();
                state.due_now(&key, &ids);
                pushed.due += 1;
            }
        }
        self.shared.wake.notify_one();
        pushed
    }

    /// Ids of every subscription.
    pub fn subscriptions(&self) -> Vec<String> {
        self.state().subscriptions.keys().cloned().collect()
    }

    /// Number of subscriptions and of distinct keys.
    pub fn len(&self) -> (usize, usize) {
        let state = self.state();
        (state.subscriptions.len(), state.keys.len())
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    /// Probes sent since the poller was created.
    pub fn probes_sent(&self) -> u64 {
        self.shared.probes.load(Ordering::Relaxed)
    }

    /// Probe every key that is due now, wait for all of them, and report.
    pub async fn sweep(&self) -> Sweep {
        let mut tasks = self.start_due().0;
        let mut sweep = Sweep::default();
        while let Some(done) = tasks.join_next().await {
            sweep.probes += 1;
            match done {
                Ok(Outcome::Changed) => sweep.changed += 1,
                Ok(Outcome::Failed) | Err(_) => sweep.failed += 1,
                Ok(Outcome::Unchanged) => {}
            }
        }
        sweep
    }

    /// Poll forever: sleep until the next key is due (or a subscription changes), probe what is due.
    /// Probes run concurrently, bounded by the engine; a slow probe never delays other keys.
    pub async fn run(self) {
        loop {
            let (mut started, next) = self.start_due();
            // Each probe reports through `complete`, which wakes this loop; nothing to join here.
            started.detach_all();
            let idle = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = tokio::time::sleep_until(next.unwrap_or(idle)) => {}
                _ = self.shared.wake.notified() => {}
            }
        }
    }

    /// Start a probe for every due key; returns the tasks and when the next not-yet-due key is due.
    fn start_due(&self) -> (JoinSet<Outcome>, Option<Instant>) {
        let now = Instant::now();
        let mut tasks = JoinSet::new();
        let mut state = self.state();
        let mut next: Option<Instant> = None;
        let keys: Vec<Key> = state.keys.keys().cloned().collect();
        for key in keys {
            let Some(due) = state.due_at(&key) else {
                continue;
            };
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let Some(key_state) = state.keys.get_mut(&key) else {
                continue;
            };
            key_state.in_flight = true;
            let pushed = std::mem::take(&mut key_state.push_due);
            let spec = key_state.spec.clone();
            self.shared.probes.fetch_add(1, Ordering::Relaxed);
            let poller = self.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let result = poller.shared.engine.probe(&spec).await;
                if let Some(observer) = &poller.shared.options.observer {
                    (observer.0)(&key, &result, started.elapsed());
                }
                poller.complete(&key, result, pushed)
            });
        }
        (tasks, next)
    }

    /// Record a probe result (`pushed`: a push asked for it), reschedule the key's subscriptions, emit what
    /// changed.
    fn complete(&self, key: &Key, result: git::Result<Head>, pushed: bool) -> Outcome {
        let (outcome, event) = {
            let mut state = self.state();
            let Some(key_state) = state.keys.get_mut(key) else {
                return Outcome::Unchanged; // unsubscribed while probing
            };
            key_state.in_flight = false;
            let mut retrigger = std::mem::take(&mut key_state.retrigger);
            let done = match result {
                Ok(head) => {
                    let done = key_state.succeeded(key, head, pushed);
                    state.reschedule(key);
                    done
                }
                Err(error) => key_state.failed(key, error, &self.shared.options.backoff),
            };
            if let Some(key_state) = state.keys.get_mut(key) {
                match key_state.pushes_missed() {
                    Missed::Probe => retrigger.extend(key_state.subscribers.iter().cloned()),
                    Missed::AfterBackoff | Missed::Nothing => {}
                }
            }
            state.due_now(key, &retrigger);
            done
        };
        if let Some(event) = event {
            match &event {
                Event::ProbeFailed { .. } => tracing::warn!("{event}"),
                _ => tracing::info!("{event}"),
            }
            let _ = self.shared.events.send(event);
        }
        self.shared.wake.notify_one();
        outcome
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When a subscription on `schedule` made now is first due (one schedule step from now).
fn first_due(schedule: &Schedule) -> Instant {
    due_after(schedule, Instant::now(), Utc::now(), random_jitter())
}

/// One step of `schedule` after `now` (`wall` on the wall clock); a schedule that never fires again is due
/// in a year, which also keeps absurd intervals from overflowing the clock.
fn due_after(schedule: &Schedule, now: Instant, wall: DateTime<Utc>, jitter: f64) -> Instant {
    let step = schedule
        .next_after(wall, jitter)
        .and_then(|t| (t - wall).to_std().ok())
        .unwrap_or(NEVER);
    now + step.min(NEVER)
}

/// How far away "never" is (a cron expression without future times).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

impl KeyState {
    /// Settles the pushes that arrived during the probe just completed: those announcing the head it saw
    /// are done; any other (or one announcing nothing) needs another probe, marked as pushed. After a
    /// failed probe the pushes wait for the key's next, backed-off, probe.
    fn pushes_missed(&mut self) -> Missed {
        let pushes = std::mem::take(&mut self.pushes_in_flight);
        let head = self.head.as_ref().map(|h| h.sha.as_str());
        // A scheduled probe that happened to see the pushed commit: the push made it known all the same.
        if head.is_some() && pushes.iter().any(|after| after.as_deref() == head) {
            self.head_pushed = true;
        }
        let missed = pushes.iter().any(|after| after.is_none() || after.as_deref() != head);
        let failing = self.failures > 0 && !pushes.is_empty();
        self.push_due |= missed || failing;
        match (failing, missed) {
            (true, _) => Missed::AfterBackoff,
            (false, true) => Missed::Probe,
            (false, false) => Missed::Nothing,
        }
    }

    /// Take in a successful probe (`pushed`: a push asked for it): a new head is news, and so is the same
    /// head after failures.
    fn succeeded(&mut self, key: &Key, head: Head, pushed: bool) -> (Outcome, Option<Event>) {
        let recovered = std::mem::take(&mut self.failures) > 0;
        self.last_error = None;
        self.retry_at = None;
        let subscribers = self.subscribers.iter().cloned().collect();
        match self.head.replace(head.clone()) {
            Some(old) if old == head => {
                let event = recovered.then(|| Event::Recovered {
                    key: key.clone(),
                    head,
                    subscribers,
                });
                (Outcome::Unchanged, event)
            }
            old => {
                self.head_pushed = pushed;
                let event = Event::HeadChanged {
                    key: key.clone(),
                    old,
                    new: head,
                    subscribers,
                };
                (Outcome::Changed, Some(event))
            }
        }
    }

    /// Take in a failed probe: back off one step further.
    fn failed(&mut self, key: &Key, error: git::Error, backoff: &Backoff) -> (Outcome, Option<Event>) {
        self.failures += 1;
        self.last_error = Some(error.clone());
        let retry_in = backoff.delay(self.failures);
        self.retry_at = Some(Instant::now() + retry_in);
        let event = Event::ProbeFailed {
            key: key.clone(),
            error,
            failures: self.failures,
            retry_in,
            subscribers: self.subscribers.iter().cloned().collect(),
        };
        (Outcome::Failed, Some(event))
    }
}

impl State {
    /// When `key` should next be probed; `None` while a probe is in flight.
    fn due_at(&self, key: &Key) -> Option<Instant> {
        let key_state = self.keys.get(key)?;
        if key_state.in_flight {
            return None;
        }
        match key_state.retry_at {
            Some(retry_at) if key_state.failures > 0 => Some(retry_at),
            _ => self.key_next_due(key),
        }
    }

    /// The earliest due time of `key`'s subscriptions.
    fn key_next_due(&self, key: &Key) -> Option<Instant> {
        let key_state = self.keys.get(key)?;
        key_state
            .subscribers
            .iter()
            .filter_map(|id| self.subscriptions.get(id))
            .map(|s| s.next_due)
            .min()
    }

    /// After a successful probe, every subscription of `key` is next due one schedule step from now;
    /// one jitter draw for the whole key keeps subscriptions with equal intervals together.
    fn reschedule(&mut self, key: &Key) {
        let Some(key_state) = self.keys.get(key) else {
            return;
        };
        let jitter = random_jitter();
        let (now, wall) = (Instant::now(), Utc::now());
        for id in &key_state.subscribers {
            if let Some(sub) = self.subscriptions.get_mut(id) {
                sub.next_due = due_after(&sub.schedule, now, wall, jitter);
            }
        }
    }

    /// Make subscriptions `ids` of `key` due now (and the key, if it is backing off).
    fn due_now(&mut self, key: &Key, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let now = Instant::now();
        for id in ids {
            if let Some(sub) = self.subscriptions.get_mut(id) {
                sub.next_due = now;
            }
        }
        if let Some(key_state) = self.keys.get_mut(key) {
            key_state.retry_at = key_state.retry_at.map(|_| now);
        }
    }

    fn remove_subscription(&mut self, id: &str) {
        let Some(sub) = self.subscriptions.remove(id) else {
            return;
        };
        if let Some(key_state) = self.keys.get_mut(&sub.key) {
            key_state.subscribers.remove(id);
            if key_state.subscribers.is_empty() {
                self.keys.remove(&sub.key);
            }
        }
    }
}
