//! The storage layer of the API server: objects, their versions and history, and what a write does
//! to them — kube-apiserver's registry and etcd in one process. It checks writes with
//! [`admission`](super::admission) and never reaches up to the HTTP layer.
pub(crate) mod aggregation;
pub(crate) mod apiservices;
pub(crate) mod binding;
pub(crate) mod ephemeral;
pub(crate) mod fields;
pub(crate) mod gc;
pub(crate) mod ops;
pub(crate) mod patch;
#[cfg(test)]
mod props;
pub(crate) mod selector;
pub(crate) mod serviceaccounts;
pub(crate) mod services;
pub(crate) mod store;
