//! Firmware distribution over HTTPS.
//!
//! * `GET /firmware/{release}` serves a published bundle to **devices**: the caller must
//!   present a client certificate that TLS verified against `[web] client_ca` and whose CN is
//!   a registered, active device (the same certificate it uses for MQTT). Single byte ranges
//!   are honoured (`206` + `Content-Range`, `416` past the end), so an interrupted download
//!   continues where it stopped. Every request is logged with the device, release and range.
//!   The bundle is signed: TLS protects who may fetch it, not whether it can be trusted (the
//!   device verifies the signed manifest before it asks, and the image while it writes).
//! * `GET /api/firmware`, `GET /api/rollouts`, `GET /api/rollouts/{id}` (viewer) and
//!   `POST /api/rollouts` (admin, JSON body) expose the release index and the rollouts of
//!   `iotsec_server::release`; the ingest of `iotsec serve` drives a new rollout within a tick.

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iotsec_server::release::{self, OtaConfig, RolloutRequest, Targets};
use iotsec_server::{ServerConfig, ServerError};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::api::now_ms;
use crate::app::AppState;
use crate::auth::{Connection, Principal, error};
use crate::token::Role;

/// Largest `POST /api/rollouts` body.
pub const MAX_ROLLOUT_BODY: usize = 64 * 1024;

/// Bytes read from the release file per body chunk.
const CHUNK: usize = 64 * 1024;

fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn ota_config(server: &ServerConfig) -> Result<OtaConfig, Box<Response>> {
    match OtaConfig::of_server(server) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "firmware distribution is not configured ([ota])",
        ))),
        Err(e) => Err(Box::new(internal(&e))),
    }
}

/// The requested part of a `total`-byte file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) Range header: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// Starts past the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header for a file of `total` bytes (RFC 9110 §14.1.2): one range
/// `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges or an invalid header are ignored
/// (the whole file is served), as the RFC allows.
pub fn parse_range(value: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || total == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: total.saturating_sub(n),
                    end: total - 1,
                }
            }
        }
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return RangeRequest::Full;
            }
            if start >= total {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Part {
                start,
                end: end.map_or(total - 1, |e| e.min(total - 1)),
            }
        }
        _ => RangeRequest::Full,
    }
}

/// `GET /firmware/{release}`: the bundle, to registered devices over mutual TLS.
pub async fn download(
    State(app): State<AppState>,
    connection: Option<Extension<Connection>>,
    Path(release_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(device) = connection.and_then(|Extension(c)| c.client_cn) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "a device certificate is required to download firmware",
        );
    };
    let ota = match ota_config(app.server()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let who = device.clone();
    let found = app
        .storage(move |s, _| {
            let active = s
                .devices()?
                .iter()
                .any(|d| d.id == who && d.status == "active");
            let release = s.releases()?.into_iter().find(|r| r.id == release_id);
            Ok((active, release))
        })
        .await;
    let (active, release) = match found {
        Ok(f) => f,
        Err(e) => return internal(&e),
    };
    if !active {
        tracing::warn!(%device, "firmware refused: not a registered, active device");
        return error(StatusCode::FORBIDDEN, "not a registered, active device");
    }
    let Some(release) = release else {
        return error(StatusCode::NOT_FOUND, "no such release");
    };
    // Index rows are written by `publish` as `<id>.fw`; never follow anything else.
    if release.file.contains(['/', '\\']) || release.file.starts_with('.') {
        return internal(&format!(
            "release {} names the file {:?}",
            release.id, release.file
        ));
    }
    let path = ota.bundle_path(&release);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return internal(&format!("{}: {e}", path.display())),
    };
    let total = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return internal(&format!("{}: {e}", path.display())),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, total) {
        RangeRequest::Full => (StatusCode::OK, 0, total.saturating_sub(1)),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            tracing::info!(%device, release = %release.id, range = range.unwrap_or_default(), total, "firmware range not satisfiable");
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        return internal(&format!("{}: {e}", path.display()));
    }
    tracing::info!(%device, release = %release.id, version = %release.version, from = start, to = end, bytes = len, total, partial = status == StatusCode::PARTIAL_CONTENT, "firmware download");
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK))];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "release file shrank",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    res
}

/// `GET /api/firmware`: the published releases.
pub async fn releases(State(app): State<AppState>) -> Response {
    match app.storage(|s, _| s.releases()).await {
        Ok(r) => Json(serde_json::json!({ "releases": r })).into_response(),
        Err(e) => internal(&e),
    }
}

