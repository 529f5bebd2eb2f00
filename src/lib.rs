//! cdkube (CD³): a Kubernetes operator that builds every new Git commit in a builder Pod.
//!
//! The modules follow the data path in DESIGN.md §2: `schedule` says a repository is due, `git` probes
//! and exports it, `artifact` stores and serves the tarball, `controller` runs the builder Pod, and
//! `embedded` stands in for a cluster when there is none.
pub mod api;
pub mod artifact;
pub mod embedded;
pub mod git;
pub mod schedule;
pub mod telemetry;
