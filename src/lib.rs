//! cdkube (CD³): a Kubernetes operator that builds every new Git commit in a builder Pod.
//!
//! The modules follow the data path (see `docs/architecture.md`): `schedule` says a repository is
//! due, `git` probes, fetches and exports it, `api` holds the Pipeline resource the controller
//! reconciles, and `embedded` stands in for a cluster when there is none. The command line lives in
//! the binary (`src/cli/`), so the library does not depend on clap.
#![deny(missing_docs, rust_2018_idioms)]
#![warn(unreachable_pub)]
pub mod api;
pub mod artifact;
pub mod controller;
pub mod embedded;
pub mod git;
pub mod input;
pub mod schedule;
pub mod serve;
pub mod telemetry;
pub mod webhook;
