//! `cdkube version`: print the version.
use std::process::ExitCode;

/// Prints `cdkube <version>`.
pub(super) fn run() -> ExitCode {
    println!("cdkube {}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}
