//! Leader election: with several `cdkube run` replicas, exactly one — the holder of a Lease — reconciles,
//! polls, receives webhooks and serves artifacts; the others wait and take over when its Lease expires.
//!
//! The leader labels its own Pod `delivery.inge.4pr.es/leader=<Lease name>` (and takes the label off
//! the previous leader's Pod), so a Service selecting that label sends builder Pods and webhooks to the
//! leader only. A stopping leader releases its Lease as soon as it stops reconciling. A replica that
//! loses its Lease exits at once with status 1, as controller-runtime's managers do: another replica
//! may already be working, and its restart campaigns again from a clean state. A shard
//! (`--label-selector`) or a namespace-scoped operator uses a Lease of its own, so shards never contend.
//!
//! Deviation from client-go's leader election: there is no renew deadline. kube-lease-manager keeps
//! a leader leading while its renewals fail (the API server unreachable), so during an API outage
//! longer than the Lease duration two replicas may both work; every status write is still guarded by
//! resourceVersion, and a builder Pod's deterministic name makes a second creation an adoption.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::{Options, StartError};
use crate::telemetry::Leadership;

/// The label the leader puts on its own Pod.
pub const LEADER_LABEL: &str = "delivery.inge.4pr.es/leader";
/// The Lease name of an operator watching every Pipeline.
pub const LEASE_NAME: &str = "cdkube-leader";

/// How a replica campaigns.
#[derive(Debug, Clone)]
pub struct Election {
    /// The namespace of the Lease (and of the replicas' Pods).
    pub namespace: String,
    /// This replica's identity in the Lease (its Pod name on a cluster).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// This replica's Pod, to label when it leads; `None` outside a Pod.
    pub pod: Option<String>,
}

/// The Lease name for a watch scope: [`LEASE_NAME`], with a digest of the namespace and label selector
/// when either narrows the scope (`cdkube-leader-3f2a9c0d1e`).
pub fn lease_name(namespace: Option<&str>, label_selector: Option<&str>) -> String {
    if namespace.is_none() && label_selector.is_none() {
        return LEASE_NAME.to_owned();
    }
    let scope = format!("{}\n{}", namespace.unwrap_or(""), label_selector.unwrap_or(""));
    let digest = hex::encode(Sha256::digest(scope.as_bytes()));
    format!("{LEASE_NAME}-{}", &digest[..10])
}

/// Runs the operator (see [`super::run`]) once this replica holds the Lease, until `shutdown`; a
/// shutdown while waiting returns at once. Losing the Lease ends the process with status 1.
pub async fn run_elected(
    client: Client,
    options: Options,
    election: Election,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let health = options.health.clone();
    let metrics = options.metrics.clone();
    let name = lease_name(options.namespace.as_deref(), options.label_selector.as_deref());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &election.namespace);
    if let Some(pod) = &election.pod {
        set_leader_label(&pods, pod, None).await;
    }
    let seconds = election.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .with_field_manager(format!("cdkube-election-{}", election.identity))
        .build()
        .await
        .map_err(|e| StartError::Election(e.to_string()))?;
    let (mut leading, task) = manager.watch().await;
    health.set_leadership(Leadership::Follower);
    tracing::info!(lease = %format!("{}/{name}", election.namespace), identity = %election.identity, "campaigning for the Lease");
    let mut shutdown = Box::pin(shutdown);
    let won = tokio::select! {
        won = leading.wait_for(|l| *l) => Some(won.is_ok()),
        () = &mut shutdown => None,
    };
    match won {
        Some(true) => {}
        Some(false) => return Err(StartError::Election("the Lease watch stopped".into())),
        None => {
            drop(leading);
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, task).await;
            return Ok(());
        }
    }
    tracing::info!(identity = %election.identity, "leading: this replica reconciles");
    health.set_leadership(Leadership::Leader);
    metrics.leader.set(1);
    if let Some(pod) = &election.pod {
        take_leader_label(&pods, pod, &name).await;
    }
    let mut options = options;
    let stopped = Arc::new(Notify::new());
    options.reconciling_stopped = Some(Arc::clone(&stopped));
    let mut watch = leading.clone();
    let lease = format!("{}/{name}", election.namespace);
    let stop = async move {
        tokio::select! {
            _ = watch.wait_for(|l| !*l) => {
                // Another replica may be working already: stop now, not after a graceful drain.
                tracing::error!("lost the Lease {lease}; exiting so that a restart campaigns again");
                std::process::exit(1);
            }
            () = shutdown => {}
        }
    };
    // The Lease is released as soon as reconciling stops, before the servers drain, so a standby
    // takes over while this replica finishes its downloads.
    let release = async move {
        stopped.notified().await;
        metrics.leader.set(0);
        drop(leading);
        let _ = tokio::time::timeout(RELEASE_TIMEOUT, task).await;
    };
    let (result, ()) = tokio::join!(super::run(client, options, stop), release);
    result
}

/// How long releasing the Lease may take at exit.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Labels `pod` as the leader of Lease `lease` (the label's value, so shards sharing a namespace keep
/// theirs apart) and takes the label off every other Pod of the namespace that has it for that Lease.
async fn take_leader_label(pods: &Api<Pod>, pod: &str, lease: &str) {
    set_leader_label(pods, pod, Some(lease)).await;
    let selector = format!("{LEADER_LABEL}={lease}");
    match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => {
            for other in list.items.iter().filter_map(|p| p.metadata.name.as_deref()) {
                if other != pod {
                    set_leader_label(pods, other, None).await;
                }
            }
        }
        Err(e) => tracing::warn!("listing Pods labelled {selector}: {e}"),
    }
}

/// Sets the leader label of `pod` to `lease` (or removes it); a failure is logged: the Service then
/// misroutes until the next leader change, which the artifact server's rebuild also covers.
async fn set_leader_label(pods: &Api<Pod>, pod: &str, lease: Option<&str>) {
    let patch = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: lease}}});
    match pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 && lease.is_none() => {}
        Err(e) => tracing::warn!(pod, "setting the leader label: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_has_its_own_lease() {
        assert_eq!(lease_name(None, None), "cdkube-leader");
        let a = lease_name(None, Some("shard=a"));
        let b = lease_name(None, Some("shard=b"));
        let ns = lease_name(Some("team"), None);
        assert!(a.starts_with("cdkube-leader-") && a.len() == "cdkube-leader-".len() + 10);
        assert!(a != b && a != ns && b != ns);
        assert_eq!(a, lease_name(None, Some("shard=a")), "stable across restarts");
    }
}
