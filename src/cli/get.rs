//! `cdkube get [NAME]`: Pipelines with the last built commit, version, phase, age and how they poll.
use std::process::ExitCode;

use cdkube::api::Pipeline;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::cluster::{self, Output, Scope};

/// Arguments of `cdkube get`.
#[derive(clap::Args)]
pub(crate) struct GetArgs {
    /// One Pipeline; all of the namespace when omitted.
    name: Option<String>,
    /// Pipelines of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    scope: Scope,
}

pub(super) fn run(args: GetArgs) -> ExitCode {
    cluster::run_async("get", get(args))
}

async fn get(args: GetArgs) -> Result<ExitCode, String> {
    let cluster = args.scope.connect().await?;
    let pipelines = match (&args.name, args.all_namespaces) {
        (Some(_), true) => return Err("a NAME cannot be combined with --all-namespaces".into()),
        (Some(name), false) => vec![cluster.pipeline(name).await?],
        (None, all) => {
            let api: Api<Pipeline> = if all {
                Api::all(cluster.client.clone())
            } else {
                cluster.pipelines()
            };
            api.list(&ListParams::default())
                .await
                .map_err(|e| cluster::api_error(&e))?
                .items
        }
    };
    match args.output {
        Output::Yaml => print!(
            "{}",
            serde_yaml::to_string(&list(&pipelines)).map_err(|e| e.to_string())?
        ),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&list(&pipelines)).map_err(|e| e.to_string())?
        ),
        Output::Table if pipelines.is_empty() => {
            eprintln!("No Pipelines found in namespace {}.", cluster.namespace);
        }
        Output::Table => print!("{}", render(&pipelines, args.all_namespaces)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One object as itself, several as a `List`, as kubectl prints them.
fn list(pipelines: &[Pipeline]) -> serde_json::Value {
    match pipelines {
        [one] => serde_json::to_value(one).unwrap_or_default(),
        many => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": many}),
    }
}

fn render(pipelines: &[Pipeline], with_namespace: bool) -> String {
    let mut header = vec!["NAME", "COMMIT", "VERSION", "PHASE", "AGE", "POLL"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = pipelines
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let or_none = |v: Option<String>| v.unwrap_or_else(|| "<none>".into());
            let mut row = vec![
                p.name_any(),
                or_none(status.built_short_commit),
                or_none(status.target_version),
                or_none(status.phase.map(|ph| format!("{ph:?}"))),
                cluster::age(p.creation_timestamp().map(|t| t.0)),
                poll(p),
            ];
            if with_namespace {
                row.insert(0, p.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    cluster::table(&header, &rows)
}

/// How the Pipeline polls: `every 1m`, the cron expression, or `suspended`. (The operator keeps the
/// exact next poll time to itself: writing it would cost an API write per poll.)
fn poll(p: &Pipeline) -> String {
    if p.spec.suspended() {
        return "suspended".into();
    }
    match &p.spec.schedule {
        Some(cron) => format!("cron {cron}"),
        None => format!("every {}", humantime::format_duration(p.spec.interval())),
    }
}
