//! The HTTP layer of the API server: authentication and RBAC authorization, routing of the Kubernetes REST paths, and
//! everything about the wire format. It reaches the objects through [`storage`](super::storage)
//! only.
pub(crate) mod auth;
pub(crate) mod authz;
mod body;
mod context;
mod discovery;
mod escalation;
mod eviction;
mod exec;
mod openapi;
mod params;
mod podlog;
#[cfg(test)]
mod props;
mod protobuf;
mod represent;
mod response;
mod reviews;
mod router;
mod scale;
mod table;
mod target;
mod watch;

pub(crate) use context::Server;
pub(crate) use router::entry;
