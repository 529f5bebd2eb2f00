//! What every Pod task shares with the runner: the API client, the host settings, the node, the
//! Event recorder, and the reasons a task is told to stop.
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};

use super::cordon::Schedulable;
use super::workspace;

/// Why a Pod task is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The Pod has a deletionTimestamp: stop within the grace period, then delete it for good.
    Delete {
        /// Time between SIGTERM and SIGKILL.
        grace: Duration,
    },
    /// The Pod object is gone from the API.
    Vanished,
    /// The runner is shutting down.
    Shutdown,
}

/// Shared by every Pod task.
pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) host: workspace::Host,
    pub(super) state_dir: PathBuf,
    pub(super) node: String,
    /// Records as kubelet on this node (containers' Events).
    pub(super) recorder: Recorder,
    /// Whether the node takes new Pods (not cordoned).
    pub(super) schedulable: Schedulable,
    /// Records as the scheduler (`Scheduled`, `FailedScheduling`).
    pub(super) scheduler: Recorder,
}

impl Ctx {
    /// Publishes an Event as kubelet; failures are logged, never fatal.
    pub(super) async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
        publish(&self.recorder, reference, type_, reason, note).await;
    }

    /// Publishes an Event as the scheduler.
    pub(super) async fn scheduler_event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        publish(&self.scheduler, reference, type_, reason, note).await;
    }
}

/// Publishes an Event with `recorder`; failures are logged, never fatal.
async fn publish(recorder: &Recorder, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
    let ev = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::debug!("event {reason} not recorded: {e}");
    }
}
