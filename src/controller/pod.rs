//! The builder Pod of one run, and what the controller reads back from it.
//!
//! [`builder_pod`] is a pure function of the Pipeline, the run and where its source is: the same inputs
//! always give the same Pod, with a name derived from (Pipeline, run, commit), so a create repeated after an
//! operator crash meets `AlreadyExists` instead of starting a second build. Every field is valid for a real
//! kube-apiserver: names are DNS-1123 labels of at most 63 characters, label values at most 63, env names
//! C identifiers.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerStatus, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::{Pipeline, Run};

/// Label on every object cdkube manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "cdkube";
/// Label naming the Pipeline a builder Pod belongs to (see [`pipeline_label_value`]).
pub const PIPELINE_LABEL: &str = "delivery.inge.4pr.es/pipeline";
/// Label holding the run number of a builder Pod.
pub const RUN_LABEL: &str = "delivery.inge.4pr.es/run";
/// Annotation holding the full commit hash a builder Pod builds.
pub const COMMIT_ANNOTATION: &str = "delivery.inge.4pr.es/commit";
/// Annotation holding the target version a builder Pod builds.
pub const TARGET_VERSION_ANNOTATION: &str = "delivery.inge.4pr.es/target-version";
/// Annotation holding the revision (`<branch>@sha1:<sha>`) a builder Pod builds.
pub const REVISION_ANNOTATION: &str = "delivery.inge.4pr.es/revision";
/// Name of the init container that downloads and unpacks the source.
pub const FETCH_CONTAINER: &str = "fetch-source";
/// Name of the container running the user's build.
pub const BUILD_CONTAINER: &str = "build";
/// Where the source tree is unpacked, and the build's working directory.
pub const WORKSPACE: &str = "/workspace";

/// Kubernetes' limit on a label value and on a DNS-1123 label.
const MAX_LABEL: usize = 63;

/// Where the builder Pod's init container gets the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// Signed, expiring URL of the tar.gz.
    pub url: String,
    /// Its `sha256:<hex>` digest, checked before anything is unpacked.
    pub digest: String,
}

/// What the operator puts into every builder Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTemplate {
    /// Image of the `fetch-source` init container (the operator's own image).
    pub fetch_image: String,
}

