//! Logs, metrics and health: tracing setup shared by every command, the operator's Prometheus
//! [`Metrics`], its [`Health`], and the ops endpoints that serve both ([`router`]).
mod endpoints;
mod health;
mod metrics;

use tracing_subscriber::{EnvFilter, fmt};

pub use endpoints::router;
pub use health::{Health, Leadership};
pub use metrics::{Metrics, PhaseLabels, ProbeLabels, ReasonLabels, Refresher, Timer, TransportLabels, TriggerLabels};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr as text; `RUST_LOG` overrides the default `info` level.
pub fn init() {
    init_with(LogFormat::Text);
}

/// Logs to stderr in `format`; `RUST_LOG` overrides the default `info` level.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests calling commands in-process) is harmless, so the error is ignored.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
