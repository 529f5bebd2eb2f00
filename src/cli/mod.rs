//! The `cdkube` command line: one module per subcommand, each holding its clap arguments and its
//! printing. The work itself lives in the library module named after its concept (`api`, `git`,
//! `artifact`, `controller`, `embedded`); these modules only turn arguments into calls and results into output and exit codes.
//!
//! A new subcommand is a new file here and one variant of [`Command`].
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster;
mod crd;
mod dev;
mod fetch_source;
mod get;
mod history;
mod logs;
mod node;
mod probe;
mod run;
mod suspend;
mod trigger;
mod validate;
mod version;

/// The parsed command line.
#[derive(Parser)]
#[command(
    name = "cdkube",
    version,
    about = "CD³: build every new Git commit in a Kubernetes Pod"
)]
pub(crate) struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// One variant per subcommand module.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Print the Pipeline CustomResourceDefinition generated from the API types.
    Crd,
    /// Check Pipeline manifests offline: schema, durations, cron, URLs and referenced Secrets.
    Validate(validate::ValidateArgs),
    /// Run a local control plane: API server, Pipeline CRD and pod runner, until Ctrl-C.
    Dev(dev::DevArgs),
    /// Print the cdkube version.
    Version,
    /// Resolve a repository branch's head and print `<branch>@sha1:<sha>` and the commit subject.
    Probe(probe::ProbeArgs),
    /// Run the operator: poll Pipelines' repositories and build each new commit in a builder Pod.
    Run(Box<run::RunArgs>),
    /// List Pipelines: last built commit, version, phase, age, and how each polls.
    Get(get::GetArgs),
    /// Print a Pipeline's runs, newest first: commit, version, trigger, phase, duration, author, subject.
    History(history::HistoryArgs),
    /// Ask for a build now and follow it until it ends; the exit code is the build's.
    Trigger(trigger::TriggerArgs),
    /// Print the build output of a Pipeline's newest run (or `--run N`).
    Logs(logs::LogsArgs),
    /// Stop polling and building a Pipeline (a running build finishes).
    Suspend(suspend::SuspendArgs),
    /// Poll and build a suspended Pipeline again.
    Resume(suspend::SuspendArgs),
    /// Serve as a node of a Kubernetes API server: register a Node, run its Pods as local processes.
    Node(node::NodeArgs),
    /// Download an artifact by its signed URL, verify its digest and extract it (a builder Pod's init step).
    FetchSource(fetch_source::FetchSourceArgs),
}

impl Command {
    /// Runs the subcommand; the exit code says whether it succeeded.
    pub(crate) fn run(self) -> ExitCode {
        match self {
            Command::Crd => crd::run(),
            Command::Validate(args) => validate::run(args),
            Command::Dev(args) => dev::run(args),
            Command::Version => version::run(),
            Command::Probe(args) => probe::run(args),
            Command::Run(args) => run::run(*args),
            Command::FetchSource(args) => fetch_source::run(args),
            Command::Node(args) => node::run(args),
            Command::Get(args) => get::run(args),
            Command::History(args) => history::run(args),
            Command::Trigger(args) => trigger::run(args),
            Command::Logs(args) => logs::run(args),
            Command::Suspend(args) => suspend::run(args, true),
            Command::Resume(args) => suspend::run(args, false),
        }
    }

    /// How this subcommand logs: `run` has `--log-format`; every other command logs text.
    pub(crate) fn log_format(&self) -> cdkube::telemetry::LogFormat {
        match self {
            Command::Run(args) => args.log_format.into(),
            _ => cdkube::telemetry::LogFormat::Text,
        }
    }
}
