//! Push webhooks: GitHub (`X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`) and a generic receiver
//! (HMAC-SHA256 of the body in `X-Cdkube-Signature-256`). A push makes the poller probe the pushed
//! repository's key at once, so every Pipeline following it builds the new commit (trigger `webhook`)
//! without waiting for its next poll.
//!
//! Deviation from Flux's Receiver: there is no Receiver resource and no per-receiver URL; one Secret
//! holds the shared secrets, and the push itself says which repository to probe.
mod payload;
mod receiver;
mod repo_match;
mod secrets;
mod signature;

pub use payload::{Push, Request};
pub use receiver::{GENERIC_SIGNATURE_HEADER, MAX_BODY, MAX_CONCURRENT, router};
pub use repo_match::repo_identity;
pub use secrets::{CACHE_TTL, SecretSource};
pub use signature::sign;
