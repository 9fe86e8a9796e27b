//! Authentication and authorisation: who is calling (a bearer token or an operator client
//! certificate) and what they may do.
//!
//! Order of checks for everything except `/healthz` and the static dashboard files:
//! 1. a client certificate that TLS verified against `client_ca` and whose CN is listed in
//!    `operators` -> admin;
//! 2. `Authorization: Bearer <token>`: 429 while the client IP is blocked for failed attempts
//!    (the token is not even looked at), else the token's role, else 401 (counted);
//! 3. nothing -> 401.
//!
//! Handlers then ask [`Principal::require`] for the role they need *before* touching the
//! resource, so a viewer gets 403 whether or not the resource exists. Tokens are never logged:
//! the logs name the token's public id.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::token::Role;

/// Facts about the TLS connection a request came on (inserted by the server per connection).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// CN of the client certificate, when one was presented and verified.
    pub client_cn: Option<String>,
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Bearer token with this public id.
    Token {
        /// Token id.
        id: String,
    },
    /// Operator client certificate with this CN.
    Certificate {
        /// Subject CN.
        cn: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How they authenticated.
    pub credential: Credential,
    /// What they may do.
    pub role: Role,
}

impl Principal {
    /// For the logs: `token:<id>` or `cert:<cn>` (never the token itself).
    pub fn label(&self) -> String {
        match &self.credential {
            Credential::Token { id } => format!("token:{id}"),
            Credential::Certificate { cn } => format!("cert:{cn}"),
        }
    }

    /// `Ok` when this caller has at least `role`, else [`Forbidden`] (403).
    pub fn require(&self, role: Role) -> Result<(), Forbidden> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Forbidden)
        }
    }
}

/// The caller lacks the role (403, the same body whatever the resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden;

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        error(StatusCode::FORBIDDEN, "forbidden")
    }
}

/// A JSON error body `{"error": what}`.
pub fn error(status: StatusCode, what: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": what }))).into_response()
}

fn unauthorized() -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iotsec\""),
    );
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<Connection>()
        .map(|c| c.peer.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The middleware in front of every API route (and the API's 404 fallback).
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = if let Some(cn) = req
        .extensions()
        .get::<Connection>()
        .and_then(|c| c.client_cn.clone())
        .filter(|cn| app.web().operators.iter().any(|o| o == cn))
    {
        Principal {
            credential: Credential::Certificate { cn },
            role: Role::Admin,
        }
    } else {
        let Some(token) = bearer(req.headers()) else {
            return unauthorized();
        };
        let ip = client_ip(&req);
        if let Some(wait) = app.limiter().blocked(ip, Instant::now()) {
            tracing::warn!(%ip, "authentication rate limit: request refused");
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many failed attempts");
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        match app.verify_token(token) {
            Some(holder) => Principal {
                credential: Credential::Token { id: holder.id },
                role: holder.role,
            },
            None => {
                app.limiter().fail(ip, Instant::now());
                tracing::info!(%ip, path = %req.uri().path(), "refused: unknown or revoked token");
                return unauthorized();
            }
        }
    };
    req.extensions_mut().insert(principal.clone());
    let mut res = next.run(req).await;
    // For the request log (the label names the token's id, never the token).
    res.extensions_mut().insert(principal);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn roles_are_ordered() {
        let viewer = Principal {
            credential: Credential::Token { id: "x".into() },
            role: Role::Viewer,
        };
        assert!(viewer.require(Role::Viewer).is_ok());
        assert_eq!(
            viewer
                .require(Role::Admin)
                .unwrap_err()
                .into_response()
                .status(),
            StatusCode::FORBIDDEN
        );
    }
}
