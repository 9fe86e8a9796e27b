//! The API handlers. Every one of them runs behind [`crate::auth::authenticate`]; the admin
//! ones check the role before they look at the resource.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use iotsec_server::store::DeviceRecord;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Credential, Principal, error};
use crate::token::Role;

/// Largest telemetry page.
pub const MAX_PAGE: usize = 5000;
/// Default telemetry page.
pub const DEFAULT_PAGE: usize = 500;
/// Largest audit report read from disk.
const MAX_AUDIT_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn internal(e: &crate::WebError) -> Response {
    tracing::error!(error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// A device as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    /// Id.
    pub id: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Seen within the online window.
    pub online: bool,
    /// Last accepted message, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Firmware version last reported.
    pub firmware: Option<String>,
    /// Accepted readings.
    pub accepted: u64,
    /// Rejected messages.
    pub rejected: u64,
    /// Accepts v1 messages.
    pub legacy: bool,
    /// Message key version.
    pub key_version: u32,
}

impl DeviceView {
    /// The view of `d` at `now_ms` with an `online` window.
    pub fn of(d: DeviceRecord, now_ms: i64, online: Duration) -> DeviceView {
        let window = i64::try_from(online.as_millis()).unwrap_or(i64::MAX);
        DeviceView {
            online: d.status == "active"
                && d.last_seen_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) <= window),
            id: d.id,
            status: d.status,
            last_seen_ms: d.last_seen_ms,
            firmware: d.firmware,
            accepted: d.accepted,
            rejected: d.rejected,
            legacy: d.legacy,
            key_version: d.key_version,
        }
    }
}

pub(crate) async fn device_views(app: &AppState) -> crate::Result<Vec<DeviceView>> {
    let online = app.web().online;
    let devices = app.storage(|s, _| s.devices()).await?;
    let now = now_ms();
    Ok(devices
        .into_iter()
        .map(|d| DeviceView::of(d, now, online))
        .collect())
}

/// `GET /healthz`: no authentication, no data.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Fallback for unknown API paths (reached only after authentication).
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// `GET /api/devices`.
pub async fn devices(State(app): State<AppState>) -> Response {
    match device_views(&app).await {
        Ok(v) => Json(serde_json::json!({ "devices": v })).into_response(),
        Err(e) => internal(&e),
    }
}

async fn find(app: &AppState, id: &str) -> Result<DeviceView, Response> {
    let views = device_views(app).await.map_err(|e| internal(&e))?;
    views
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such device"))
}

