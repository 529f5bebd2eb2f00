//! One reconcile of one Pipeline, the Flux way: a short chain of steps — validate the spec, resolve the
//! credentials and the remote head (source), observe the builder Pods, plan (pure, in [`super::history`]),
//! then one status write, guarded by `resourceVersion` and sent only when the status changed, followed by
//! the Pod creations and deletions and the Events the plan asked for.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::history::{self, Note, Observation, Plan, Severity};
use super::pod::{self, PodView, SourceRef};
use super::{Context, Error, source};
use crate::api::{Pipeline, PipelineStatus, REQUESTED_AT_ANNOTATION, validation};
use crate::schedule::Schedule;

/// How often a quiet Pipeline is looked at anyway (the watch and the poller drive everything else).
const RESYNC: Duration = Duration::from_secs(600);

/// Reconciles `pipeline`.
pub(crate) async fn reconcile(pipeline: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let id = subscription_id(&pipeline)?;
    if pipeline.meta().deletion_timestamp.is_some() {
        ctx.poller.unsubscribe(&id);
        return Ok(Action::await_change());
    }
    let old = pipeline.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let options = validation::Options {
        allow_local_repos: ctx.options.allow_local_repos,
    };
    if let Err(errors) = validation::validate_with(&pipeline.spec, options) {
        ctx.poller.unsubscribe(&id);
        let message: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let (status, notes) = history::invalid(&old, pipeline.metadata.generation, &message.join("; "), &now);
        write_status(&ctx, &pipeline, &old, status).await?;
        publish(&ctx, &pipeline, &notes).await;
        return Ok(Action::await_change());
    }
    let mut obs = observe(&ctx, &pipeline, &old, now).await?;
    let remote = sense(&ctx, &pipeline, &id, &mut obs).await;
    // Failures no poller key retries (a bad Secret, a failed fetch) back off per Pipeline.
    let mut failed = remote.is_none() && obs.fetch_error.is_some();
    let mut plan = history::plan(&pipeline.spec, &old, &obs);
    if let (Some(wanted), Some(remote)) = (&plan.wants_source, &remote) {
        failed |= !prepare_source(&ctx, remote, wanted, &mut obs).await;
        plan = history::plan(&pipeline.spec, &old, &obs);
    }
    let retry = match failed {
        true => Some(ctx.backoff.next(&id)),
        false => {
            ctx.backoff.reset(&id);
            None
        }
    };
    let action = apply(&ctx, &pipeline, &old, plan).await?;
    Ok(retry.map_or(action, Action::requeue))
}

/// Fetches and exports the commit a new run needs into `obs`; false (and the problem in `obs`) on failure.
async fn prepare_source(
    ctx: &Context,
    remote: &crate::git::RemoteSpec,
    wanted: &crate::git::Head,
    obs: &mut Observation,
) -> bool {
    match source::prepare(ctx, remote, wanted).await {
        Ok(prepared) => {
            obs.head = Some(prepared.head.clone());
            obs.source = Some(prepared);
            true
        }
        Err(problem) => {
            obs.fetch_error = Some(problem);
            false
        }
    }
}

/// An API for `K` in `pipeline`'s namespace.
fn in_namespace_of<K>(ctx: &Context, pipeline: &Pipeline) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), &pipeline.namespace().unwrap_or_default())
}

/// `namespace/name`: the Pipeline's id in the poller.
pub(crate) fn subscription_id(pipeline: &Pipeline) -> Result<String, Error> {
    let namespace = pipeline.namespace().ok_or(Error::Incomplete("namespace"))?;
    Ok(format!("{namespace}/{}", pipeline.name_any()))
}

