//! iotsec-audit: placeholder, being written.
pub mod catalog;
pub mod error;
pub mod finding;
pub mod report;
pub mod secrets;
