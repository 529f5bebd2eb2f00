//! Cordoning, as the scheduler respects it: while the runner's Node has `spec.unschedulable`
//! (`kubectl cordon`), new Pods stay Pending and unbound (with a FailedScheduling Event); they are
//! bound once it is cleared. Pods already bound keep running. A missing Node takes Pods.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

/// The node's schedulability, with the resourceVersion it was read at: a read never replaces a
/// newer one (the Node watch and the check before each binding race).
#[derive(Clone)]
pub(super) struct Schedulable {
    tx: Arc<watch::Sender<(u64, bool)>>,
}

impl Schedulable {
    /// Schedulable until the Node says otherwise.
    pub(super) fn new() -> Self {
        Schedulable {
            tx: Arc::new(watch::channel((0, true)).0),
        }
    }

    /// Records what a Node at `rv` says (`None`: the Node is gone).
    fn observe(&self, node: Option<&Node>) {
        let (rv, schedulable) = match node {
            Some(n) => (
                n.metadata
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            ),
            None => (0, true),
        };
        self.tx.send_if_modified(|cur| {
            let newer = rv == 0 || rv >= cur.0;
            let changed = newer && *cur != (rv.max(cur.0), schedulable);
            if changed {
                *cur = (rv.max(cur.0), schedulable);
            }
            changed
        });
    }

    /// Reads the Node now (a failed read keeps what the watch said).
    pub(super) async fn refresh(&self, client: &Client, node: &str) {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.get_opt(node).await {
            Ok(found) => self.observe(found.as_ref()),
            Err(e) => tracing::debug!(%node, "reading the Node: {e}"),
        }
    }

    /// Whether the node takes new Pods now.
    pub(super) fn now(&self) -> bool {
        self.tx.borrow().1
    }

    /// Waits until the node takes new Pods.
    pub(super) async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|(_, s)| *s).await;
    }
}

/// Follows the Node `name` until `stop` fires.
pub(super) async fn watch_node(client: Client, state: Schedulable, name: String, mut stop: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(nodes, config).default_backoff();
    tokio::pin!(stream);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            event = stream.next() => match event {
                Some(Ok(Event::Apply(node) | Event::InitApply(node))) => state.observe(Some(&node)),
                Some(Ok(Event::Delete(_))) => state.observe(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(node = %name, "node watch: {e}"),
                None => return,
            },
        }
    }
}