/// `GET /api/devices/{id}`.
pub async fn device(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match find(&app, &id).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/devices/{id}/revoke` (admin): CRL, broker reload, registry status.
pub async fn revoke(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    // The role first: a viewer learns nothing about `id`.
    if let Err(r) = who.require(Role::Admin) {
        tracing::warn!(by = %who.label(), "refused: revoke needs the admin role");
        return r.into_response();
    }
    let device = match find(&app, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if device.status == "revoked" {
        return error(StatusCode::CONFLICT, "already revoked");
    }
    let target = id.clone();
    let done = app
        .storage(move |s, config| iotsec_server::provision::revoke(config, s, &target))
        .await;
    match done {
        Ok(r) => {
            tracing::info!(device = %id, by = %who.label(), serials = ?r.serials, "device revoked");
            Json(serde_json::json!({
                "device": id,
                "status": "revoked",
                "serials": r.serials,
                "broker_reloaded": r.reloaded.is_some(),
            }))
            .into_response()
        }
        Err(e) => internal(&e),
    }
}

/// Query of `GET /api/devices/{id}/telemetry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryQuery {
    /// From this device time (ms since the epoch, inclusive); default 0.
    pub from: Option<i64>,
    /// To this device time (ms, exclusive); default: no end.
    pub to: Option<i64>,
    /// Only readings with a seq above this (paging: pass the previous page's `next_after`).
    pub after: Option<u64>,
    /// Page size (default 500, at most 5000).
    pub limit: Option<usize>,
}

/// One reading as the API shows it.
#[derive(Debug, Serialize)]
struct ReadingView {
    seq: u64,
    ts_ms: i64,
    received_ms: i64,
    payload: serde_json::Value,
}

/// `GET /api/devices/{id}/telemetry?from=&to=&after=&limit=`: oldest first, paged by seq.
pub async fn telemetry(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TelemetryQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let from = q.from.unwrap_or(0);
    let to = q.to.unwrap_or(i64::MAX);
    if from > to {
        return error(StatusCode::BAD_REQUEST, "from is after to");
    }
    if let Err(r) = find(&app, &id).await {
        return r;
    }
    let device = id.clone();
    let rows = app
        .storage(move |s, _| s.telemetry(&device, from, to, q.after, limit))
        .await;
    match rows {
        Ok(rows) => {
            let next_after = (rows.len() == limit)
                .then(|| rows.last().map(|r| r.seq))
                .flatten();
            let readings: Vec<ReadingView> = rows
                .into_iter()
                .map(|r| ReadingView {
                    seq: r.seq,
                    ts_ms: r.ts_ms,
                    received_ms: r.received_ms,
                    // Stored only after verification; still, never fail on it.
                    payload: serde_json::from_str(&r.payload)
                        .unwrap_or(serde_json::Value::String(r.payload)),
                })
                .collect();
            Json(serde_json::json!({
                "device": id,
                "readings": readings,
                "next_after": next_after,
            }))
            .into_response()
        }
        Err(e) => internal(&e),
    }
}

/// Query of `GET /api/rejections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionQuery {
    /// How many recent rejections (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /api/rejections`: counts by reason and the most recent ones.
pub async fn rejections(State(app): State<AppState>, Query(q): Query<RejectionQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let result = app
        .storage(move |s, _| Ok((s.rejection_counts()?, s.recent_rejections(limit)?)))
        .await;
    match result {
        Ok((counts, recent)) => {
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let counts: Vec<_> = counts
                .into_iter()
                .map(|(reason, count)| serde_json::json!({ "reason": reason, "count": count }))
                .collect();
            Json(serde_json::json!({ "total": total, "counts": counts, "recent": recent }))
                .into_response()
        }
        Err(e) => internal(&e),
    }
}

/// `GET /api/audit`: the latest audit report (`iotsec audit --format json`), as written.
pub async fn audit(State(app): State<AppState>) -> Response {
    let Some(path) = app.web().audit_report.clone() else {
        return error(StatusCode::NOT_FOUND, "no audit report configured");
    };
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        f.take(MAX_AUDIT_BYTES + 1).read_to_end(&mut buf)?;
        Ok(Some(buf))
    })
    .await;
    match read {
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no audit report yet"),
        Ok(Ok(Some(bytes))) if bytes.len() as u64 > MAX_AUDIT_BYTES => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "audit report too large")
        }
        Ok(Ok(Some(bytes))) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.is_object() => Json(v).into_response(),
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit report is not a JSON report (use iotsec audit --format json)",
            ),
        },
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the audit report");
            error(StatusCode::INTERNAL_SERVER_ERROR, "audit report unreadable")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// `GET /api/whoami`: the caller's role (the dashboard checks a token with it).
pub async fn whoami(Extension(who): Extension<Principal>) -> Response {
    let (kind, name) = match &who.credential {
        Credential::Token { id } => ("token", id.clone()),
        Credential::Certificate { cn } => ("certificate", cn.clone()),
    };
    Json(serde_json::json!({ "role": who.role, "credential": kind, "id": name })).into_response()
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(last_seen_ms: Option<i64>, status: &str) -> DeviceRecord {
        DeviceRecord {
            id: "d".into(),
            status: status.into(),
            legacy: false,
            key_version: 1,
            firmware: None,
            last_seen_ms,
            accepted: 0,
            rejected: 0,
        }
    }

    #[test]
    fn online_means_active_and_seen_within_the_window() {
        let w = Duration::from_secs(30);
        assert!(DeviceView::of(record(Some(100_000), "active"), 120_000, w).online);
        assert!(DeviceView::of(record(Some(100_000), "active"), 130_000, w).online);
        assert!(!DeviceView::of(record(Some(100_000), "active"), 130_001, w).online);
        assert!(!DeviceView::of(record(None, "active"), 1, w).online);
        assert!(!DeviceView::of(record(Some(100_000), "revoked"), 100_001, w).online);
    }
}
