//! Condition types, reasons and Event reasons as named constants, and the one helper that updates a
//! condition list the way kstatus and Flux expect.
//!
//! Polarity (kstatus "abnormal-true"): `Ready` is the only positive condition; the others are present
//! only while they hold (status `True`) and are removed when they stop holding.
//!
//! | type | polarity | set when |
//! |---|---|---|
//! | `Ready` | positive | always: `True` once the newest finished build succeeded and nothing is wrong |
//! | `Reconciling` | negative | a build is running, or the first poll has not answered yet |
//! | `Stalled` | negative | the spec is invalid: nothing happens until the user changes it |
//! | `FetchFailed` | negative | the repository cannot be probed or fetched, or its Secret is unusable |
//! | `BuildFailed` | negative | the newest finished build failed |
//!
//! `Ready` summarises the others, first match wins: `Stalled` or `FetchFailed` → `False` with their
//! reason; a build running or no poll yet → `Unknown` (`Progressing`); the newest finished build failed
//! → `False` (its reason, such as `BuildFailed` or `DeadlineExceeded`); it succeeded → `True`
//! (`Succeeded`). While `spec.suspend` is true, `Ready` keeps its last value.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition: the newest finished build succeeded and nothing is wrong (see the table above).
pub const READY: &str = "Ready";
/// Condition: the controller is working towards the desired state (a build is running).
pub const RECONCILING: &str = "Reconciling";
/// Condition: the controller cannot make progress without a change from the user.
pub const STALLED: &str = "Stalled";
/// Condition: the last probe or fetch of the repository failed.
pub const FETCH_FAILED: &str = "FetchFailed";
/// Condition: the last build failed.
pub const BUILD_FAILED: &str = "BuildFailed";

/// Reasons carried by conditions and by the Events emitted on a Pipeline.
pub mod reason {
    /// The build of the newest commit succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The spec was accepted and the first poll is pending.
    pub const PROGRESSING: &str = "Progressing";
    /// A builder Pod was created for a commit.
    pub const BUILD_STARTED: &str = "BuildStarted";
    /// A build finished successfully.
    pub const BUILD_SUCCEEDED: &str = "BuildSucceeded";
    /// A build exited non-zero or its Pod failed.
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// A running build was cancelled.
    pub const BUILD_CANCELLED: &str = "BuildCancelled";
    /// A commit was superseded before it was built.
    pub const BUILD_SKIPPED: &str = "BuildSkipped";
    /// A build ran past `spec.timeout`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Probing or fetching the repository failed.
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// The spec failed validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The Secret named by `spec.secretRef` is missing or lacks the expected keys.
    pub const INVALID_SECRET: &str = "InvalidSecret";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// The builder Pod's init container could not download or unpack the source.
    pub const SOURCE_FETCH_FAILED: &str = "SourceFetchFailed";
    /// The builder Pod of a running build disappeared.
    pub const POD_DELETED: &str = "PodDeleted";
    /// The API server refused the builder Pod.
    pub const POD_CREATE_FAILED: &str = "PodCreateFailed";
    /// A newer commit replaced a running build (`concurrencyPolicy: Replace`).
    pub const REPLACED: &str = "Replaced";
    /// A newer commit superseded a commit that was waiting (`concurrencyPolicy: Forbid`).
    pub const SUPERSEDED: &str = "Superseded";
}

/// The three values of a condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known yet whether the condition holds.
    Unknown,
}

impl ConditionStatus {
    /// The string Kubernetes uses for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Sets condition `type_` in `conditions`, adding it if absent. `lastTransitionTime` changes only when
/// the status flips, so a repeated reconcile does not look like a new transition. Returns whether
/// anything in the list changed (the caller writes status only then).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let wanted = Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time: now.clone(),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        None => {
            conditions.push(wanted);
            true
        }
        Some(existing) => {
            let flipped = existing.status != wanted.status;
            let changed = flipped
                || existing.reason != wanted.reason
                || existing.message != wanted.message
                || existing.observed_generation != wanted.observed_generation;
            if changed {
                let since = if flipped {
                    wanted.last_transition_time.clone()
                } else {
                    existing.last_transition_time.clone()
                };
                *existing = Condition {
                    last_transition_time: since,
                    ..wanted
                };
            }
            changed
        }
    }
}

/// Removes condition `type_`; returns whether it was present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            reason::PROGRESSING,
            "polling",
            Some(1),
            &at(10)
        ));
        assert!(!set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            reason::PROGRESSING,
            "polling",
            Some(1),
            &at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));

        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            reason::BUILD_FAILED,
            "exit 1",
            Some(1),
            &at(30)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            at(10),
            "a new reason alone is not a transition"
        );
        assert_eq!(conditions[0].reason, reason::BUILD_FAILED);

        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            reason::SUCCEEDED,
            "built",
            Some(1),
            &at(40)
        ));
        assert_eq!(conditions[0].last_transition_time, at(40));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn remove_and_find() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            STALLED,
            true.into(),
            reason::INVALID_SPEC,
            "bad",
            None,
            &at(1),
        );
        assert_eq!(
            find_condition(&conditions, STALLED).map(|c| c.status.as_str()),
            Some("True")
        );
        assert!(remove_condition(&mut conditions, STALLED));
        assert!(!remove_condition(&mut conditions, STALLED));
        assert!(find_condition(&conditions, STALLED).is_none());
    }
}
