//! The `Pipeline` custom resource: its spec, and the default every optional field gets (the field
//! table in README.md lists them).
//!
//! The doc comments on the fields are the manual: they become the CRD's field descriptions, which is what
//! `kubectl explain pipeline.spec.<field>` prints.
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::PipelineStatus;
use super::validation::{DURATION_PATTERN, parse_duration};

/// Poll period when neither `interval` nor `schedule` is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Build deadline when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Runs kept in `status.history` (and finished Pods kept) when `historyLimit` is not set.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;
/// Bounds of `historyLimit`.
pub(crate) const HISTORY_LIMIT_RANGE: std::ops::RangeInclusive<i32> = 1..=100;

// CRD rules for what `validate` checks with the engine's parsers, so that kube-apiserver refuses the same
// input at `kubectl apply`. They are RE2 (kube-apiserver) and Rust regex (the embedded server) alike.
/// A password in the URL's user info (`scheme://user:password@host`).
const REPO_NO_PASSWORD: &str = "!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@')";
/// A `scheme://` URL names a supported scheme; remote helpers (`helper::address`) are refused.
const REPO_SCHEME: &str =
    "self.matches('^(?i)(https|http|ssh|git|file)://') || (!self.contains('://') && !self.contains('::'))";
/// The host of a `scheme://` URL: a name or an `[IPv6]` literal, never shell metacharacters.
const REPO_HOST: &str = r"!self.contains('://') || self.matches('^[A-Za-z+]+://([^/@]*@)?([A-Za-z0-9._-]*|\\[[0-9A-Fa-f:.]+\\])(:[0-9]*)?(/|$)')";
/// git's branch-name rules (`git check-ref-format --branch`), `refs/heads/` allowed in front.
const BRANCH_RULE: &str =
    r"!self.matches('(^[-/.]|[.][.]|[[:space:][:cntrl:]~^:?*]|[\\[\\\\]|@[{]|[/.]$|[.]lock$|/[.]|//|^@$)')";
/// Five or six fields, or a macro.
const SCHEDULE_SHAPE: &str =
    "self.startsWith('@') || self.matches('^[[:space:]]*[^[:space:]]+([[:space:]]+[^[:space:]]+){4,5}[[:space:]]*$')";
/// Floors of `interval` and `timeout`; a value of the wrong shape is left to the pattern's error.
const INTERVAL_FLOOR: &str = "!self.matches('^([0-9]+(ms|s|m|h))+$') || duration(self) >= duration('10s')";
const TIMEOUT_FLOOR: &str = "!self.matches('^([0-9]+(ms|s|m|h))+$') || duration(self) >= duration('1s')";
/// A DNS-1123 subdomain: Secret and ServiceAccount names.
const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

