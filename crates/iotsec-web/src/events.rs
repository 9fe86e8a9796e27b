//! Live updates: `GET /api/events` is a server-sent event stream (`event: fleet`, JSON data:
//! the device list and the rejection counts), sent at once and then whenever the data changed.
//!
//! One poller task reads storage every `events_ms` while at least one client listens and
//! publishes a new snapshot only when something changed; every stream re-checks its token at
//! each tick, so a revoked token's stream ends within one interval.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;

use crate::api::{DeviceView, device_views, now_ms};
use crate::app::AppState;
use crate::auth::{Credential, Principal};

/// What one `fleet` event carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was taken, ms since the epoch.
    pub at_ms: i64,
    /// Every device.
    pub devices: Vec<DeviceView>,
    /// Rejections by reason.
    pub rejections: Vec<ReasonCount>,
}

/// One reason's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// Stable reason code.
    pub reason: String,
    /// How many.
    pub count: u64,
}

impl Snapshot {
    /// Same devices and counts (the time it was taken aside).
    pub fn same_data(&self, other: &Snapshot) -> bool {
        self.devices == other.devices && self.rejections == other.rejections
    }
}

async fn take(app: &AppState) -> crate::Result<Snapshot> {
    let devices = device_views(app).await?;
    let counts = app.storage(|s, _| s.rejection_counts()).await?;
    Ok(Snapshot {
        at_ms: now_ms(),
        devices,
        rejections: counts
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect(),
    })
}

/// The poller: runs until the server stops (the task is aborted).
pub async fn poll(app: AppState) {
    let mut tick = tokio::time::interval(app.web().events_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The app holds one receiver itself; more means someone is listening.
        if app.snapshots_listeners() == 0 {
            continue;
        }
        match take(&app).await {
            Ok(s) => app.publish(s),
            Err(e) => tracing::warn!(error = %e, "live update snapshot failed"),
        }
    }
}

struct Stream {
    rx: watch::Receiver<Arc<Snapshot>>,
    app: AppState,
    token: Option<String>,
    first: bool,
    recheck: Duration,
}

/// `GET /api/events`.
pub async fn stream(State(app): State<AppState>, Extension(who): Extension<Principal>) -> Response {
    // A fresh snapshot for the first event: the poller may not have run yet.
    match take(&app).await {
        Ok(s) => app.publish(s),
        Err(e) => tracing::warn!(error = %e, "live update snapshot failed"),
    }
    let token = match who.credential {
        Credential::Token { id } => Some(id),
        Credential::Certificate { .. } => None,
    };
    let state = Stream {
        rx: app.snapshots(),
        recheck: app.web().events_interval,
        app,
        token,
        first: true,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            let changed = if st.first {
                st.first = false;
                true
            } else {
                tokio::select! {
                    r = st.rx.changed() => {
                        if r.is_err() {
                            return None;
                        }
                        true
                    }
                    () = tokio::time::sleep(st.recheck) => false,
                }
            };
            if let Some(id) = &st.token
                && !st.app.token_current(id)
            {
                tracing::info!(token = %id, "event stream closed: token revoked");
                return None;
            }
            if changed {
                let snap = Arc::clone(&st.rx.borrow_and_update());
                let ev = Event::default().event("fleet").json_data(&*snap).ok()?;
                return Some((Ok::<_, Infallible>(ev), st));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
