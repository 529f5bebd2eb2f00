//! `cdkube dev`: run the local control plane until Ctrl-C.
use std::path::PathBuf;
use std::process::ExitCode;

use cdkube::embedded::dev::{self, DevOptions};

/// Arguments of `cdkube dev`.
#[derive(clap::Args)]
pub(crate) struct DevArgs {
    /// API server port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory for the kubeconfig, Pod workspaces and logs.
    #[arg(long, default_value = ".cdkube-dev")]
    state_dir: PathBuf,
    /// Manifests to apply once the plane is up (multi-document YAML, create-or-update).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Print only the kubeconfig path on stdout once the plane is ready (for scripts).
    #[arg(long)]
    print_kubeconfig_path: bool,
    /// Leave the operator out (run `cdkube run --allow-local-repos` against the plane yourself).
    #[arg(long)]
    no_operator: bool,
}

/// Why `cdkube dev` stopped with an error.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// The async runtime could not start (printed as the I/O error alone, as before).
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    /// The plane failed.
    #[error(transparent)]
    Dev(#[from] dev::Error),
}

/// Runs the plane; its own output says what to try. Exit 1 with the error when it fails.
pub(super) fn run(args: DevArgs) -> ExitCode {
    let opts = DevOptions {
        port: args.port,
        state_dir: args.state_dir,
        files: args.files,
        print_kubeconfig_path: args.print_kubeconfig_path,
        operator: !args.no_operator,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::Runtime)
        .and_then(|rt| rt.block_on(dev::run(opts)).map_err(Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdkube dev: {e}");
            ExitCode::FAILURE
        }
    }
}
