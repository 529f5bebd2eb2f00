//! The `cdkube` binary: parses the command line and dispatches to the subcommand's module in
//! [`cli`]; each subcommand's work lives in the library module named after its concept.
#![deny(missing_docs, rust_2018_idioms)]
#![warn(unreachable_pub)]
use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let command = cli::Cli::parse().command;
    cdkube::telemetry::init_with(command.log_format());
    command.run()
}
