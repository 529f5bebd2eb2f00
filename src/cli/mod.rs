//! The `cdkube` command line: one module per subcommand, each holding its clap arguments and its
//! printing. The work itself lives in the library module named after its concept (`api`, `git`,
//! `embedded`); these modules only turn arguments into calls and results into output and exit codes.
//!
//! A new subcommand is a new file here and one variant of [`Command`].
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod crd;
mod dev;
mod probe;
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
        }
    }
}
