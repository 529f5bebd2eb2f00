//! Run bookkeeping, as pure functions: (old status, observation) → new status, plus the Pods to create
//! and delete and the Events to publish. Nothing here talks to a server, so every rule of the run
//! protocol is unit-tested on plain values.
//!
//! The protocol (crash safety): a run is recorded in status (phase `Pending`, number = highest + 1)
//! before its Pod exists; the Pod's name is derived from (Pipeline, run, commit), so creating it again
//! after a crash meets `AlreadyExists`. Every reconcile folds what the Pods show into the open runs:
//! `Pending` without a Pod → create it; `Building` without a Pod → `Failed` (Pod deleted); a finished Pod
//! → its result. A head equal to `latestRevision` with a run recorded for it is not a new trigger, so the
//! first probe after a restart builds nothing twice.
use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::pod::{PodPhase, PodView, pod_name};
use crate::api::conditions::{self, ConditionStatus, reason};
use crate::api::{Artifact, ConcurrencyPolicy, PipelinePhase, PipelineSpec, PipelineStatus, Run, RunPhase, Trigger};
use crate::git::Head;

/// A problem reaching the repository, as the conditions show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchProblem {
    /// Condition reason (`AuthenticationFailed`, `InvalidSecret`, …).
    pub reason: String,
    /// What went wrong, for the user.
    pub message: String,
}

/// The source of a run about to start: the commit and its exported artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The commit.
    pub head: Head,
    /// Its subject line.
    pub subject: Option<String>,
    /// Its author, `Name <email>`.
    pub author: Option<String>,
    /// `sha256:<hex>` of the exported tar.gz.
    pub digest: String,
    /// Size of the tar.gz in bytes.
    pub size: u64,
}

/// Everything one reconcile observed.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Name of the Pipeline (builder Pods are named after it).
    pub pipeline: String,
    /// The time of the observation.
    pub now: Time,
    /// `metadata.generation` of the Pipeline.
    pub generation: Option<i64>,
    /// [`spec_digest`] of the current spec.
    pub spec_digest: String,
    /// The branch head on the remote, if known.
    pub head: Option<Head>,
    /// Whether `head` was first seen by a probe a push (webhook) asked for.
    pub pushed: bool,
    /// Why the repository could not be probed or fetched, if it could not.
    pub fetch_error: Option<FetchProblem>,
    /// The `requested-at` annotation, when it differs from `status.lastHandledTriggerAt`.
    pub manual: Option<String>,
    /// The Pipeline's builder Pods.
    pub pods: Vec<PodView>,
    /// Pods the API server refused to create, by name, with its message.
    pub create_failures: HashMap<String, String>,
    /// The source prepared for a run at `head`, if the reconcile asked for one.
    pub source: Option<Source>,
}

/// Severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// An Event to publish on the Pipeline once the status is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub severity: Severity,
    /// The Event reason (`BuildStarted`, …).
    pub reason: &'static str,
    /// The Event note; carries the run, short commit and version.
    pub message: String,
    /// What was done (`Build run 3`, `AuthenticationFailed`). Events with the same reason and action are
    /// counted as one series, so each run's Events stay separate and a repeated problem is counted.
    pub action: String,
    /// The builder Pod the Event is about (the Event's `related` object), if any.
    pub pod: Option<String>,
}

/// What a reconcile should do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write (only if it differs from the stored one).
    pub status: PipelineStatus,
    /// Runs whose Pod must be created (after the status write).
    pub create: Vec<Run>,
    /// Pods to delete: cancelled runs, Pods stuck Pending past the deadline, Pods beyond `historyLimit`.
    pub delete: Vec<String>,
    /// Events to publish (after the status write).
    pub notes: Vec<Note>,
    /// A run should start at this head but its source is not prepared yet.
    pub wants_source: Option<Head>,
    /// When to look again even if nothing happens (a Pending Pod's deadline).
    pub requeue_after: Option<Duration>,
}

/// Digest of the build-relevant part of `spec`: image, commands, arguments, env, resources, service
/// account, target name and version. A new `interval` alone changes nothing here.
pub fn spec_digest(spec: &PipelineSpec) -> String {
    let relevant = serde_json::json!([
        spec.build_image,
        spec.build_commands,
        spec.build_arguments,
        spec.env,
        spec.resources,
        spec.service_account_name,
        spec.target_name,
        spec.target_version,
    ]);
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(relevant.to_string().as_bytes()))
    )
}

/// Whether `head` is a new trigger against `status`: a manual request, a head with no run recorded for it
/// (or that differs from `latestRevision`; `webhook` when a push made it known, else `poll`), or a
/// build-relevant spec change since the newest run.
pub fn trigger(status: &PipelineStatus, head: &Head, spec_digest: &str, obs: &Observation) -> Option<Trigger> {
    if obs.manual.is_some() {
        return Some(Trigger::Manual);
    }
    let seen = status.latest_revision.as_deref() == Some(head.revision().as_str());
    if !seen || !status.history.iter().any(|r| r.commit == head.sha) {
        return Some(if obs.pushed { Trigger::Webhook } else { Trigger::Poll });
    }
    let newest = status.history.first()?;
    let changed = newest.spec_digest.as_deref().is_some_and(|d| d != spec_digest);
    changed.then_some(Trigger::SpecChange)
}

