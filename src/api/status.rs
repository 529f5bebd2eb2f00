//! The Pipeline's status: the record of what was seen on the remote and what was built.
//!
//! The controller writes it only when something changed, so a no-op poll costs no API write.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a Pipeline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Summary of the Pipeline's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PipelinePhase>,

    /// Full hash of the commit of the last successful build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_commit: Option<String>,

    /// Abbreviated hash of `builtCommit`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_short_commit: Option<String>,

    /// Target version of the last successful build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,

    /// Head last seen on the remote, as `<branch>@sha1:<sha>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<String>,

    /// Source artifact of the latest revision: the exported tree the builder Pod downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,

    /// Number of the newest run still in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<i64>,

    /// Runs, newest first, at most `historyLimit` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Run>,

    /// Conditions: `Ready`, `Reconciling`, `Stalled`, `FetchFailed`, `BuildFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Value of the `delivery.inge.4pr.es/requested-at` annotation last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_trigger_at: Option<String>,
}

// Summary phase of a Pipeline. (A plain comment: a doc comment would replace the field's description.)
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelinePhase {
    /// Accepted; no build has finished yet.
    Pending,
    /// A build is running.
    Building,
    /// The last build succeeded.
    Succeeded,
    /// The last build failed.
    Failed,
    /// `spec.suspend` is true.
    Suspended,
    /// The Pipeline cannot make progress (invalid spec, unreadable Secret, repository unreachable).
    Error,
}

/// The exported source tree of one commit.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Revision the artifact was exported from, as `<branch>@sha1:<sha>`.
    pub revision: String,
    /// Digest of the tar.gz, as `sha256:<hex>`.
    pub digest: String,
    /// Size of the tar.gz in bytes.
    pub size: i64,
    /// When the artifact was produced.
    pub last_update_time: Time,
}

/// One build of one commit: an entry of `status.history`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Sequence number of the run within this Pipeline, starting at 1.
    pub run: i64,
    /// Full hash of the commit built.
    pub commit: String,
    /// Abbreviated commit hash.
    pub short_commit: String,
    /// Revision built, as `<branch>@sha1:<sha>`.
    pub revision: String,
    /// First line of the commit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Commit author, as `Name <email>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// `spec.targetVersion` at the time of the run.
    pub target_version: String,
    /// Name of the builder Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Phase of the run.
    pub phase: RunPhase,
    /// Machine-readable reason for the phase (for example `BuildFailed`, `DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the builder Pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What started the run.
    pub trigger: Trigger,
    /// Digest of the build-relevant spec (image, commands, arguments, env, resources, service account,
    /// target name and version) the run was started with; a different digest on the current spec is a
    /// `spec-change` trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// Digest (`sha256:<hex>`) of the source artifact the builder Pod downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
}

/// Phase of one run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunPhase {
    /// The builder Pod is created but not running yet.
    Pending,
    /// The builder Pod is running.
    Building,
    /// The build exited 0.
    Succeeded,
    /// The build failed, timed out, or its Pod disappeared.
    Failed,
    /// The build was cancelled (`concurrencyPolicy: Replace`, or the Pipeline changed).
    Cancelled,
    /// The commit was never built because a newer one superseded it (`concurrencyPolicy: Forbid`).
    Skipped,
}

/// What started a run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A poll found a new commit.
    Poll,
    /// A webhook from the git server announced a push.
    Webhook,
    /// The `delivery.inge.4pr.es/requested-at` annotation asked for a build.
    Manual,
    /// The Pipeline's spec changed.
    SpecChange,
}
