//! The Pipeline API.
