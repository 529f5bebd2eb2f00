//! When to look at which repository: intervals with jitter, cron expressions, per-key failure backoff, and
//! the probe table shared by all Pipelines ([`Poller`]).
//!
//! ```no_run
//! # async fn demo(engine: cdkube::git::Engine, spec: cdkube::git::RemoteSpec) {
//! use cdkube::schedule::{Poller, PollerOptions, Schedule};
//! let (poller, mut events) = Poller::new(engine, PollerOptions::default());
//! poller.subscribe("default/app", spec, Schedule::parse_interval("1m").unwrap());
//! tokio::spawn(poller.clone().run());
//! while let Some(event) = events.recv().await {
//!     println!("{event}"); // head changed for key …: main@sha1:… → main@sha1:…
//! }
//! # }
//! ```
mod backoff;
mod poller;
mod timing;

pub use backoff::Backoff;
pub use poller::{Event, Key, KeyStatus, ObserveProbe, Poller, PollerOptions, ProbeObserver, Pushed, Sweep};
pub use timing::{Cron, Error, JITTER, MIN_INTERVAL, Schedule, random_jitter};
