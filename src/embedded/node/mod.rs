//! The node agent (`cdkube node`): the local pod runner as a node of any Kubernetes API server, a
//! real kube-apiserver included. Besides running Pods as the runner does, it does what a kubelet
//! does for the API server:
//! - registers a Node (Ready condition, InternalIP, capacity, kubelet port) and keeps it alive with
//!   a Lease in `kube-node-lease` (`registration`);
//! - serves kubelet's container-log endpoint over HTTPS, so `kubectl logs` works through the API
//!   server (`kubelet_api`, whose docs list the deviations from kubelet).
//!
//! The runner's own deviations (processes instead of containers, no image pulls…) are in
//! [`runner`](super::runner). The agent plays the scheduler too: it binds every Pod it watches
//! that names no node, so on a cluster with a scheduler limit it to a namespace of its own.
mod kubelet_api;
mod registration;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::runner::{self, Runner, RunnerConfig};
use super::tls;

/// What can stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubelet endpoint could not listen.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The serving certificate could not be made.
    #[error("serving certificate: {0}")]
    Tls(String),
    /// The Node could not be registered.
    #[error("registering Node {node}: {source}")]
    Register {
        /// The Node's name.
        node: String,
        /// The API error.
        source: kube::Error,
    },
    /// The pod runner could not start.
    #[error(transparent)]
    Runner(#[from] runner::Error),
}

/// How the agent is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The pod runner's settings; its `node_name` is the Node's name.
    pub runner: RunnerConfig,
    /// Where the kubelet endpoint listens (port 0 for any free port).
    pub listen: SocketAddr,
}

/// A running node agent. Dropping it aborts everything without stopping Pod processes (as a crash
/// would); [`NodeAgent::shutdown`] stops them first.
pub struct NodeAgent {
    runner: Option<Runner>,
    kubelet_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeAgent {
    /// Starts the kubelet endpoint, registers the Node, then starts the heartbeat and the runner.
    pub async fn start(client: Client, config: NodeConfig) -> Result<NodeAgent, Error> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let kubelet_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let facts = registration::NodeFacts {
            name: config.runner.node_name.clone(),
            address: advertised_ip(kubelet_addr),
            port: kubelet_addr.port(),
        };
        let node = registration::register(&client, &facts)
            .await
            .map_err(|source| Error::Register {
                node: facts.name.clone(),
                source,
            })?;
        let (stop, stop_rx) = watch::channel(false);
        let certs = tls::generate(&facts.name).map_err(|e| Error::Tls(e.to_string()))?;
        let api = Arc::new(kubelet_api::KubeletApi {
            client: client.clone(),
            state_dir: config.runner.state_dir.clone(),
            stop: stop_rx.clone(),
        });
        let router = kubelet_api::router(api);
        let serve = tls::serve(listener, certs.acceptor, router, Default::default(), stop_rx.clone());
        let beat = heartbeat(client.clone(), facts, node, stop_rx);
        // The agent registers its Node itself (with the kubelet endpoint's address and port).
        let mut runner_config = config.runner;
        runner_config.register_node = false;
        let runner = Runner::start(client, runner_config)?;
        tracing::info!(%kubelet_addr, "node agent ready");
        Ok(NodeAgent {
            runner: Some(runner),
            kubelet_addr,
            stop,
            tasks: vec![tokio::spawn(serve), tokio::spawn(beat)],
        })
    }

    /// Where the kubelet endpoint listens.
    pub fn kubelet_addr(&self) -> SocketAddr {
        self.kubelet_addr
    }

    /// Stops the Pod processes, the heartbeat and the endpoint; the Node object stays (as a
    /// stopped kubelet's does) and turns NotReady once its Lease expires, if a node controller runs.
    pub async fn shutdown(mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The InternalIP the API server should call: the listening address, or loopback for a wildcard.
fn advertised_ip(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "127.0.0.1".into()
    } else {
        addr.ip().to_string()
    }
}

/// Registers Node `name` for a runner without a kubelet endpoint (`cdkube dev`'s: address
/// 127.0.0.1, port 0), retrying every second until it succeeds, then keeps its heartbeat until
/// `stop` fires.
pub(crate) async fn keep_registered(client: Client, name: String, mut stop: watch::Receiver<bool>) {
    let facts = registration::NodeFacts {
        name,
        address: "127.0.0.1".into(),
        port: 0,
    };
    let node = loop {
        match registration::register(&client, &facts).await {
            Ok(node) => break node,
            Err(e) => tracing::warn!(node = %facts.name, "registering the Node: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    };
    heartbeat(client, facts, node, stop).await
}

/// Renews the Lease every [`registration::LEASE_RENEW`] and refreshes the Node's status every
/// [`registration::STATUS_REFRESH`] until `stop` fires. Failures are logged and retried at the
/// next tick: a missed beat is what a Lease tolerates.
async fn heartbeat(
    client: Client,
    facts: registration::NodeFacts,
    mut node: k8s_openapi::api::core::v1::Node,
    mut stop: watch::Receiver<bool>,
) {
    let mut lease = tokio::time::interval(registration::LEASE_RENEW);
    let mut status = tokio::time::interval(registration::STATUS_REFRESH);
    status.tick().await; // registration just wrote it
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = registration::renew_lease(&client, &node).await {
                    tracing::warn!(node = %facts.name, "renewing the node Lease: {e}");
                }
            }
            _ = status.tick() => match registration::report_status(&client, &facts).await {
                Ok(n) => node = n,
                Err(e) => tracing::warn!(node = %facts.name, "reporting node status: {e}"),
            },
            _ = stop.changed() => return,
        }
    }
}
