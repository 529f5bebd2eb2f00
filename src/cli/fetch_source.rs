//! `cdkube fetch-source`: a builder Pod's init step — download the source artifact by its signed URL,
//! verify its digest, extract it safely.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cdkube::artifact::{FetchOptions, fetch_and_extract};

/// Arguments of `cdkube fetch-source`.
#[derive(clap::Args)]
pub(crate) struct FetchSourceArgs {
    /// The artifact's signed URL.
    #[arg(long, env = "CDKUBE_ARTIFACT_URL", hide_env_values = true)]
    url: String,
    /// The expected digest, `sha256:<64 hex>`; nothing is extracted unless the download matches it.
    #[arg(long)]
    digest: String,
    /// Directory to extract into (created if missing); entries already there are never overwritten.
    #[arg(long)]
    dest: PathBuf,
    /// Deadline of the whole download, retries included.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Largest artifact accepted, in bytes.
    #[arg(long, default_value_t = FetchOptions::default().max_bytes)]
    max_bytes: u64,
}

/// Fetches and extracts; one line on success, one line on stderr and exit 1 on failure.
pub(super) fn run(args: FetchSourceArgs) -> ExitCode {
    let options = FetchOptions {
        timeout: args.timeout,
        max_bytes: args.max_bytes,
        ..Default::default()
    };
    match fetch_and_extract(&args.url, &args.digest, &args.dest, &options) {
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
