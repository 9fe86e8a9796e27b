//! iotsec-web: the authenticated HTTPS API and the fleet dashboard of `iotsec serve`.
//!
//! ```no_run
//! # async fn demo(server: iotsec_server::ServerConfig) -> Result<(), iotsec_web::WebError> {
//! use iotsec_web::{AcmeOverrides, WebConfig, WebServer};
//! let web = WebConfig::of_server(&server, &AcmeOverrides::default())?.expect("[web] section");
//! let storage = Box::new(server.open_storage()?);
//! let api = WebServer::bind(server, web, storage).await?;
//! println!("dashboard: https://{}/", api.local_addr()?);
//! api.run(std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! * [`config`]: the `[web]` section of `server.toml` (raw -> checked).
//! * [`token`]: bearer tokens (random 256-bit, stored as SHA-256 hashes, revocable at once).
//! * [`auth`] and [`limit`]: who is calling (token or operator certificate), roles, and the
//!   per-IP limit on failed authentications.
//! * [`api`], [`events`], [`openapi`], [`dashboard`]: what is served; [`app`] puts it together.
//! * [`firmware`]: firmware bundles for devices (mutual TLS, HTTP ranges), releases and rollouts.
//! * [`tls`], [`server`]: rustls (aws-lc-rs) and hyper; [`acme`]: certificates from an ACME CA.
//!
//! Data enters as HTTPS requests (headers, path and query parameters; the only body read is
//! the JSON of `POST /api/rollouts`, at most 64 KiB), the token file, the registry and
//! telemetry in storage, and the audit report file. It leaves as JSON, server-sent events and
//! the embedded dashboard files, and as firmware bundles from the `[ota]` releases directory
//! to devices; device revocations go through `iotsec_server::provision::revoke`. Tokens never
//! reach a log line or `Debug` output. Nothing here prints.

pub mod acme;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod dashboard;
mod error;
pub mod events;
pub mod firmware;
pub mod limit;
pub mod openapi;
pub mod server;
pub mod tls;
pub mod token;

pub use config::{AcmeConfig, AcmeOverrides, CertSource, WebConfig};
pub use error::{Result, WebError};
pub use server::WebServer;
