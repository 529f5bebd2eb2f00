//! `cdkube suspend NAME` and `cdkube resume NAME`: set `spec.suspend` (a running build is left to finish).
use std::process::ExitCode;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::cluster::{self, Scope};

/// Arguments of `cdkube suspend` and `cdkube resume`.
#[derive(clap::Args)]
pub(crate) struct SuspendArgs {
    /// The Pipeline.
    name: String,
    #[command(flatten)]
    scope: Scope,
}

/// Sets `spec.suspend` to `suspend`.
pub(super) fn run(args: SuspendArgs, suspend: bool) -> ExitCode {
    let command = if suspend { "suspend" } else { "resume" };
    cluster::run_async(command, set(args, suspend))
}

async fn set(args: SuspendArgs, suspend: bool) -> Result<ExitCode, String> {
    let cluster = args.scope.connect().await?;
    cluster.pipeline(&args.name).await?;
    let patch = json!({"spec": {"suspend": suspend}});
    cluster
        .pipelines()
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| cluster::api_error(&e))?;
    let done = if suspend { "suspended" } else { "resumed" };
    println!("pipeline.delivery.inge.4pr.es/{} {done}", args.name);
    Ok(ExitCode::SUCCESS)
}
