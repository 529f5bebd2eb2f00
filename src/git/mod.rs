//! The git engine: probe a remote branch, fetch it into a bounded bare cache, read commit metadata and
//! export a commit's tree as a deterministic tar.gz — over https, http, ssh, git:// and local paths.
//!
//! Use it through an [`Engine`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), cdkube::git::Error> {
//! use cdkube::git::{Credentials, Engine, EngineOptions, RemoteSpec};
//! let engine = Engine::new(EngineOptions::new("/var/lib/cdkube"))?;
//! let spec = RemoteSpec::new("https://github.com/org/repo", Some("main"), Credentials::none(), false)?;
//! let head = engine.probe(&spec).await?;            // refs only: main@sha1:…
//! let fetched = engine.fetch(&spec).await?;         // objects into the cache
//! let info = engine.commit_info(&spec, &fetched.head.sha).await?;
//! let export = engine.export(&spec, &fetched.head.sha, "/tmp/src.tar.gz".as_ref()).await?;
//! println!("{head} {} {}", info.subject, export.digest);
//! # Ok(()) }
//! ```
//!
//! Every failure is one [`Error`] with an [`ErrorKind`]; messages never contain credentials.
mod advert;
mod bounds;
mod cache;
mod classify;
mod commit;
mod connect;
pub mod credentials;
mod engine;
mod error;
mod export;
mod fetch;
mod http_pool;
mod probe;
mod remote;
pub mod scratch;
pub mod secret_file;
mod sideband;
mod transport;

pub use bounds::parse_size;
pub use cache::CacheLimits;
pub use commit::CommitInfo;
pub use credentials::Credentials;
pub use engine::{
    DEFAULT_MAX_PACK_BYTES, DEFAULT_MAX_REFS_BYTES, DEFAULT_TIMEOUT, Engine, EngineOptions, MAX_TIMEOUT, check_timeout,
};
pub use error::{Error, ErrorKind, Result};
pub use export::Export;
pub use fetch::FetchOutcome;
pub use probe::Head;
pub use remote::{RemoteSpec, RepoUrl, Scheme, normalize_branch};