/// `GET /api/rollouts`: every rollout with its devices' standing.
pub async fn rollouts(State(app): State<AppState>) -> Response {
    let timing = match OtaConfig::of_server(app.server()) {
        Ok(Some(c)) => c.timing(),
        Ok(None) => return Json(serde_json::json!({ "rollouts": [] })).into_response(),
        Err(e) => return internal(&e),
    };
    let all = app
        .storage(move |s, _| Ok((release::rollouts(s)?, release::reports(s)?)))
        .await;
    match all {
        Ok((list, latest)) => {
            let now = now_ms();
            let views: Vec<_> = list
                .iter()
                .rev()
                .map(|r| release::rollout_json(r, &latest, now, &timing))
                .collect();
            Json(serde_json::json!({ "rollouts": views })).into_response()
        }
        Err(e) => internal(&e),
    }
}

/// `GET /api/rollouts/{id}`: `404` for an id that is not a stored rollout's number.
pub async fn rollout(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "no such rollout");
    };
    let timing = match ota_config(app.server()) {
        Ok(c) => c.timing(),
        Err(r) => return *r,
    };
    let all = app
        .storage(move |s, _| Ok((release::rollouts(s)?, release::reports(s)?)))
        .await;
    match all {
        Ok((list, latest)) => match list.iter().find(|r| r.record.id == id) {
            Some(r) => Json(release::rollout_json(r, &latest, now_ms(), &timing)).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such rollout"),
        },
        Err(e) => internal(&e),
    }
}

/// Body of `POST /api/rollouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    /// Release id, id prefix or version.
    pub release: String,
    /// Target devices, in order (the first stage takes the first ones).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Every active device instead.
    #[serde(default)]
    pub all: bool,
    /// Cumulative stage sizes, e.g. `1,10%,100%` (default).
    pub stages: Option<String>,
    /// A stage whose failed share exceeds this halts the rollout (default 0.2).
    pub max_failure_rate: Option<f64>,
}

/// `POST /api/rollouts` (admin): starts a staged rollout; `201` with the rollout.
pub async fn start(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Response {
    if let Err(r) = who.require(Role::Admin) {
        tracing::warn!(by = %who.label(), "refused: starting a rollout needs the admin role");
        return r.into_response();
    }
    let timing = match ota_config(app.server()) {
        Ok(c) => c.timing(),
        Err(r) => return *r,
    };
    if body.len() > MAX_ROLLOUT_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let req: RolloutBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")),
    };
    let targets = match (req.all, req.devices.is_empty()) {
        (true, true) => Targets::All,
        (false, false) => Targets::Devices(req.devices),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give either devices (a list) or all: true",
            );
        }
    };
    let stages =
        match release::parse_stages(req.stages.as_deref().unwrap_or(release::DEFAULT_STAGES)) {
            Ok(s) => s,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
    let request = RolloutRequest {
        release: req.release,
        targets,
        stages,
        max_failure_rate: req
            .max_failure_rate
            .unwrap_or(release::DEFAULT_MAX_FAILURE_RATE),
    };
    let started = app
        .storage(move |s, _| {
            let (id, _) = match release::start_rollout(s, &request, now_ms()) {
                Ok(r) => r,
                // The operator's input: answered with 400 below.
                Err(ServerError::Config(why)) => return Ok(Err(why)),
                Err(e) => return Err(e),
            };
            let stored = release::rollouts(s)?
                .into_iter()
                .find(|r| r.record.id == id);
            Ok(Ok((stored, release::reports(s)?)))
        })
        .await;
    match started {
        Ok(Ok((Some(stored), latest))) => {
            tracing::info!(rollout = stored.record.id, release = %stored.rollout.release, by = %who.label(), "rollout started");
            (
                StatusCode::CREATED,
                Json(release::rollout_json(&stored, &latest, now_ms(), &timing)),
            )
                .into_response()
        }
        Ok(Ok((None, _))) => internal(&"rollout vanished after insert"),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(e) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let p = |v: &str| parse_range(Some(v), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(p("bytes=0-"), Part { start: 0, end: 99 });
        assert_eq!(p("bytes=50-"), Part { start: 50, end: 99 });
        assert_eq!(p("bytes=10-19"), Part { start: 10, end: 19 });
        assert_eq!(p("bytes=90-500"), Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-500"), Part { start: 0, end: 99 });
        assert_eq!(p("bytes=100-"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(p(ignored), Full, "{ignored}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
