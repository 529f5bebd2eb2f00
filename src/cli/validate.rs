//! `cdkube validate`: check Pipeline manifests offline.
use std::process::ExitCode;

/// Arguments of `cdkube validate`.
#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
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

/// Prints one line per checked document (errors on stderr); exit 1 when any has an error.
pub(super) fn run(args: ValidateArgs) -> ExitCode {
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
