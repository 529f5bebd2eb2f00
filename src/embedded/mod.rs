//! The embedded control plane (DESIGN.md §3): an API server emulator and a local pod runner.
pub mod logs;
pub mod runner;
