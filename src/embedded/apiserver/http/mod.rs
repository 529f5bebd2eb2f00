//! The HTTP layer of the API server: authentication, routing of the Kubernetes REST paths, and
//! everything about the wire format. It reaches the objects through [`storage`](super::storage)
//! only.
mod body;
mod context;
mod discovery;
mod openapi;
mod params;
mod podlog;
#[cfg(test)]
mod props;
mod protobuf;
mod response;
mod router;
mod table;
mod target;
mod watch;

pub(crate) use context::Server;
pub(crate) use router::entry;