/// The status after an invalid spec: Stalled, not Ready, phase Error, and one Warning Event when the
/// message is new.
pub fn invalid(
    old: &PipelineStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> (PipelineStatus, Vec<Note>) {
    let mut status = old.clone();
    status.observed_generation = generation;
    status.phase = Some(PipelinePhase::Error);
    let conds = &mut status.conditions;
    let is_new = conditions::set_condition(
        conds,
        conditions::STALLED,
        ConditionStatus::True,
        reason::INVALID_SPEC,
        message,
        generation,
        now,
    );
    conditions::set_condition(
        conds,
        conditions::READY,
        ConditionStatus::False,
        reason::INVALID_SPEC,
        message,
        generation,
        now,
    );
    conditions::remove_condition(conds, conditions::RECONCILING);
    let notes = is_new
        .then(|| Note {
            severity: Severity::Warning,
            reason: reason::INVALID_SPEC,
            message: message.to_owned(),
            action: reason::INVALID_SPEC.to_owned(),
            pod: None,
        })
        .into_iter()
        .collect();
    (status, notes)
}

/// Plans one reconcile of a valid Pipeline.
pub fn plan(spec: &PipelineSpec, old: &PipelineStatus, obs: &Observation) -> Plan {
    let mut status = old.clone();
    status.observed_generation = obs.generation;
    conditions::remove_condition(&mut status.conditions, conditions::STALLED);
    let mut plan = Plan {
        status,
        create: Vec::new(),
        delete: Vec::new(),
        notes: Vec::new(),
        wants_source: None,
        requeue_after: None,
    };
    plan.observe_pods(spec, obs);
    if !spec.suspended()
        && let Some(head) = &obs.head
    {
        plan.take_head(spec, head, obs);
    }
    plan.trim_history(spec.history_limit(), obs);
    plan.summarise(spec, old, obs);
    plan
}

/// The trigger as the API spells it (`poll`, `spec-change`, …).
fn trigger_name(trigger: Trigger) -> String {
    serde_json::to_value(trigger)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn is_open(run: &Run) -> bool {
    matches!(run.phase, RunPhase::Pending | RunPhase::Building)
}

fn describe(run: &Run) -> String {
    format!(
        "run {} (commit {}, version {})",
        run.run, run.short_commit, run.target_version
    )
}

impl Plan {
    /// Folds what the Pods show into the open runs.
    fn observe_pods(&mut self, spec: &PipelineSpec, obs: &Observation) {
        let timeout = spec.timeout();
        for i in 0..self.status.history.len() {
            let run = &self.status.history[i];
            let name = run.pod.clone().unwrap_or_default();
            let pod = obs.pods.iter().find(|p| p.name == name);
            match (is_open(run), pod) {
                (true, None) => self.pod_missing(i, obs),
                (true, Some(pod)) => self.pod_seen(i, pod, timeout, &obs.now),
                // A closed run (cancelled, timed out) whose Pod still runs: its delete was lost to a
                // crash or an API error, so ask again.
                (false, Some(pod)) if pod.is_live() => self.delete.push(pod.name.clone()),
                (false, _) => {}
            }
        }
    }

    fn pod_missing(&mut self, i: usize, obs: &Observation) {
        let run = &self.status.history[i];
        let refused = run.pod.as_ref().and_then(|n| obs.create_failures.get(n));
        // `startTime` is recorded when the Pod is first seen: a run without it never had its Pod created
        // (the operator stopped between the status write and the create), one with it lost its Pod.
        let never_seen = run.phase == RunPhase::Pending && run.start_time.is_none();
        match (never_seen, refused) {
            (true, Some(message)) => {
                let message = format!("the builder Pod was refused: {message}");
                self.finish(i, RunPhase::Failed, reason::POD_CREATE_FAILED, message, &obs.now);
            }
            (true, None) => self.create.push(run.clone()),
            (false, _) => self.finish(i, RunPhase::Failed, reason::POD_DELETED, "Pod deleted".into(), &obs.now),
        }
    }

    fn pod_seen(&mut self, i: usize, pod: &PodView, timeout: Duration, now: &Time) {
        let run = &mut self.status.history[i];
        if run.start_time.is_none() {
            run.start_time = pod.created.clone();
        }
        match pod.phase {
            PodPhase::Pending => self.pending(i, pod, timeout, now),
            PodPhase::Running => run.phase = RunPhase::Building,
            PodPhase::Succeeded => {
                let at = pod.finished.clone().unwrap_or_else(|| now.clone());
                self.finish(
                    i,
                    RunPhase::Succeeded,
                    reason::SUCCEEDED,
                    "the build succeeded".into(),
                    &at,
                );
            }
            PodPhase::Failed => {
                let at = pod.finished.clone().unwrap_or_else(|| now.clone());
                let why = pod.reason.clone().unwrap_or_else(|| reason::BUILD_FAILED.into());
                let message = pod.message.clone().unwrap_or_else(|| "the builder Pod failed".into());
                self.finish_with(i, RunPhase::Failed, why, message, &at);
            }
        }
    }

    /// A Pod still Pending past `timeout` (ImagePullBackOff, unschedulable) is deleted and its run failed.
    fn pending(&mut self, i: usize, pod: &PodView, timeout: Duration, now: &Time) {
        let Some(created) = &pod.created else {
            return;
        };
        let age = now.0.duration_since(created.0);
        let age = Duration::try_from(age).unwrap_or_default();
        if age < timeout {
            let left = timeout - age;
            self.requeue_after = Some(self.requeue_after.map_or(left, |r| r.min(left)));
            return;
        }
        let mut message = format!(
            "DeadlineExceeded after {}: the builder Pod never started",
            humantime::format_duration(timeout)
        );
        if let Some(why) = &pod.reason {
            message.push_str(&format!(" ({why}"));
            if let Some(detail) = &pod.message {
                message.push_str(&format!(": {detail}"));
            }
            message.push(')');
        }
        self.delete.push(pod.name.clone());
        self.finish(i, RunPhase::Failed, reason::DEADLINE_EXCEEDED, message, now);
    }

    fn finish(&mut self, i: usize, phase: RunPhase, why: &str, message: String, at: &Time) {
        self.finish_with(i, phase, why.to_owned(), message, at);
    }

    /// Closes run `i` and notes the Event; a success also becomes the Pipeline's built commit.
    fn finish_with(&mut self, i: usize, phase: RunPhase, why: String, message: String, at: &Time) {
        let run = &mut self.status.history[i];
        run.phase = phase;
        run.reason = Some(why);
        run.message = Some(message.clone());
        run.completion_time = Some(at.clone());
        let run = run.clone();
        let (severity, event) = match phase {
            RunPhase::Succeeded => (Severity::Normal, reason::BUILD_SUCCEEDED),
            RunPhase::Cancelled => (Severity::Normal, reason::BUILD_CANCELLED),
            RunPhase::Skipped => (Severity::Normal, reason::BUILD_SKIPPED),
            _ => (Severity::Warning, reason::BUILD_FAILED),
        };
        if phase == RunPhase::Succeeded && self.is_newest_success(&run) {
            self.status.built_commit = Some(run.commit.clone());
            self.status.built_short_commit = Some(run.short_commit.clone());
            self.status.target_version = Some(run.target_version.clone());
        }
        let verb = match phase {
            RunPhase::Succeeded => "succeeded".to_owned(),
            RunPhase::Cancelled | RunPhase::Skipped => {
                format!("{}: {message}", event.trim_start_matches("Build").to_lowercase())
            }
            _ => format!("failed: {message}"),
        };
        self.notes.push(Note {
            severity,
            reason: event,
            message: format!("{} {verb}", describe(&run)),
            action: format!("{} run {}", event.trim_start_matches("Build"), run.run),
            pod: run.pod.clone(),
        });
    }

    /// Whether no run newer than `run` has succeeded (with `Allow`, runs may finish out of order).
    fn is_newest_success(&self, run: &Run) -> bool {
        !self
            .status
            .history
            .iter()
            .any(|r| r.run > run.run && r.phase == RunPhase::Succeeded)
    }

    /// Takes in the remote head: records it, and starts (or, under Forbid, defers) a run if it is a trigger.
    fn take_head(&mut self, spec: &PipelineSpec, head: &Head, obs: &Observation) {
        let Some(trigger) = trigger(&self.status, head, &obs.spec_digest, obs) else {
            return;
        };
        let previous = self.status.latest_revision.replace(head.revision());
        let policy = spec.concurrency_policy();
        if policy == ConcurrencyPolicy::Forbid {
            self.skip_superseded(previous.as_deref(), head, spec, obs);
            if self.status.history.iter().any(is_open) {
                return; // the newest head waits for the running build
            }
        }
        let Some(source) = obs.source.as_ref().filter(|s| s.head == *head) else {
            self.wants_source = Some(head.clone());
            return;
        };
        if policy == ConcurrencyPolicy::Replace {
            self.cancel_open(head, &obs.now);
        }
        self.start(spec, source, trigger, obs);
    }

    /// Under Forbid, a head that was waiting (recorded as `latestRevision`, never built) and is now
    /// superseded is recorded as a Skipped run.
    fn skip_superseded(&mut self, previous: Option<&str>, head: &Head, spec: &PipelineSpec, obs: &Observation) {
        let Some((branch, sha)) = previous.and_then(|p| p.split_once("@sha1:")) else {
            return;
        };
        if sha == head.sha || self.status.history.iter().any(|r| r.commit == sha) {
            return;
        }
        let waiting = Head {
            branch: branch.to_owned(),
            sha: sha.to_owned(),
        };
        let mut run = self.new_run(spec, &waiting, Trigger::Poll, obs);
        run.pod = None;
        self.status.history.insert(0, run);
        let message = format!("superseded by commit {} before it started", head.short_sha());
        self.finish(0, RunPhase::Skipped, reason::SUPERSEDED, message, &obs.now);
    }

    /// Replace: every open run is cancelled and its Pod deleted.
    fn cancel_open(&mut self, head: &Head, now: &Time) {
        for i in 0..self.status.history.len() {
            if !is_open(&self.status.history[i]) {
                continue;
            }
            if let Some(pod) = self.status.history[i].pod.clone() {
                self.delete.push(pod);
            }
            self.create.retain(|r| r.run != self.status.history[i].run);
            let message = format!("replaced by commit {}", head.short_sha());
            self.finish(i, RunPhase::Cancelled, reason::REPLACED, message, now);
        }
    }

    fn new_run(&self, spec: &PipelineSpec, head: &Head, trigger: Trigger, obs: &Observation) -> Run {
        let number = self.status.history.iter().map(|r| r.run).max().unwrap_or(0) + 1;
        Run {
            run: number,
            commit: head.sha.clone(),
            short_commit: head.short_sha().to_owned(),
            revision: head.revision(),
            subject: None,
            author: None,
            target_version: spec.target_version.clone(),
            pod: None,
            phase: RunPhase::Pending,
            reason: None,
            message: None,
            start_time: None,
            completion_time: None,
            trigger,
            spec_digest: Some(obs.spec_digest.clone()),
            source_digest: None,
        }
    }

    /// Records a new Pending run (before its Pod exists) and asks for its Pod.
    fn start(&mut self, spec: &PipelineSpec, source: &Source, trigger: Trigger, obs: &Observation) {
        let mut run = self.new_run(spec, &source.head, trigger, obs);
        run.subject = source.subject.clone();
        run.author = source.author.clone();
        run.source_digest = Some(source.digest.clone());
        run.pod = Some(pod_name(&obs.pipeline, run.run, &run.short_commit));
        if trigger == Trigger::Manual {
            self.status.last_handled_trigger_at = obs.manual.clone();
        }
        self.set_artifact(source, &obs.now);
        self.notes.push(Note {
            severity: Severity::Normal,
            reason: reason::BUILD_STARTED,
            message: format!(
                "{} started in Pod {} (trigger: {})",
                describe(&run),
                run.pod.as_deref().unwrap_or(""),
                trigger_name(trigger)
            ),
            action: format!("Start run {}", run.run),
            pod: run.pod.clone(),
        });
        self.create.push(run.clone());
        self.status.history.insert(0, run);
    }

    fn set_artifact(&mut self, source: &Source, now: &Time) {
        let revision = source.head.revision();
        let same = self
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == revision && a.digest == source.digest);
        if !same {
            self.status.artifact = Some(Artifact {
                revision,
                digest: source.digest.clone(),
                size: i64::try_from(source.size).unwrap_or(i64::MAX),
                last_update_time: now.clone(),
            });
        }
    }

    /// Keeps the newest `limit` runs (and every open one); finished Pods of dropped runs are deleted.
    fn trim_history(&mut self, limit: usize, obs: &Observation) {
        self.status.history.sort_by_key(|r| std::cmp::Reverse(r.run));
        let mut kept = 0;
        self.status.history.retain(|r| {
            kept += 1;
            kept <= limit || is_open(r)
        });
        // Only Pods older than every retained run: a newer one may belong to a run this (cached) status
        // does not show yet.
        let oldest = self.status.history.iter().map(|r| r.run).min().unwrap_or(i64::MAX);
        for pod in &obs.pods {
            let finished = matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed);
            if pod.run < oldest && finished && !pod.deleting && !self.delete.contains(&pod.name) {
                self.delete.push(pod.name.clone());
            }
        }
    }

    /// Sets `currentRun`, `phase` and the conditions from the history and the observation.
    fn summarise(&mut self, spec: &PipelineSpec, old: &PipelineStatus, obs: &Observation) {
        let open = self.status.history.iter().filter(|r| is_open(r)).map(|r| r.run).max();
        self.status.current_run = open;
        let last = self
            .status
            .history
            .iter()
            .find(|r| matches!(r.phase, RunPhase::Succeeded | RunPhase::Failed))
            .cloned();
        self.status.phase = Some(match (spec.suspended(), open, &obs.fetch_error, &last) {
            (true, _, _, _) => PipelinePhase::Suspended,
            (_, Some(_), _, _) => PipelinePhase::Building,
            (_, None, Some(_), _) => PipelinePhase::Error,
            (_, None, None, Some(run)) if run.phase == RunPhase::Succeeded => PipelinePhase::Succeeded,
            (_, None, None, Some(_)) => PipelinePhase::Failed,
            (_, None, None, None) => PipelinePhase::Pending,
        });
        self.set_conditions(spec, old, obs, open, last.as_ref());
    }

    fn set_conditions(
        &mut self,
        spec: &PipelineSpec,
        old: &PipelineStatus,
        obs: &Observation,
        open: Option<i64>,
        last: Option<&Run>,
    ) {
        let (generation, now) = (obs.generation, &obs.now);
        let failed = last.filter(|r| r.phase == RunPhase::Failed).map(|run| {
            let why = run.reason.clone().unwrap_or_else(|| reason::BUILD_FAILED.into());
            (
                why,
                format!(
                    "{} failed: {}",
                    describe(run),
                    run.message.as_deref().unwrap_or("unknown")
                ),
            )
        });
        let fetch = obs.fetch_error.as_ref().map(|p| (p.reason.clone(), p.message.clone()));
        let progress = match open {
            Some(n) => Some(format!("building run {n}")),
            None if obs.head.is_none() && obs.fetch_error.is_none() && !spec.suspended() => {
                Some(format!("waiting for the first poll of {}", spec.repo))
            }
            None => None,
        };
        let reconciling = progress.clone().map(|m| (reason::PROGRESSING.to_owned(), m));
        let conds = &mut self.status.conditions;
        for (type_, value) in [
            (conditions::FETCH_FAILED, fetch),
            (conditions::BUILD_FAILED, failed),
            (conditions::RECONCILING, reconciling),
        ] {
            match value {
                Some((why, message)) => {
                    conditions::set_condition(conds, type_, ConditionStatus::True, &why, &message, generation, now);
                }
                None => {
                    conditions::remove_condition(conds, type_);
                }
            }
        }
        if !spec.suspended() {
            let (status, why, message) = ready(obs.fetch_error.as_ref(), progress.as_deref(), last);
            conditions::set_condition(conds, conditions::READY, status, &why, &message, generation, now);
        }
        self.note_fetch_problem(old, obs);
    }

    /// A Warning Event when the repository problem is new or changed (not on every retry).
    fn note_fetch_problem(&mut self, old: &PipelineStatus, obs: &Observation) {
        let Some(problem) = &obs.fetch_error else {
            return;
        };
        let before = conditions::find_condition(&old.conditions, conditions::FETCH_FAILED);
        if before.is_some_and(|c| c.status == "True" && c.message == problem.message) {
            return;
        }
        self.notes.push(Note {
            severity: Severity::Warning,
            reason: reason::FETCH_FAILED,
            message: format!("{}: {}", problem.reason, problem.message),
            action: problem.reason.clone(),
            pod: None,
        });
    }
}