/// What is known before looking at the remote: the Pods, refused creations, a pending manual request.
async fn observe(ctx: &Context, pipeline: &Pipeline, old: &PipelineStatus, now: Time) -> Result<Observation, Error> {
    let pods = list_pods(ctx, pipeline).await?;
    let requested = pipeline.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
    let manual = requested.filter(|r| old.last_handled_trigger_at.as_ref() != Some(r));
    Ok(Observation {
        pipeline: pipeline.name_any(),
        now,
        generation: pipeline.metadata.generation,
        spec_digest: history::spec_digest(&pipeline.spec),
        head: None,
        pushed: false,
        fetch_error: None,
        manual,
        pods,
        create_failures: ctx.create_failures(pipeline),
        source: None,
    })
}

/// The Pipeline's builder Pods: label-selected, and owned by this very Pipeline (not a namesake that was
/// deleted and created again).
async fn list_pods(ctx: &Context, pipeline: &Pipeline) -> Result<Vec<PodView>, Error> {
    let api: Api<Pod> = in_namespace_of(ctx, pipeline);
    let selector = pod::pipeline_selector(&pipeline.name_any());
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let uid = pipeline.uid();
    let timeout = pipeline.spec.timeout();
    Ok(list
        .items
        .iter()
        .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .filter_map(|p| PodView::of(p, timeout))
        .collect())
}

/// The source step: subscribe to the poller (or leave it, when suspended) and read the head it knows;
/// a manual request probes at once. Returns the remote for a fetch, unless the credentials failed.
async fn sense(ctx: &Context, pipeline: &Pipeline, id: &str, obs: &mut Observation) -> Option<crate::git::RemoteSpec> {
    if pipeline.spec.suspended() {
        ctx.poller.unsubscribe(id);
        return None;
    }
    let remote = match source::remote(ctx, pipeline).await {
        Ok(remote) => remote,
        Err(problem) => {
            ctx.poller.unsubscribe(id);
            obs.fetch_error = Some(problem);
            return None;
        }
    };
    ctx.poller.subscribe(id, remote.clone(), schedule(pipeline));
    if obs.manual.is_some() {
        let started = std::time::Instant::now();
        let probed = ctx.engine.probe(&remote).await;
        super::instruments::record_probe(&ctx.options.metrics, &remote.key().0, &probed, started.elapsed());
        match probed {
            Ok(head) => obs.head = Some(head),
            Err(e) => obs.fetch_error = Some(e.into()),
        }
        return Some(remote);
    }
    let known = ctx.poller.status(id);
    obs.head = known.as_ref().and_then(|k| k.head.clone());
    obs.pushed = known.as_ref().is_some_and(|k| k.pushed);
    obs.fetch_error = known.and_then(|k| k.error).map(Into::into);
    Some(remote)
}

/// The poll schedule of a (validated) Pipeline.
fn schedule(pipeline: &Pipeline) -> Schedule {
    let spec = &pipeline.spec;
    match spec.schedule.as_deref().map(Schedule::cron) {
        Some(Ok(cron)) => cron,
        _ => Schedule::interval(spec.interval()),
    }
}

/// Carries out a plan: status first (the run is recorded before its Pod exists), then Pods, then Events.
async fn apply(ctx: &Context, pipeline: &Pipeline, old: &PipelineStatus, plan: Plan) -> Result<Action, Error> {
    let written = plan.status.clone();
    write_status(ctx, pipeline, old, plan.status).await?;
    super::instruments::record_runs(&ctx.options.metrics, old, &written);
    // The Events belong to the status just written: publish them before a Pod request can fail.
    publish(ctx, pipeline, &plan.notes).await;
    notify(ctx, pipeline, &plan.notes);
    // Deletes first: a replaced build stops before its successor starts.
    for name in &plan.delete {
        delete_pod(ctx, pipeline, name).await?;
    }
    let mut refused = false;
    for run in &plan.create {
        refused |= !create_pod(ctx, pipeline, run).await?;
    }
    let retry = plan.requeue_after.map(|d| d + Duration::from_secs(1));
    Ok(match (refused, retry) {
        (true, _) => Action::requeue(Duration::from_millis(200)),
        (false, Some(after)) => Action::requeue(after.min(RESYNC)),
        (false, None) => Action::requeue(RESYNC),
    })
}

