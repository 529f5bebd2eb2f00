//! cdkube (CD³): a Kubernetes operator that builds every new Git commit in a builder Pod.
pub mod api;
