//! The `cdkube` command line. Each subcommand's work lives in the module named after its concept;
//! this file only parses arguments and maps results to exit codes.
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Check Pipeline manifests offline: schema, durations, cron, URLs and referenced Secrets.
    Validate(ValidateArgs),
    /// Print the cdkube version.
    Version,
    /// Resolve a repository branch's head and print `<branch>@sha1:<sha>` and the commit subject.
    Probe(cdkube::git::cli::ProbeArgs),
}

#[derive(Args)]
struct ValidateArgs {
    /// Manifest files (multi-document YAML); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<String>,
    /// Accept file:// and local-path repositories, as `cdkube dev` does.
    #[arg(long)]
    allow_local: bool,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    cdkube::telemetry::init();
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", cdkube::api::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => validate(args),
        Command::Version => {
            println!("cdkube {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Probe(args) => cdkube::git::cli::probe(args),
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    let options = cdkube::api::validation::Options { allow_local_repos: args.allow_local };
    let entries = cdkube::api::manifest::check_files(&args.files, options);
    let mut failed = false;
    for entry in &entries {
        if entry.is_ok() {
            if !args.quiet {
                println!("{entry}");
            }
        } else {
            failed = true;
            eprintln!("{entry}");
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
