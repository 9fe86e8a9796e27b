//! iotsec-scan (module doc rewritten at the end).
pub mod certificate;
pub mod check;
pub mod error;
pub mod finding;
pub mod local;
pub mod policy;
pub mod ports;
pub mod probe;
pub mod target;
