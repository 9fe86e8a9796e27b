//! iotsec-scan (module doc rewritten at the end).
pub mod assess;
pub mod certificate;
pub mod check;
pub mod error;
pub mod finding;
pub mod handshake;
pub mod ident;
pub mod limits;
pub mod local;
pub mod policy;
pub mod ports;
pub mod probe;
pub mod report;
pub mod scanner;
pub mod sweep;
pub mod target;
pub mod udp;
