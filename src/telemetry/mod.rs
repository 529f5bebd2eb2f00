//! Tracing setup shared by every command.
use tracing_subscriber::{EnvFilter, fmt};

/// Logs to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests calling commands in-process) is harmless, so the error is ignored.
    let _ = fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
