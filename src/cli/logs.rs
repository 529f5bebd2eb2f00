//! `cdkube logs NAME [--run N] [-f]`: the build output of a run's builder Pod (the newest run by default).
use std::io::Write;
use std::process::ExitCode;

use cdkube::controller::pod::BUILD_CONTAINER;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

use super::cluster::{self, Scope};

/// Arguments of `cdkube logs`.
#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    /// The Pipeline.
    name: String,
    /// The run (see `cdkube history`); the newest when omitted.
    #[arg(long)]
    run: Option<i64>,
    /// Keep printing until the build ends.
    #[arg(short = 'f', long)]
    follow: bool,
    #[command(flatten)]
    scope: Scope,
}

pub(super) fn run(args: LogsArgs) -> ExitCode {
    cluster::run_async("logs", logs(args))
}

async fn logs(args: LogsArgs) -> Result<ExitCode, String> {
    let cluster = args.scope.connect().await?;
    let pipeline = cluster.pipeline(&args.name).await?;
    let history = pipeline.status.map(|s| s.history).unwrap_or_default();
    let run = match args.run {
        Some(n) => history.iter().find(|r| r.run == n).ok_or_else(|| {
            format!(
                "Pipeline {} has no run {n} in its history; see `cdkube history {}`",
                args.name, args.name
            )
        })?,
        None => history
            .first()
            .ok_or_else(|| format!("Pipeline {} has no runs yet", args.name))?,
    };
    let pod = run
        .pod
        .clone()
        .ok_or_else(|| format!("run {} never had a builder Pod ({:?})", run.run, run.phase))?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let params = LogParams {
        container: Some(BUILD_CONTAINER.into()),
        follow: args.follow,
        ..LogParams::default()
    };
    let stream = pods.log_stream(&pod, &params).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 404 => {
            format!(
                "the builder Pod {pod} of run {} is gone (kept Pods follow historyLimit)",
                run.run
            )
        }
        _ => cluster::api_error(&e),
    })?;
    let mut lines = stream.lines();
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.try_next().await.map_err(|e| format!("reading the log: {e}"))? {
        writeln!(stdout, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