/// The deterministic name of the builder Pod of `run` (commit `short`) of Pipeline `pipeline`:
/// `<pipeline>-<run>-<short>`, or, when that is not a DNS-1123 label of at most 63 characters (long names,
/// dots), a shortened prefix plus 8 hex digits of a hash of the full name.
pub fn pod_name(pipeline: &str, run: i64, short: &str) -> String {
    let plain = format!("{pipeline}-{run}-{short}");
    if plain.len() <= MAX_LABEL && !pipeline.contains('.') {
        return plain;
    }
    let suffix = format!("-{}-{run}-{short}", hash8(pipeline));
    let room = MAX_LABEL.saturating_sub(suffix.len());
    let prefix: String = pipeline
        .chars()
        .take(room)
        .map(|c| if c == '.' { '-' } else { c })
        .collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// The value of [`PIPELINE_LABEL`] for Pipeline `name`: the name itself when it fits a label value, else a
/// shortened name plus a hash (label values are limited to 63 characters).
pub fn pipeline_label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL {
        return name.to_owned();
    }
    let suffix = format!("-{}", hash8(name));
    let prefix: String = name.chars().take(MAX_LABEL - suffix.len()).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

fn hash8(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// The builder Pod of `run` of `pipeline`. `run.pod` must be set (to [`pod_name`]).
pub fn builder_pod(pipeline: &Pipeline, run: &Run, source: &SourceRef, template: &PodTemplate) -> Pod {
    let spec = &pipeline.spec;
    let name = run
        .pod
        .clone()
        .unwrap_or_else(|| pod_name(&pipeline.name_any(), run.run, &run.short_commit));
    let workspace_mount = VolumeMount {
        name: "workspace".into(),
        mount_path: WORKSPACE.into(),
        ..Default::default()
    };
    let fetch = Container {
        name: FETCH_CONTAINER.into(),
        image: Some(template.fetch_image.clone()),
        command: Some(vec!["cdkube".into(), "fetch-source".into()]),
        args: Some(vec![
            "--url".into(),
            source.url.clone(),
            "--digest".into(),
            source.digest.clone(),
            "--dest".into(),
            WORKSPACE.into(),
        ]),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(vec![workspace_mount.clone()]),
        ..Default::default()
    };
    let mut env = run_env(pipeline, run);
    env.extend(spec.env.iter().cloned());
    let build = Container {
        name: BUILD_CONTAINER.into(),
        image: Some(spec.build_image.clone()),
        command: Some(spec.build_commands.clone()),
        args: (!spec.build_arguments.is_empty()).then(|| spec.build_arguments.clone()),
        working_dir: Some(WORKSPACE.into()),
        env: Some(env),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![workspace_mount]),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pipeline.namespace(),
            labels: Some(pod_labels(&pipeline.name_any(), run.run)),
            annotations: Some(BTreeMap::from([
                (COMMIT_ANNOTATION.to_owned(), run.commit.clone()),
                (TARGET_VERSION_ANNOTATION.to_owned(), run.target_version.clone()),
                (REVISION_ANNOTATION.to_owned(), run.revision.clone()),
            ])),
            owner_references: Some(vec![owner_reference(pipeline)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(deadline_seconds(spec.timeout())),
            // No token unless a service account is named; then its own automount setting decides.
            automount_service_account_token: spec.service_account_name.is_none().then_some(false),
            service_account_name: spec.service_account_name.clone(),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            init_containers: Some(vec![fetch]),
            containers: vec![build],
            volumes: Some(vec![Volume {
                name: "workspace".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The labels of a builder Pod: what selects a Pipeline's Pods, and which run each is.
pub fn pod_labels(pipeline: &str, run: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (PIPELINE_LABEL.to_owned(), pipeline_label_value(pipeline)),
        (RUN_LABEL.to_owned(), run.to_string()),
    ])
}

/// The label selector of every builder Pod of Pipeline `name`.
pub fn pipeline_selector(name: &str) -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{PIPELINE_LABEL}={}",
        pipeline_label_value(name)
    )
}

/// `CDKUBE_*` variables telling the build what it builds.
fn run_env(pipeline: &Pipeline, run: &Run) -> Vec<EnvVar> {
    let branch = run.revision.split_once("@sha1:").map_or("", |(b, _)| b);
    [
        ("CDKUBE_COMMIT", run.commit.as_str()),
        ("CDKUBE_BRANCH", branch),
        ("CDKUBE_REVISION", run.revision.as_str()),
        ("CDKUBE_TARGET_NAME", pipeline.spec.target_name.as_str()),
        ("CDKUBE_TARGET_VERSION", run.target_version.as_str()),
        ("CDKUBE_RUN", &run.run.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    })
    .collect()
}

/// The controller ownerReference: deleting the Pipeline deletes its Pods (blocking foreground deletion).
fn owner_reference(pipeline: &Pipeline) -> OwnerReference {
    OwnerReference {
        api_version: Pipeline::api_version(&()).into_owned(),
        kind: Pipeline::kind(&()).into_owned(),
        name: pipeline.name_any(),
        uid: pipeline.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The restricted Pod Security Standard for the container cdkube controls: non-root, read-only root,
/// no capabilities, no privilege escalation, the runtime's default seccomp profile.
fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// `activeDeadlineSeconds` for a timeout: whole seconds, at least 1 (the API refuses 0).
pub fn deadline_seconds(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// Phase of a builder Pod as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Not running yet (scheduling, pulling, init container running).
    Pending,
    /// The build container runs.
    Running,
    /// Every container exited 0.
    Succeeded,
    /// A container failed, or the Pod hit its deadline.
    Failed,
}

/// What the controller reads from one builder Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Run number from its label.
    pub run: i64,
    /// Its phase.
    pub phase: PodPhase,
    /// `metadata.creationTimestamp`.
    pub created: Option<Time>,
    /// When the last container finished, for a finished Pod.
    pub finished: Option<Time>,
    /// Machine-readable reason of a failure (`BuildFailed`, `DeadlineExceeded`, `SourceFetchFailed`) or of a
    /// Pending Pod's wait (`ImagePullBackOff`, `Unschedulable`).
    pub reason: Option<String>,
    /// A sentence for the run's message.
    pub message: Option<String>,
    /// Whether the Pod is being deleted.
    pub deleting: bool,
}

impl PodView {
    /// Whether the Pod still runs (or waits to) and is not being deleted.
    pub fn is_live(&self) -> bool {
        matches!(self.phase, PodPhase::Pending | PodPhase::Running) && !self.deleting
    }

    /// Reads `pod`; `None` for a Pod without a run label (not a builder Pod).
    pub fn of(pod: &Pod, timeout: Duration) -> Option<PodView> {
        let run = pod.labels().get(RUN_LABEL)?.parse().ok()?;
        let status = pod.status.clone().unwrap_or_default();
        let phase = match status.phase.as_deref() {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        };
        let inits = status.init_container_statuses.unwrap_or_default();
        let mains = status.container_statuses.unwrap_or_default();
        let (reason, message) = match phase {
            PodPhase::Failed => failure(status.reason.as_deref(), status.message, &inits, &mains, timeout),
            PodPhase::Pending => waiting(&inits, &mains, &status.conditions.unwrap_or_default()),
            _ => (None, None),
        };
        Some(PodView {
            name: pod.name_any(),
            run,
            phase,
            created: pod.metadata.creation_timestamp.clone(),
            finished: inits.iter().chain(&mains).filter_map(finished_at).max_by_key(|t| t.0),
            reason,
            message,
            deleting: pod.metadata.deletion_timestamp.is_some(),
        })
    }
}

fn finished_at(status: &ContainerStatus) -> Option<Time> {
    status.state.as_ref()?.terminated.as_ref()?.finished_at.clone()
}

/// Why a Pod failed: its deadline, a failed source download, or the build's exit code.
fn failure(
    pod_reason: Option<&str>,
    pod_message: Option<String>,
    inits: &[ContainerStatus],
    mains: &[ContainerStatus],
    timeout: Duration,
) -> (Option<String>, Option<String>) {
    use crate::api::conditions::reason;
    if pod_reason == Some(reason::DEADLINE_EXCEEDED) {
        let after = humantime::format_duration(timeout);
        return (
            Some(reason::DEADLINE_EXCEEDED.into()),
            Some(format!("DeadlineExceeded after {after}")),
        );
    }
    for (status, init) in inits.iter().map(|s| (s, true)).chain(mains.iter().map(|s| (s, false))) {
        let Some(term) = status.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        if term.exit_code == 0 {
            continue;
        }
        let kind = if init { "init container" } else { "container" };
        let mut message = format!("exit code {} in {kind} {}", term.exit_code, status.name);
        if let Some(detail) = term.message.as_deref().filter(|m| !m.is_empty()) {
            message.push_str(&format!(": {}", detail.trim()));
        }
        let why = if init {
            reason::SOURCE_FETCH_FAILED
        } else {
            reason::BUILD_FAILED
        };
        return (Some(why.into()), Some(message));
    }
    let why = pod_reason.unwrap_or(reason::BUILD_FAILED).to_owned();
    let message = pod_message.unwrap_or_else(|| "the builder Pod failed".into());
    (Some(why), Some(message))
}

/// Why a Pod is still Pending: a waiting container's reason (ImagePullBackOff, …) or an unmet condition.
fn waiting(
    inits: &[ContainerStatus],
    mains: &[ContainerStatus],
    conditions: &[k8s_openapi::api::core::v1::PodCondition],
) -> (Option<String>, Option<String>) {
    let waiting = inits
        .iter()
        .chain(mains)
        .filter_map(|s| s.state.as_ref()?.waiting.as_ref())
        .find(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| r != "PodInitializing" && r != "ContainerCreating")
        });
    if let Some(w) = waiting {
        return (w.reason.clone(), w.message.clone());
    }
    let unscheduled = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    match unscheduled {
        Some(c) => (c.reason.clone(), c.message.clone()),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PipelineSpec, RunPhase, Trigger};

    fn pipeline(name: &str) -> Pipeline {
        let mut p = Pipeline::new(
            name,
            PipelineSpec {
                repo: "http://127.0.0.1/repo.git".into(),
                build_image: "busybox".into(),
                build_commands: vec!["echo".into()],
                build_arguments: vec!["building something...".into(), "now I'm done".into()],
                target_name: "tesApp".into(),
                target_version: "0.1".into(),
                timeout: Some("10m".into()),
                ..Default::default()
            },
        );
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn run(pipeline: &str, n: i64) -> Run {
        let commit = "0123456789abcdef0123456789abcdef01234567".to_owned();
        Run {
            run: n,
            short_commit: commit[..7].into(),
            revision: format!("main@sha1:{commit}"),
            commit,
            subject: None,
            author: None,
            target_version: "0.1".into(),
            pod: Some(pod_name(pipeline, n, "0123456")),
            phase: RunPhase::Pending,
            reason: None,
            message: None,
            start_time: None,
            completion_time: None,
            trigger: Trigger::Poll,
            spec_digest: None,
            source_digest: None,
        }
    }

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn names_are_dns_labels_and_deterministic() {
        struct Case {
            pipeline: &'static str,
            expected: Option<&'static str>,
        }
        let long = "a-very-long-pipeline-name-that-goes-on-and-on-well-past-the-limit-of-labels";
        let cases = [
            Case {
                pipeline: "doing-nothing",
                expected: Some("doing-nothing-3-0123456"),
            },
            Case {
                pipeline: long,
                expected: None,
            },
            Case {
                pipeline: "web.frontend",
                expected: None,
            },
        ];
        for case in cases {
            let name = pod_name(case.pipeline, 3, "0123456");
            assert!(is_dns_label(&name), "{name:?} from {:?}", case.pipeline);
            assert_eq!(name, pod_name(case.pipeline, 3, "0123456"));
            assert!(name.ends_with("-3-0123456"));
            if let Some(expected) = case.expected {
                assert_eq!(name, expected);
            }
        }
        assert_ne!(
            pod_name(long, 3, "0123456"),
            pod_name(&format!("{long}x"), 3, "0123456")
        );
    }

    #[test]
    fn label_values_fit() {
        let long = "x".repeat(200);
        let value = pipeline_label_value(&long);
        assert!(value.len() <= 63);
        assert_ne!(value, pipeline_label_value(&"x".repeat(201)));
        assert_eq!(pipeline_label_value("doing-nothing"), "doing-nothing");
    }

    #[test]
    fn builder_pod_shape() {
        let p = pipeline("doing-nothing");
        let r = run("doing-nothing", 1);
        let source = SourceRef {
            url: "http://127.0.0.1:9/a?expires=1&signature=x".into(),
            digest: "sha256:00".into(),
        };
        let template = PodTemplate {
            fetch_image: "cdkube:test".into(),
        };
        let pod = builder_pod(&p, &r, &source, &template);
        assert_eq!(pod.metadata.name.as_deref(), Some("doing-nothing-1-0123456"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let init = &spec.init_containers.as_ref().unwrap()[0];
        let sc = init.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert!(init.args.as_ref().unwrap().contains(&source.digest));
        let build = &spec.containers[0];
        assert_eq!(build.command.as_deref(), Some(&["echo".to_owned()][..]));
        assert_eq!(build.args.as_ref().unwrap()[1], "now I'm done");
        assert!(build.security_context.is_none(), "user images may run as root");
        let env: BTreeMap<_, _> = build
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(env["CDKUBE_COMMIT"], r.commit);
        assert_eq!(env["CDKUBE_BRANCH"], "main");
        assert_eq!(env["CDKUBE_TARGET_VERSION"], "0.1");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[RUN_LABEL], "1");
        assert_eq!(labels[PIPELINE_LABEL], "doing-nothing");
    }

    #[test]
    fn service_account_mounts_its_token() {
        let mut p = pipeline("p");
        p.spec.service_account_name = Some("builder".into());
        let source = SourceRef {
            url: String::new(),
            digest: String::new(),
        };
        let template = PodTemplate {
            fetch_image: String::new(),
        };
        let pod = builder_pod(&p, &run("p", 1), &source, &template);
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.automount_service_account_token, None,
            "the ServiceAccount's own setting applies"
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
    }

    #[test]
    fn failure_names_the_exit_code_and_container() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
        let exited = |name: &str, code: i32| ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (reason, message) = failure(
            None,
            None,
            &[exited("fetch-source", 0)],
            &[exited("build", 3)],
            Duration::ZERO,
        );
        assert_eq!(reason.as_deref(), Some("BuildFailed"));
        assert_eq!(message.as_deref(), Some("exit code 3 in container build"));
        let (reason, message) = failure(Some("DeadlineExceeded"), None, &[], &[], Duration::from_secs(1800));
        assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(message.as_deref(), Some("DeadlineExceeded after 30m"));
        let (reason, _) = failure(None, None, &[exited("fetch-source", 1)], &[], Duration::ZERO);
        assert_eq!(reason.as_deref(), Some("SourceFetchFailed"));
    }
}
