//! The Pipeline API (see `docs/architecture.md`): spec and status types, conditions, validation. The only place the
//! schema lives; the CRD in `deploy/crd.yaml` is generated from these types.
pub mod conditions;
pub mod crd;
pub mod manifest;
// kube's CEL derive copies PipelineSpec (as `PipelineSpecValidated`, `pub`, without our allow
// attributes) to build the schema; that copy is not re-exported, which `unreachable_pub` reports.
#[allow(unreachable_pub)]
mod pipeline;
mod status;
pub mod validation;

pub use pipeline::{
    ConcurrencyPolicy, DEFAULT_HISTORY_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Pipeline, PipelineSpec, SecretRef,
};
pub use status::{Artifact, PipelinePhase, PipelineStatus, Run, RunPhase, Trigger};
pub use validation::{FieldError, validate};

/// API group of every cdkube resource.
pub const GROUP: &str = "delivery.inge.4pr.es";
/// API version of the Pipeline resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of a Pipeline manifest.
pub const API_VERSION: &str = "delivery.inge.4pr.es/v1alpha1";
/// Annotation whose new value asks for an immediate poll and build.
pub const REQUESTED_AT_ANNOTATION: &str = "delivery.inge.4pr.es/requested-at";
