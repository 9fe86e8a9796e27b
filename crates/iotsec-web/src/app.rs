//! The application: shared state and the router (API behind authentication, dashboard files
//! and `/healthz` in front of it).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use iotsec_server::ServerConfig;
use iotsec_server::store::Storage;
use tokio::sync::watch;

use crate::config::WebConfig;
use crate::events::Snapshot;
use crate::limit::FailedAuth;
use crate::token::{TokenHolder, TokenStore};
use crate::{api, auth, dashboard, events, firmware};

/// Shared state of every request (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    server: ServerConfig,
    web: WebConfig,
    store: Mutex<Box<dyn Storage>>,
    tokens: Mutex<TokenStore>,
    limiter: Mutex<FailedAuth>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent (no half updates), so a panic in one
    // does not make the data unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppState {
    /// State over `storage` (the web's own connection) and the token file of `web`.
    pub fn new(
        server: ServerConfig,
        web: WebConfig,
        storage: Box<dyn Storage>,
    ) -> crate::Result<AppState> {
        let tokens = TokenStore::open(&web.tokens)?;
        let limiter = FailedAuth::new(web.max_failed_auth_per_minute, Duration::from_secs(60));
        let (snapshot_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        Ok(AppState(Arc::new(Inner {
            server,
            web,
            store: Mutex::new(storage),
            tokens: Mutex::new(tokens),
            limiter: Mutex::new(limiter),
            snapshots,
            snapshot_tx,
        })))
    }

    /// The `[web]` configuration.
    pub fn web(&self) -> &WebConfig {
        &self.0.web
    }

    /// The server configuration (provisioning paths for revocation).
    pub fn server(&self) -> &ServerConfig {
        &self.0.server
    }

    pub(crate) fn limiter(&self) -> MutexGuard<'_, FailedAuth> {
        lock(&self.0.limiter)
    }

    fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        let mut t = lock(&self.0.tokens);
        if let Err(e) = t.refresh() {
            tracing::error!(error = %e, "token file unreadable: refusing every token");
        }
        t
    }

    /// The holder of `token` as of the token file now.
    pub(crate) fn verify_token(&self, token: &str) -> Option<TokenHolder> {
        self.tokens().verify(token)
    }

    /// Whether token `id` is still current.
    pub(crate) fn token_current(&self, id: &str) -> bool {
        self.tokens().is_current(id)
    }

    /// Runs `f` on the storage on a blocking thread.
    pub(crate) async fn storage<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Storage, &ServerConfig) -> iotsec_server::error::Result<T>
        + Send
        + 'static,
    ) -> crate::Result<T> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = lock(&app.0.store);
            f(s.as_mut(), &app.0.server)
        })
        .await
        .map_err(|e| crate::WebError::Config(format!("storage task failed: {e}")))?
        .map_err(crate::WebError::from)
    }

    pub(crate) fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.0.snapshots.clone()
    }

    /// Event streams listening now.
    pub(crate) fn snapshots_listeners(&self) -> usize {
        // The state itself holds one receiver.
        self.0.snapshot_tx.receiver_count().saturating_sub(1)
    }

    pub(crate) fn publish(&self, s: Snapshot) {
        self.0.snapshot_tx.send_if_modified(|cur| {
            if cur.same_data(&s) {
                false
            } else {
                *cur = Arc::new(s);
                true
            }
        });
    }
}

/// One route of the API: method, path (OpenAPI / axum `{param}` syntax).
pub type RouteId = (&'static str, &'static str);

/// The API router under construction; records every route so the OpenAPI test can compare.
struct Api {
    router: Router<AppState>,
    routes: Vec<RouteId>,
}

impl Api {
    fn add(mut self, method: &'static str, path: &'static str, mr: MethodRouter<AppState>) -> Api {
        self.routes.push((method, path));
        self.router = self.router.route(path, mr);
        self
    }
}

fn api() -> Api {
    Api {
        router: Router::new(),
        routes: Vec::new(),
    }
    .add("GET", "/api/devices", get(api::devices))
    .add("GET", "/api/devices/{id}", get(api::device))
    .add("POST", "/api/devices/{id}/revoke", post(api::revoke))
    .add("GET", "/api/devices/{id}/telemetry", get(api::telemetry))
    .add("GET", "/api/rejections", get(api::rejections))
    .add("GET", "/api/audit", get(api::audit))
    .add("GET", "/api/events", get(events::stream))
    .add("GET", "/api/firmware", get(firmware::releases))
    .add("GET", "/api/rollouts", get(firmware::rollouts))
    .add("POST", "/api/rollouts", post(firmware::start))
    .add("GET", "/api/rollouts/{id}", get(firmware::rollout))
    .add("GET", "/api/whoami", get(api::whoami))
    .add("GET", "/api/openapi.json", get(api::openapi))
}

/// Every API route the router serves (for the OpenAPI check).
pub fn api_routes() -> Vec<RouteId> {
    api().routes
}

/// Routes served without authentication: they hold no fleet data.
pub const PUBLIC_ROUTES: &[RouteId] = &[
    ("GET", "/healthz"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
];

/// Routes for devices, authenticated by their client certificate (see [`crate::firmware`]).
pub const DEVICE_ROUTES: &[RouteId] = &[("GET", "/firmware/{release}")];

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let api = api()
        .router
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/app.css", get(dashboard::style))
        .route("/firmware/{release}", get(firmware::download))
        .fallback_service(api.with_state(state.clone()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Headers on every response: no framing, no sniffing, no referrer, strict CSP (the dashboard
/// loads only its own script and style), no caching of API data, and HSTS for ACME (public
/// name) certificates only: on `localhost` it would force HTTPS onto every other local
/// development server in the browser for a year.
async fn security_headers(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut res = next.run(req).await;
    let principal = res
        .extensions()
        .get::<auth::Principal>()
        .map(auth::Principal::label);
    tracing::debug!(%method, %path, status = res.status().as_u16(), by = principal.as_deref().unwrap_or("-"), "request");
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if matches!(app.web().cert, crate::config::CertSource::Acme(_)) {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    if path.starts_with("/api/") {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}
