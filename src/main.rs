//! The `cdkube` command line. Each subcommand's work lives in the module named after its concept;
//! this file only parses arguments and maps results to exit codes.
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod run_cli;

#[derive(Parser)]
#[command(
    name = "cdkube",
    version,
    about = "CD³: build every new Git commit in a Kubernetes Pod"
)]
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
    /// Run a local control plane: API server, Pipeline CRD and pod runner, until Ctrl-C.
    Dev(DevArgs),
    /// Print the cdkube version.
    Version,
    /// Run the operator: poll Pipelines' repositories and build each new commit in a builder Pod.
    Run(run_cli::RunArgs),
    /// Resolve a repository branch's head and print `<branch>@sha1:<sha>` and the commit subject.
    Probe(cdkube::git::cli::ProbeArgs),
    /// Download an artifact by its signed URL, verify its digest and extract it (a builder Pod's init step).
    FetchSource(FetchSourceArgs),
}

#[derive(Args)]
struct DevArgs {
    /// API server port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory for the kubeconfig, Pod workspaces and logs.
    #[arg(long, default_value = ".cdkube-dev")]
    state_dir: std::path::PathBuf,
    /// Manifests to apply once the plane is up (multi-document YAML, create-or-update).
    #[arg(short = 'f', long = "filename")]
    files: Vec<std::path::PathBuf>,
    /// Print only the kubeconfig path on stdout once the plane is ready (for scripts).
    #[arg(long)]
    print_kubeconfig_path: bool,
    /// Leave the operator out (run `cdkube run --allow-local-repos` against the plane yourself).
    #[arg(long)]
    no_operator: bool,
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

#[derive(Args)]
struct FetchSourceArgs {
    /// The artifact's signed URL.
    #[arg(long, env = "CDKUBE_ARTIFACT_URL", hide_env_values = true)]
    url: String,
    /// The expected digest, `sha256:<64 hex>`; nothing is extracted unless the download matches it.
    #[arg(long)]
    digest: String,
    /// Directory to extract into (created if missing); entries already there are never overwritten.
    #[arg(long)]
    dest: std::path::PathBuf,
    /// Deadline of the whole download, retries included.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Largest artifact accepted, in bytes.
    #[arg(long, default_value_t = cdkube::artifact::FetchOptions::default().max_bytes)]
    max_bytes: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Run(args) => cdkube::telemetry::init_with(args.log_format.into()),
        _ => cdkube::telemetry::init(),
    }
    match cli.command {
        Command::Run(args) => run_cli::run(args),
        Command::Crd => {
            print!("{}", cdkube::api::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => validate(args),
        Command::Dev(args) => dev(args),
        Command::Version => {
            println!("cdkube {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Probe(args) => cdkube::git::cli::probe(args),
        Command::FetchSource(args) => fetch_source(args),
    }
}

fn fetch_source(args: FetchSourceArgs) -> ExitCode {
    let options = cdkube::artifact::FetchOptions {
        timeout: args.timeout,
        max_bytes: args.max_bytes,
        ..Default::default()
    };
    match cdkube::artifact::fetch_and_extract(&args.url, &args.digest, &args.dest, &options) {
        Ok(report) => {
            println!(
                "fetched {} ({} bytes, {} files) into {}",
                report.digest,
                report.bytes,
                report.files,
                args.dest.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cdkube fetch-source: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    let options = cdkube::api::validation::Options {
        allow_local_repos: args.allow_local,
    };
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

fn dev(args: DevArgs) -> ExitCode {
    let opts = cdkube::embedded::dev::DevOptions {
        port: args.port,
        state_dir: args.state_dir,
        files: args.files,
        print_kubeconfig_path: args.print_kubeconfig_path,
        operator: !args.no_operator,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(cdkube::embedded::dev::run(opts)).map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdkube dev: {e}");
            ExitCode::FAILURE
        }
    }
}