// clippy reads repeated `type_ = "string"` inside several printcolumn(...) groups as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "delivery.inge.4pr.es",
    version = "v1alpha1",
    kind = "Pipeline",
    plural = "pipelines",
    singular = "pipeline",
    shortname = "pl",
    category = "cdkube",
    namespaced,
    status = "PipelineStatus",
    derive = "PartialEq",
    doc = "A Pipeline follows a branch of a Git repository and builds each new commit in a builder Pod; its status is the commit-hash audit trail of what was built.",
    printcolumn(
        name = "Commit",
        type_ = "string",
        json_path = ".status.builtShortCommit",
        description = "Short hash of the last successfully built commit"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.targetVersion",
        description = "Target version of the last successful build"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Phase of the Pipeline"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Repo",
        type_ = "string",
        json_path = ".spec.repo",
        priority = "1",
        description = "Git repository URL"
    ),
    printcolumn(
        name = "Branch",
        type_ = "string",
        json_path = ".spec.branch",
        priority = "1",
        description = "Branch followed (empty: the remote HEAD)"
    )
)]
/// Desired state of a Pipeline: the repository and branch to follow, when to poll, and how to build.
#[x_kube(validation = Rule::new("!(has(self.interval) && has(self.schedule))").message("interval and schedule are mutually exclusive: set one of them").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// Git repository to follow: `https://`, `http://`, `ssh://`, scp-like `git@host:path` or `git://`.
    /// `file://` URLs and local paths are accepted only where the operator allows local repositories
    /// (`cdkube dev`).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(REPO_NO_PASSWORD).message("must not embed a password: put credentials in the Secret named by spec.secretRef").reason(Reason::FieldValueForbidden))]
    #[x_kube(validation = Rule::new("!self.matches('[[:space:][:cntrl:]]')").message("must not contain whitespace or control characters"))]
    #[x_kube(validation = Rule::new(REPO_SCHEME).message("unsupported URL scheme: use https://, http://, ssh://, scp-like git@host:path or git://"))]
    #[x_kube(validation = Rule::new(REPO_HOST).message("the host may hold only letters, digits, '.', '-', '_' and an [IPv6] address"))]
    pub repo: String,

    /// Branch to follow. Defaults to the branch the remote's HEAD points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(BRANCH_RULE).message("is not a valid git branch name"))]
    pub branch: Option<String>,

    /// How often to poll the repository for a new commit, as a duration such as `30s`, `5m` or `1h`.
    /// Defaults to `1m`; the floor is `10s`. Mutually exclusive with `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new(INTERVAL_FLOOR).message("must be at least 10s"))]
    pub interval: Option<String>,

    /// Cron expression (5 fields, or 6 with seconds first) at whose times the repository is polled,
    /// instead of polling every `interval`. Evaluated in UTC. Mutually exclusive with `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(SCHEDULE_SHAPE).message("must be a cron expression of 5 fields (6 with seconds first) or a macro such as @hourly"))]
    pub schedule: Option<String>,

    /// Deadline of one build, as a duration such as `10m`. Becomes the builder Pod's
    /// `activeDeadlineSeconds`; a Pod stuck Pending past it is also cancelled. Defaults to `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new(TIMEOUT_FLOOR).message("must be at least 1s"))]
    pub timeout: Option<String>,

    /// What to do when a new commit arrives while a build is running. `Forbid` (default): the newest
    /// commit waits for the running build and intermediate commits are recorded as skipped. `Replace`:
    /// cancel the running build and build the newest commit. `Allow`: build every new head in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,

    /// Number of runs kept in `status.history`, and of finished builder Pods kept in the cluster
    /// (1–100). Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: Option<i32>,

    /// Stop polling and building. A running build is left to finish. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Secret in the Pipeline's namespace holding the Git credentials: `username` and `password` (or a
    /// token as password), or `bearerToken`, for HTTP(S); `identity` (private key) and `known_hosts` for
    /// SSH; optionally `ca.crt` for an HTTPS server with a private CA. Never mounted into builder Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Container image the build runs in.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\S+$"))]
    pub build_image: String,

    /// Entrypoint of the build container (its `command`).
    #[schemars(length(min = 1))]
    pub build_commands: Vec<String>,

    /// Arguments passed to `buildCommands` (the build container's `args`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_arguments: Vec<String>,

    /// Name of what the build produces. Passed to the build as `CDKUBE_TARGET_NAME`.
    #[schemars(length(min = 1, max = 253))]
    pub target_name: String,

    /// Version of what the build produces. Passed to the build as `CDKUBE_TARGET_VERSION` and recorded
    /// in `status.targetVersion` once a build succeeds.
    #[schemars(length(min = 1, max = 128))]
    pub target_version: String,

    /// Extra environment variables for the build container. Names starting with `CDKUBE_` are reserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(e, !e.name.startsWith('CDKUBE_'))").message("names starting with CDKUBE_ are set by cdkube").reason(Reason::FieldValueForbidden))]
    pub env: Vec<EnvVar>,

    /// Compute resources (requests and limits) of the build container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// ServiceAccount the builder Pod runs as. When set, its token is mounted into the Pod; when
    /// unset, no token is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,
}

// What happens to a running build when a newer commit arrives. (A plain comment: a doc comment here
// would replace the field's description in the CRD, which kubectl explain shows.)
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    /// The newest commit waits for the running build; commits in between are skipped.
    #[default]
    Forbid,
    /// The running build is cancelled and the newest commit is built.
    Replace,
    /// Every new head is built, in parallel.
    Allow,
}

/// A reference to a Secret in the Pipeline's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

impl PipelineSpec {
    /// The poll period in effect (`interval`, else 1m). Call after validation; an unparsable value
    /// falls back to the default rather than failing here.
    pub fn interval(&self) -> Duration {
        self.interval
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_INTERVAL)
    }

    /// The build deadline in effect (`timeout`, else 30m).
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The concurrency policy in effect (`Forbid` unless set).
    pub fn concurrency_policy(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or_default()
    }

    /// The history limit in effect (10 unless set), clamped to 1–100.
    pub fn history_limit(&self) -> usize {
        let limit = self.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        limit.clamp(*HISTORY_LIMIT_RANGE.start(), *HISTORY_LIMIT_RANGE.end()) as usize
    }

    /// Whether polling and building are suspended.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }
}
