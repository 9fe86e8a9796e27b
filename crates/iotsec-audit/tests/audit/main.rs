//! iotsec-audit integration tests: the acceptance scenarios of issue AUDIT (a tutorial-style
//! deployment and an `iotsec up`-style deployment, both with a live Mosquitto started here on
//! 127.0.0.1), firmware trees, the registry, and the renderers checked by real consumers
//! (the SARIF 2.1.0 JSON schema, headless Chromium).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;
mod firmware;
mod iotsec_deployment;
mod registry;
mod render;
mod tutorial;
