//! `cdkube crd`: print the Pipeline CustomResourceDefinition generated from the API types.
use std::process::ExitCode;

/// Prints the CRD as YAML (`deploy/crd.yaml` is this output).
pub(super) fn run() -> ExitCode {
    print!("{}", cdkube::api::crd::crd_yaml());
    ExitCode::SUCCESS
}
