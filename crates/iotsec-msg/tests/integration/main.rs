//! iotsec-msg integration tests (one binary): differential tests against CPython, RFC vectors,
//! property tests of the replay window and the sequence counter, v2 scenarios.
#![allow(clippy::unwrap_used, missing_docs)]

mod jsongen;
mod keyfile;
mod python;
mod state;
mod v2;
mod vectors;