/// Replaces the status (PUT on the status subresource, with the resourceVersion read: a stale writer gets
/// 409 and retries). Nothing is sent when the status is unchanged.
async fn write_status(
    ctx: &Context,
    pipeline: &Pipeline,
    old: &PipelineStatus,
    status: PipelineStatus,
) -> Result<(), Error> {
    if status == *old {
        return Ok(());
    }
    let api: Api<Pipeline> = in_namespace_of(ctx, pipeline);
    let mut object = pipeline.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status);
    match api
        .replace_status(&pipeline.name_any(), &PostParams::default(), &object)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// Creates the builder Pod of `run`. `AlreadyExists` means it was created before (a crash between create
/// and the next status write): adopt it. A Pod the API server refuses is remembered, so the next reconcile
/// fails the run with the server's message. Returns false for a refused Pod.
async fn create_pod(ctx: &Context, pipeline: &Pipeline, run: &crate::api::Run) -> Result<bool, Error> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let digest = run.source_digest.clone().unwrap_or_default();
    let path = crate::artifact::artifact_path(&namespace, &pipeline.name_any(), &run.commit, &digest);
    let ttl = pipeline.spec.timeout() + Duration::from_secs(600);
    let source = SourceRef {
        url: ctx.signer.signed_url(&ctx.options.artifact_url, &path, ttl),
        digest,
    };
    let pod = pod::builder_pod(pipeline, run, &source, &ctx.template());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => adopt(ctx, pipeline, &api, name).await,
        Err(kube::Error::Api(status)) if refuses_the_pod(&status) => {
            tracing::warn!(pod = %name, "builder Pod refused: {}", status.message);
            ctx.remember_refusal(pipeline, name, status.message);
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the API server refused the Pod itself (invalid, or against the namespace's Pod Security
/// level), which no retry fixes; quota, authorisation and transient errors are retried instead.
fn refuses_the_pod(status: &kube::core::Status) -> bool {
    matches!(status.code, 400 | 422) || (status.code == 403 && status.message.contains("PodSecurity"))
}

/// `AlreadyExists`: the Pod was created before (a crash between create and the next status write), so it
/// is adopted — if this Pipeline owns it. A namesake's leftover Pod is a refusal the user must clear.
async fn adopt(ctx: &Context, pipeline: &Pipeline, api: &Api<Pod>, name: String) -> Result<bool, Error> {
    let existing = api.get(&name).await?;
    let uid = pipeline.uid();
    if existing.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()) {
        return Ok(true);
    }
    let message = format!("a Pod named {name} already exists and this Pipeline does not own it; delete it");
    ctx.remember_refusal(pipeline, name, message);
    Ok(false)
}

/// Deletes a builder Pod; one already gone is fine.
async fn delete_pod(ctx: &Context, pipeline: &Pipeline, name: &str) -> Result<(), Error> {
    let api: Api<Pod> = in_namespace_of(ctx, pipeline);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes the plan's Events on the Pipeline; a failure is logged, never fatal.
async fn publish(ctx: &Context, pipeline: &Pipeline, notes: &[Note]) {
    let reference: ObjectReference = pipeline.object_ref(&());
    for note in notes {
        let event = Event {
            type_: match note.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: note.reason.into(),
            note: Some(truncate(&note.message, MAX_NOTE)),
            action: note.action.clone(),
            secondary: note.pod.as_ref().map(|name| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: pipeline.namespace(),
                ..Default::default()
            }),
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!("Event {} not recorded: {e}", note.reason);
        }
    }
}

/// events.k8s.io/v1 refuses a longer `note`.
const MAX_NOTE: usize = 1024;

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Sends one line per run Event to whoever watches the operator (`cdkube dev` prints them).
fn notify(ctx: &Context, pipeline: &Pipeline, notes: &[Note]) {
    let Some(sender) = &ctx.options.notify else {
        return;
    };
    for note in notes {
        let name = format!("{}/{}", pipeline.namespace().unwrap_or_default(), pipeline.name_any());
        let _ = sender.send(format!("{name}: {}", note.message));
    }
}
