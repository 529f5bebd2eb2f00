//! `cdkube node`: the pod runner as a node of any Kubernetes API server, until SIGTERM or Ctrl-C.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cdkube::embedded::node::{NodeAgent, NodeConfig};
use cdkube::embedded::runner::RunnerConfig;

/// Arguments of `cdkube node`.
#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// The kubeconfig to reach the API server with (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The Node's name.
    #[arg(long, default_value = cdkube::embedded::runner::DEFAULT_NODE_NAME)]
    name: String,
    /// Run only Pods of this namespace (default: all). The agent binds every unbound Pod it sees, so
    /// on a cluster with a scheduler give it a namespace of its own.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Directory for Pod workspaces and logs.
    #[arg(long, default_value = ".cdkube-node")]
    state_dir: PathBuf,
    /// Address of the kubelet endpoint the API server calls for `kubectl logs`.
    #[arg(long, default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
}

/// Runs the agent; exit 0 after a graceful stop, 1 with a one-line error otherwise.
pub(super) fn run(args: NodeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting the async runtime: {e}")),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn serve(args: NodeArgs) -> Result<(), String> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let bin = std::env::current_exe().map_err(|e| format!("locating the cdkube binary: {e}"))?;
    let mut runner = RunnerConfig::new(&args.state_dir, bin);
    runner.node_name = args.name;
    runner.namespace = args.namespace;
    let stop = cdkube::controller::shutdown_signal().map_err(|e| format!("installing signal handlers: {e}"))?;
    let config = NodeConfig {
        runner,
        listen: args.listen,
    };
    let agent = NodeAgent::start(client, config).await.map_err(|e| e.to_string())?;
    eprintln!(
        "cdkube node: serving as a node, kubelet endpoint https://{}",
        agent.kubelet_addr()
    );
    stop.await;
    agent.shutdown().await;
    Ok(())
}

async fn client(path: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = super::cluster::kube_config(path).await?;
    kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cdkube node: {message}");
    ExitCode::FAILURE
}
