//! Integration tests of the device agent against a real Mosquitto (hardened config from
//! iotsec-broker, PKI from iotsec-testkit) and a fake ingest.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod agent;
mod check;
mod harness;
mod queue;
