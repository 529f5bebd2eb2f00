//! The `cdkube` command line. Each subcommand's work lives in the module named after its concept;
//! this file only parses arguments and maps results to exit codes.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cdkube", version, about = "CD³: build every new Git commit in a Kubernetes Pod")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Pipeline CustomResourceDefinition generated from the API types.
    Crd,
    /// Print the cdkube version.
    Version,
    /// Resolve a repository branch's head and print `<branch>@sha1:<sha>` and the commit subject.
    Probe(cdkube::git::cli::ProbeArgs),
}

fn main() -> ExitCode {
    cdkube::telemetry::init();
    match Cli::parse().command {
        Command::Crd => todo!(),
        Command::Version => {
            println!("cdkube {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Probe(args) => cdkube::git::cli::probe(args),
    }
}
