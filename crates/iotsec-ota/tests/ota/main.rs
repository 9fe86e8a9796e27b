//! Integration tests of `iotsec-ota`: attacks, power cuts, deadlines, resume, the
//! file-backed store, the process supervisor, and bounded memory.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

mod attacks;
mod common;
mod deadline;
mod dir_store;
mod memory;
mod power_cut;
mod properties;
mod resume;
mod supervisor;
