//! `cdkube trigger NAME`: ask for a build now (the `delivery.inge.4pr.es/requested-at` annotation,
//! as `flux reconcile` does), then follow the run it caused until it ends. The exit code is the
//! build's: 0 when it succeeded, 1 otherwise.
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use cdkube::api::{Pipeline, REQUESTED_AT_ANNOTATION, Run, RunPhase};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::cluster::{self, Cluster, Scope};

/// Arguments of `cdkube trigger`.
#[derive(clap::Args)]
pub(crate) struct TriggerArgs {
    /// The Pipeline.
    name: String,
    /// How long to wait for the operator and the build, as a duration such as `10m`.
    #[arg(long, default_value = "35m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Ask for the build and return at once, without following it.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    scope: Scope,
}

/// How often the Pipeline is read while following.
const POLL: Duration = Duration::from_millis(500);
/// How long the operator may take to act on the request before we say it seems absent.
const PICKUP: Duration = Duration::from_secs(60);

pub(super) fn run(args: TriggerArgs) -> ExitCode {
    cluster::run_async("trigger", trigger(args))
}

async fn trigger(args: TriggerArgs) -> Result<ExitCode, String> {
    let cluster = args.scope.connect().await?;
    let before = cluster.pipeline(&args.name).await?;
    if before.spec.suspended() {
        return Err(format!(
            "Pipeline {0} is suspended; `cdkube resume {0}` first",
            args.name
        ));
    }
    let last_run = before
        .status
        .as_ref()
        .and_then(|s| s.history.first())
        .map_or(0, |r| r.run);
    let requested = Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map_err(|e| e.to_string())?
        .to_string();
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: requested}}});
    cluster
        .pipelines()
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| cluster::api_error(&e))?;
    println!(
        "pipeline.delivery.inge.4pr.es/{} build requested at {requested}",
        args.name
    );
    if args.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + args.timeout;
    let run = wait_for_run(&cluster, &args.name, last_run, deadline).await?;
    follow(&cluster, &args.name, run, deadline).await
}

/// The run the request caused: the first one numbered after `last_run`.
async fn wait_for_run(
    cluster: &Cluster,
    name: &str,
    last_run: i64,
    deadline: tokio::time::Instant,
) -> Result<i64, String> {
    let pickup = tokio::time::Instant::now() + PICKUP;
    loop {
        let pipeline = cluster.pipeline(name).await?;
        if let Some(run) = runs(&pipeline).iter().rev().find(|r| r.run > last_run) {
            return Ok(run.run);
        }
        let now = tokio::time::Instant::now();
        if now > deadline || now > pickup {
            return Err(format!(
                "no run started within {}s of the request; is the operator (`cdkube run`) running?",
                PICKUP.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the run's phase changes until it ends; the exit code follows its result.
async fn follow(cluster: &Cluster, name: &str, n: i64, deadline: tokio::time::Instant) -> Result<ExitCode, String> {
    let mut progress = Progress::new();
    loop {
        let pipeline = cluster.pipeline(name).await?;
        let Some(run) = runs(&pipeline).into_iter().find(|r| r.run == n) else {
            return Err(format!("run {n} left the history before it ended (historyLimit)"));
        };
        progress.show(&run);
        match run.phase {
            RunPhase::Pending | RunPhase::Building => {}
            RunPhase::Succeeded => return Ok(ExitCode::SUCCESS),
            _ => return Ok(ExitCode::FAILURE),
        }
        if tokio::time::Instant::now() > deadline {
            progress.finish();
            return Err(format!(
                "run {n} is still {:?} after the --timeout; it goes on in the cluster",
                run.phase
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn runs(pipeline: &Pipeline) -> Vec<Run> {
    pipeline.status.as_ref().map(|s| s.history.clone()).unwrap_or_default()
}

/// Progress output: on a terminal one line redrawn with a spinner; otherwise one line per change.
struct Progress {
    terminal: bool,
    last: Option<String>,
    tick: usize,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stdout().is_terminal(),
            last: None,
            tick: 0,
        }
    }

    fn show(&mut self, run: &Run) {
        let line = describe(run);
        let done = !matches!(run.phase, RunPhase::Pending | RunPhase::Building);
        let mut out = std::io::stdout().lock();
        if self.terminal {
            const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
            self.tick += 1;
            let mark = if done { ' ' } else { SPINNER[self.tick % SPINNER.len()] };
            let _ = write!(out, "\r\x1b[2K{mark} {line}");
            if done {
                let _ = writeln!(out);
            }
        } else if self.last.as_deref() != Some(line.as_str()) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        self.last = Some(line);
    }

    fn finish(&mut self) {
        if self.terminal {
            println!();
        }
    }
}

/// `run 3 (commit abc1234, version 1.0, trigger manual): Building in Pod p`, with the reason once it failed.
fn describe(run: &Run) -> String {
    let trigger = serde_json::to_value(run.trigger)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!(
        "run {} (commit {}, version {}, trigger {trigger}): {:?}",
        run.run, run.short_commit, run.target_version, run.phase
    );
    if let Some(pod) = &run.pod {
        line.push_str(&format!(" in Pod {pod}"));
    }
    if let Some(message) = run.message.as_ref().filter(|_| run.phase != RunPhase::Succeeded) {
        line.push_str(&format!(": {message}"));
    }
    line
}