/// Ready summarises the others: False for a repository problem or a failed newest build, Unknown while
/// building or waiting, True once the newest finished build succeeded.
fn ready(
    fetch: Option<&FetchProblem>,
    progress: Option<&str>,
    last: Option<&Run>,
) -> (ConditionStatus, String, String) {
    if let Some(p) = fetch {
        return (ConditionStatus::False, p.reason.clone(), p.message.clone());
    }
    if let Some(message) = progress {
        return (ConditionStatus::Unknown, reason::PROGRESSING.into(), message.into());
    }
    match last {
        Some(run) if run.phase == RunPhase::Succeeded => (
            ConditionStatus::True,
            reason::SUCCEEDED.into(),
            format!(
                "built commit {} (version {}) in run {}",
                run.short_commit, run.target_version, run.run
            ),
        ),
        Some(run) => (
            ConditionStatus::False,
            run.reason.clone().unwrap_or_else(|| reason::BUILD_FAILED.into()),
            format!(
                "{} failed: {}",
                describe(run),
                run.message.as_deref().unwrap_or("unknown")
            ),
        ),
        None => (
            ConditionStatus::Unknown,
            reason::PROGRESSING.into(),
            "no build has finished yet".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find_condition;

    const SHA1: &str = "1111111111111111111111111111111111111111";
    const SHA2: &str = "2222222222222222222222222222222222222222";
    const SHA3: &str = "3333333333333333333333333333333333333333";

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn spec(policy: ConcurrencyPolicy) -> PipelineSpec {
        PipelineSpec {
            repo: "http://127.0.0.1/repo.git".into(),
            build_image: "busybox".into(),
            build_commands: vec!["echo".into()],
            target_name: "app".into(),
            target_version: "0.1".into(),
            timeout: Some("30m".into()),
            concurrency_policy: Some(policy),
            ..Default::default()
        }
    }

    fn head(sha: &str) -> Head {
        Head {
            branch: "main".into(),
            sha: sha.into(),
        }
    }

    fn source(sha: &str) -> Source {
        Source {
            head: head(sha),
            subject: Some(format!("commit {}", &sha[..3])),
            author: Some("Ada <ada@example.com>".into()),
            digest: format!("sha256:{}", sha.repeat(2).get(..64).unwrap()),
            size: 100,
        }
    }

    fn obs(spec: &PipelineSpec, head_sha: Option<&str>, now: i64) -> Observation {
        Observation {
            pipeline: "app".into(),
            now: at(now),
            generation: Some(1),
            spec_digest: spec_digest(spec),
            head: head_sha.map(head),
            pushed: false,
            fetch_error: None,
            manual: None,
            pods: Vec::new(),
            create_failures: HashMap::new(),
            source: None,
        }
    }

    fn pod(run: &Run, phase: PodPhase, created: i64) -> PodView {
        PodView {
            name: run.pod.clone().unwrap(),
            run: run.run,
            phase,
            created: Some(at(created)),
            finished: None,
            reason: (phase == PodPhase::Failed).then(|| "BuildFailed".into()),
            message: (phase == PodPhase::Failed).then(|| "exit code 3 in container build".into()),
            deleting: false,
        }
    }

    /// Runs the two-step reconcile (plan, then plan again with the source it asked for).
    fn step(spec: &PipelineSpec, old: &PipelineStatus, mut o: Observation) -> Plan {
        let first = plan(spec, old, &o);
        match &first.wants_source {
            Some(h) => {
                o.source = Some(source(&h.sha));
                plan(spec, old, &o)
            }
            None => first,
        }
    }

    fn phases(status: &PipelineStatus) -> Vec<(i64, &str, RunPhase)> {
        status
            .history
            .iter()
            .map(|r| (r.run, &r.commit[..3], r.phase))
            .collect()
    }

    fn cond<'a>(status: &'a PipelineStatus, type_: &str) -> Option<(&'a str, &'a str)> {
        find_condition(&status.conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    /// A status with run 1 of SHA1 recorded and its Pod running.
    fn building(policy: ConcurrencyPolicy) -> (PipelineSpec, PipelineStatus) {
        let spec = spec(policy);
        let started = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0));
        let mut o = obs(&spec, Some(SHA1), 1);
        o.pods = vec![pod(&started.status.history[0], PodPhase::Running, 1)];
        (spec.clone(), plan(&spec, &started.status, &o).status)
    }

    #[test]
    fn a_new_head_records_a_pending_run_before_its_pod() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let first = plan(&spec, &PipelineStatus::default(), &obs(&spec, Some(SHA1), 0));
        assert_eq!(first.wants_source, Some(head(SHA1)));
        assert!(first.create.is_empty(), "no Pod before the source is ready");

        let p = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0));
        assert_eq!(phases(&p.status), vec![(1, "111", RunPhase::Pending)]);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].pod.as_deref(), Some("app-1-1111111"));
        assert_eq!(p.status.current_run, Some(1));
        assert_eq!(p.status.phase, Some(PipelinePhase::Building));
        assert_eq!(
            p.status.latest_revision.as_deref(),
            Some(format!("main@sha1:{SHA1}").as_str())
        );
        assert_eq!(p.status.history[0].trigger, Trigger::Poll);
        assert_eq!(p.status.artifact.as_ref().unwrap().digest, source(SHA1).digest);
        assert_eq!(p.notes[0].reason, reason::BUILD_STARTED);
        assert!(p.notes[0].message.contains("1111111"), "{}", p.notes[0].message);
        assert_eq!(
            cond(&p.status, conditions::READY),
            Some(("Unknown", reason::PROGRESSING))
        );
    }

    #[test]
    fn pod_results_land_in_their_run() {
        struct Case {
            name: &'static str,
            pod: Option<PodPhase>,
            run_phase: RunPhase,
            run_reason: &'static str,
            pipeline_phase: PipelinePhase,
            ready: &'static str,
            built: Option<&'static str>,
            event: &'static str,
        }
        let cases = [
            Case {
                name: "success",
                pod: Some(PodPhase::Succeeded),
                run_phase: RunPhase::Succeeded,
                run_reason: reason::SUCCEEDED,
                pipeline_phase: PipelinePhase::Succeeded,
                ready: "True",
                built: Some("1111111"),
                event: reason::BUILD_SUCCEEDED,
            },
            Case {
                name: "exit 3",
                pod: Some(PodPhase::Failed),
                run_phase: RunPhase::Failed,
                run_reason: reason::BUILD_FAILED,
                pipeline_phase: PipelinePhase::Failed,
                ready: "False",
                built: None,
                event: reason::BUILD_FAILED,
            },
            Case {
                name: "Pod deleted by hand",
                pod: None,
                run_phase: RunPhase::Failed,
                run_reason: reason::POD_DELETED,
                pipeline_phase: PipelinePhase::Failed,
                ready: "False",
                built: None,
                event: reason::BUILD_FAILED,
            },
        ];
        for case in cases {
            let (spec, status) = building(ConcurrencyPolicy::Forbid);
            assert_eq!(status.history[0].phase, RunPhase::Building, "{}", case.name);
            let mut o = obs(&spec, Some(SHA1), 5);
            o.pods = case.pod.map(|ph| pod(&status.history[0], ph, 1)).into_iter().collect();
            let p = plan(&spec, &status, &o);
            let run = &p.status.history[0];
            assert_eq!(run.phase, case.run_phase, "{}", case.name);
            assert_eq!(run.reason.as_deref(), Some(case.run_reason), "{}", case.name);
            assert_eq!(p.status.phase, Some(case.pipeline_phase), "{}", case.name);
            assert_eq!(
                cond(&p.status, conditions::READY).unwrap().0,
                case.ready,
                "{}",
                case.name
            );
            assert_eq!(p.status.built_short_commit.as_deref(), case.built, "{}", case.name);
            assert_eq!(p.status.current_run, None, "{}", case.name);
            assert_eq!(
                p.notes.iter().map(|n| n.reason).collect::<Vec<_>>(),
                vec![case.event],
                "{}",
                case.name
            );
            assert!(p.create.is_empty(), "{}", case.name);
        }
    }

    #[test]
    fn after_a_restart_nothing_already_recorded_is_built_again() {
        let (spec, status) = building(ConcurrencyPolicy::Forbid);
        let mut o = obs(&spec, Some(SHA1), 9);
        o.pods = vec![pod(&status.history[0], PodPhase::Running, 1)];
        let p = plan(&spec, &status, &o);
        assert_eq!(p.status, status, "a no-op reconcile changes nothing, so writes nothing");
        assert!(p.create.is_empty() && p.delete.is_empty() && p.notes.is_empty());
        assert_eq!(p.wants_source, None);
    }

    #[test]
    fn a_run_recorded_without_its_pod_gets_the_pod() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let recorded = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0)).status;
        // The operator died between the status write and the Pod create.
        let p = plan(&spec, &recorded, &obs(&spec, Some(SHA1), 3));
        assert_eq!(p.create.iter().map(|r| r.run).collect::<Vec<_>>(), vec![1]);
        assert_eq!(p.status, recorded);
        assert_eq!(p.wants_source, None, "the same head is not a second trigger");
    }

    #[test]
    fn a_pod_seen_then_deleted_is_not_created_again() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let recorded = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0)).status;
        let mut o = obs(&spec, Some(SHA1), 1);
        o.pods = vec![pod(&recorded.history[0], PodPhase::Pending, 1)];
        let seen = plan(&spec, &recorded, &o).status;
        assert_eq!(seen.history[0].phase, RunPhase::Pending);
        assert!(seen.history[0].start_time.is_some());
        let gone = plan(&spec, &seen, &obs(&spec, Some(SHA1), 2));
        assert!(gone.create.is_empty(), "a user's delete is not undone");
        assert_eq!(gone.status.history[0].reason.as_deref(), Some(reason::POD_DELETED));
    }

    #[test]
    fn a_closed_run_whose_pod_still_runs_gets_it_deleted() {
        let (spec, status) = building(ConcurrencyPolicy::Replace);
        let mut o = obs(&spec, Some(SHA2), 5);
        o.pods = vec![pod(&status.history[0], PodPhase::Running, 1)];
        let replaced = step(&spec, &status, o.clone());
        // The delete was lost (a crash after the status write): the next reconcile asks again.
        let again = plan(&spec, &replaced.status, &o);
        assert_eq!(again.delete, vec!["app-1-1111111".to_owned()]);
        assert_eq!(again.status, replaced.status);
    }

    #[test]
    fn a_refused_pod_fails_its_run_with_the_servers_message() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let recorded = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0)).status;
        let mut o = obs(&spec, Some(SHA1), 3);
        o.create_failures.insert(
            "app-1-1111111".into(),
            "spec.containers[0].image: Required value".into(),
        );
        let p = plan(&spec, &recorded, &o);
        assert_eq!(p.status.history[0].phase, RunPhase::Failed);
        assert_eq!(p.status.history[0].reason.as_deref(), Some(reason::POD_CREATE_FAILED));
        assert!(
            p.status.history[0]
                .message
                .as_deref()
                .unwrap()
                .contains("Required value")
        );
    }

    #[test]
    fn forbid_waits_skips_the_middle_and_builds_the_newest() {
        let (spec, status) = building(ConcurrencyPolicy::Forbid);
        let running = status.history[0].clone();
        let mut o = obs(&spec, Some(SHA2), 5);
        o.pods = vec![pod(&running, PodPhase::Running, 1)];
        let waiting = step(&spec, &status, o.clone());
        assert_eq!(phases(&waiting.status), vec![(1, "111", RunPhase::Building)]);
        assert!(waiting.create.is_empty());
        assert_eq!(
            waiting.status.latest_revision.as_deref(),
            Some(head(SHA2).revision().as_str())
        );

        o.head = Some(head(SHA3));
        let skipped = step(&spec, &waiting.status, o.clone());
        assert_eq!(
            phases(&skipped.status),
            vec![(2, "222", RunPhase::Skipped), (1, "111", RunPhase::Building)]
        );
        assert_eq!(skipped.notes[0].reason, reason::BUILD_SKIPPED);

        o.pods = vec![pod(&running, PodPhase::Succeeded, 1)];
        let next = step(&spec, &skipped.status, o);
        assert_eq!(
            phases(&next.status),
            vec![
                (3, "333", RunPhase::Pending),
                (2, "222", RunPhase::Skipped),
                (1, "111", RunPhase::Succeeded)
            ]
        );
        assert_eq!(next.create.iter().map(|r| r.run).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn replace_cancels_the_running_build() {
        let (spec, status) = building(ConcurrencyPolicy::Replace);
        let mut o = obs(&spec, Some(SHA2), 5);
        o.pods = vec![pod(&status.history[0], PodPhase::Running, 1)];
        let p = step(&spec, &status, o);
        assert_eq!(
            phases(&p.status),
            vec![(2, "222", RunPhase::Pending), (1, "111", RunPhase::Cancelled)]
        );
        assert_eq!(p.delete, vec!["app-1-1111111".to_owned()]);
        assert_eq!(p.create.iter().map(|r| r.run).collect::<Vec<_>>(), vec![2]);
        let reasons: Vec<_> = p.notes.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, vec![reason::BUILD_CANCELLED, reason::BUILD_STARTED]);
    }

    #[test]
    fn allow_builds_in_parallel() {
        let (spec, status) = building(ConcurrencyPolicy::Allow);
        let mut o = obs(&spec, Some(SHA2), 5);
        o.pods = vec![pod(&status.history[0], PodPhase::Running, 1)];
        let p = step(&spec, &status, o);
        assert_eq!(
            phases(&p.status),
            vec![(2, "222", RunPhase::Pending), (1, "111", RunPhase::Building)]
        );
        assert!(p.delete.is_empty());
        assert_eq!(p.status.current_run, Some(2));
    }

    #[test]
    fn triggers() {
        struct Case {
            name: &'static str,
            change: fn(&mut PipelineSpec, &mut Observation),
            expected: Option<Trigger>,
        }
        let cases = [
            Case {
                name: "nothing new",
                change: |_, _| {},
                expected: None,
            },
            Case {
                name: "interval alone",
                change: |s, _| s.interval = Some("5m".into()),
                expected: None,
            },
            Case {
                name: "new target version",
                change: |s, _| s.target_version = "0.2".into(),
                expected: Some(Trigger::SpecChange),
            },
            Case {
                name: "requested-at",
                change: |_, o| o.manual = Some("now".into()),
                expected: Some(Trigger::Manual),
            },
            Case {
                name: "new head",
                change: |_, o| o.head = Some(head(SHA2)),
                expected: Some(Trigger::Poll),
            },
            Case {
                name: "new head a push made known",
                change: |_, o| {
                    o.head = Some(head(SHA2));
                    o.pushed = true;
                },
                expected: Some(Trigger::Webhook),
            },
            Case {
                name: "a push of the head already built",
                change: |_, o| o.pushed = true,
                expected: None,
            },
        ];
        for case in cases {
            let (mut spec, mut status) = building(ConcurrencyPolicy::Allow);
            status.history[0].phase = RunPhase::Succeeded;
            let mut o = obs(&spec, Some(SHA1), 9);
            (case.change)(&mut spec, &mut o);
            o.spec_digest = spec_digest(&spec);
            let p = step(&spec, &status, o);
            let started = (p.status.history.len() > 1).then(|| p.status.history[0].trigger);
            assert_eq!(started, case.expected, "{}", case.name);
            if case.expected == Some(Trigger::Manual) {
                assert_eq!(p.status.last_handled_trigger_at.as_deref(), Some("now"));
            }
        }
    }

    #[test]
    fn history_is_trimmed_and_old_pods_deleted() {
        let mut spec = spec(ConcurrencyPolicy::Allow);
        spec.history_limit = Some(2);
        let mut status = PipelineStatus::default();
        let mut pods = Vec::new();
        for (i, sha) in [SHA1, SHA2, SHA3].iter().enumerate() {
            let p = step(&spec, &status, obs(&spec, Some(sha), i as i64));
            status = p.status;
            status.history[0].phase = RunPhase::Succeeded;
            pods.push(pod(&status.history[0], PodPhase::Succeeded, i as i64));
        }
        let mut o = obs(&spec, Some(SHA3), 10);
        o.pods = pods;
        let p = plan(&spec, &status, &o);
        assert_eq!(p.status.history.iter().map(|r| r.run).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(p.delete, vec!["app-1-1111111".to_owned()]);
    }

    #[test]
    fn a_pod_stuck_pending_past_the_timeout_is_deleted() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let recorded = step(&spec, &PipelineStatus::default(), obs(&spec, Some(SHA1), 0)).status;
        let mut stuck = pod(&recorded.history[0], PodPhase::Pending, 0);
        stuck.reason = Some("ImagePullBackOff".into());
        let mut o = obs(&spec, Some(SHA1), 60);
        o.pods = vec![stuck.clone()];
        let early = plan(&spec, &recorded, &o);
        assert_eq!(early.requeue_after, Some(Duration::from_secs(30 * 60 - 60)));
        assert!(early.delete.is_empty());

        o.now = at(30 * 60 + 1);
        let late = plan(&spec, &recorded, &o);
        assert_eq!(late.delete, vec![stuck.name]);
        let run = &late.status.history[0];
        assert_eq!(run.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
        assert!(run.message.as_deref().unwrap().contains("ImagePullBackOff"));
    }

    #[test]
    fn a_fetch_problem_is_a_condition_and_one_event() {
        let spec = spec(ConcurrencyPolicy::Forbid);
        let mut o = obs(&spec, None, 0);
        o.fetch_error = Some(FetchProblem {
            reason: "AuthenticationFailed".into(),
            message: "the server refused the credentials".into(),
        });
        let p = plan(&spec, &PipelineStatus::default(), &o);
        assert_eq!(p.status.phase, Some(PipelinePhase::Error));
        assert_eq!(
            cond(&p.status, conditions::FETCH_FAILED),
            Some(("True", "AuthenticationFailed"))
        );
        assert_eq!(
            cond(&p.status, conditions::READY),
            Some(("False", "AuthenticationFailed"))
        );
        assert_eq!(p.notes.len(), 1);
        let again = plan(&spec, &p.status, &o);
        assert!(again.notes.is_empty(), "the same problem is not reported twice");
        assert_eq!(again.status, p.status);

        o.fetch_error = None;
        o.head = Some(head(SHA1));
        let recovered = step(&spec, &p.status, o);
        assert_eq!(cond(&recovered.status, conditions::FETCH_FAILED), None);
    }

    #[test]
    fn suspended_starts_nothing() {
        let mut spec = spec(ConcurrencyPolicy::Forbid);
        spec.suspend = Some(true);
        let p = plan(&spec, &PipelineStatus::default(), &obs(&spec, Some(SHA1), 0));
        assert_eq!(p.status.phase, Some(PipelinePhase::Suspended));
        assert!(p.create.is_empty() && p.wants_source.is_none());
    }

    #[test]
    fn invalid_spec_stalls_once() {
        let (status, notes) = invalid(&PipelineStatus::default(), Some(2), "spec.interval: bad", &at(0));
        assert_eq!(cond(&status, conditions::STALLED), Some(("True", reason::INVALID_SPEC)));
        assert_eq!(status.phase, Some(PipelinePhase::Error));
        assert_eq!(notes.len(), 1);
        let (again, notes) = invalid(&status, Some(2), "spec.interval: bad", &at(5));
        assert_eq!(again, status);
        assert!(notes.is_empty());
    }
}
