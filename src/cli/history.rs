//! `cdkube history NAME`: a Pipeline's runs from its status, newest first — the audit trail as a
//! person reads it.
use std::process::ExitCode;

use cdkube::api::Run;

use super::cluster::{self, Scope};

/// Arguments of `cdkube history`.
#[derive(clap::Args)]
pub(crate) struct HistoryArgs {
    /// The Pipeline.
    name: String,
    #[command(flatten)]
    scope: Scope,
}

pub(super) fn run(args: HistoryArgs) -> ExitCode {
    cluster::run_async("history", history(args))
}

async fn history(args: HistoryArgs) -> Result<ExitCode, String> {
    let cluster = args.scope.connect().await?;
    let pipeline = cluster.pipeline(&args.name).await?;
    let runs = pipeline.status.map(|s| s.history).unwrap_or_default();
    if runs.is_empty() {
        eprintln!("Pipeline {} has no runs yet.", args.name);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&runs));
    Ok(ExitCode::SUCCESS)
}

fn render(runs: &[Run]) -> String {
    let header = [
        "RUN", "COMMIT", "VERSION", "TRIGGER", "PHASE", "DURATION", "AUTHOR", "SUBJECT",
    ];
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run.to_string(),
                r.short_commit.clone(),
                r.target_version.clone(),
                serde_json::to_value(r.trigger)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                format!("{:?}", r.phase),
                duration(r),
                r.author.clone().unwrap_or_default(),
                r.subject.clone().unwrap_or_default(),
            ]
        })
        .collect();
    cluster::table(&header, &rows)
}

/// Start to completion, or to now for a run still going; `-` before it started.
fn duration(r: &Run) -> String {
    let Some(start) = &r.start_time else { return "-".into() };
    let end = r
        .completion_time
        .as_ref()
        .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
    let secs = end.duration_since(start.0).as_secs().max(0) as u64;
    cluster::short_duration(std::time::Duration::from_secs(secs))
}
