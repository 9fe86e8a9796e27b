//! Certificates from an ACME CA (RFC 8555; Let's Encrypt, or pebble in tests) with
//! instant-acme on aws-lc-rs, validated by HTTP-01 (RFC 8555 section 8.3).
//!
//! * The account credentials (they hold the account's private key) live in `account_key`,
//!   mode 0600, next to the directory URL they belong to; a different directory gets a new
//!   account.
//! * The issued chain and its key live in `cache/cert.pem` and `cache/key.pem` (0600) and are
//!   reused across restarts while they cover the configured domains and are not due.
//! * Renewal is due when less than a third of the certificate's lifetime is left
//!   ([`renewal_due`]); [`Acme::ensure`] takes the time as an argument so tests can force it.
//! * The HTTP-01 responder ([`http01_router`]) answers only
//!   `/.well-known/acme-challenge/<token>` for tokens of orders in progress.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use iotsec_pki::file::{Durability, Mode, write_atomic};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::config::AcmeConfig;
use crate::error::{Result, WebError};
use crate::tls::{CertSlot, certified_key, dns_names, validity};

/// Whether a certificate valid from `not_before` to `not_after` (seconds) should be renewed at
/// `now`: when less than a third of its lifetime is left (Let's Encrypt's advice for 90-day
/// certificates: renew after 60 days).
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    let lifetime = not_after.saturating_sub(not_before);
    lifetime <= 0 || not_after.saturating_sub(now) < lifetime / 3
}

/// When renewal of a certificate becomes due (seconds).
pub fn renewal_at(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_after - lifetime / 3
}

/// Pending HTTP-01 answers: token -> key authorization.
pub type Challenges = Arc<Mutex<HashMap<String, String>>>;

fn challenges_lock(c: &Challenges) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The HTTP-01 responder.
pub fn http01_router(challenges: Challenges) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(challenges)
}

async fn answer(State(c): State<Challenges>, UrlPath(token): UrlPath<String>) -> Response {
    match challenges_lock(&c).get(&token) {
        Some(key_auth) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            key_auth.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What [`Acme::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The cached certificate is good; installed.
    Reused,
    /// A new certificate was issued and installed.
    Issued,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The ACME client of one HTTPS listener.
pub struct Acme {
    config: AcmeConfig,
    slot: Arc<CertSlot>,
    challenges: Challenges,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("directory", &self.config.directory)
            .field("domains", &self.config.domains)
            .finish_non_exhaustive()
    }
}

fn acme_err(what: &str) -> impl FnOnce(instant_acme::Error) -> WebError + '_ {
    move |e| WebError::Acme(format!("{what}: {e}"))
}

fn write(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(WebError::io(dir.display()))?;
    }
    write_atomic(path, bytes, mode, Durability::Sync).map_err(|e| WebError::Config(e.to_string()))
}

impl Acme {
    /// An ACME client installing its certificates into `slot`.
    pub fn new(config: AcmeConfig, slot: Arc<CertSlot>) -> Acme {
        Acme {
            config,
            slot,
            challenges: Arc::default(),
        }
    }

    /// The pending challenge answers (for [`http01_router`]).
    pub fn challenges(&self) -> Challenges {
        Arc::clone(&self.challenges)
    }

    fn cert_path(&self) -> std::path::PathBuf {
        self.config.cache.join("cert.pem")
    }

    fn key_path(&self) -> std::path::PathBuf {
        self.config.cache.join("key.pem")
    }

    /// The cached chain's leaf validity, when the cache holds a usable certificate for the
    /// configured domains.
    fn cached(&self) -> Option<(rustls::sign::CertifiedKey, (i64, i64))> {
        let chain = std::fs::read(self.cert_path()).ok()?;
        let key = std::fs::read(self.key_path()).ok()?;
        let ck = certified_key(&chain, &key).ok()?;
        let leaf = ck.cert.first()?;
        let names = dns_names(leaf);
        if !self.config.domains.iter().all(|d| names.contains(d)) {
            return None;
        }
        let v = validity(leaf)?;
        Some((ck, v))
    }

    /// `(not_before, not_after)` of the certificate in the cache.
    pub fn cached_validity(&self) -> Option<(i64, i64)> {
        self.cached().map(|(_, v)| v)
    }

    /// Installs the cached certificate if it is good at `now` (seconds), else obtains a new
    /// one and installs that.
    pub async fn ensure(&self, now: i64) -> Result<Ensured> {
        if let Some((ck, (nb, na))) = self.cached()
            && !renewal_due(nb, na, now)
        {
            self.slot.set(ck);
            return Ok(Ensured::Reused);
        }
        self.obtain().await?;
        Ok(Ensured::Issued)
    }

    async fn account(&self) -> Result<Account> {
        let builder = || -> Result<instant_acme::AccountBuilder> {
            match &self.config.directory_ca {
                Some(root) => Account::builder_with_root(root).map_err(acme_err("directory CA")),
                None => Account::builder().map_err(acme_err("HTTP client")),
            }
        };
        let path = &self.config.account_key;
        if let Ok(text) = std::fs::read(path)
            && let Ok(stored) = serde_json::from_slice::<StoredAccount>(&text)
            && stored.directory == self.config.directory
        {
            return builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(acme_err("account"));
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                None,
            )
            .await
            .map_err(acme_err("new account"))?;
        let stored = StoredAccount {
            directory: self.config.directory.clone(),
            credentials,
        };
        let text = serde_json::to_vec_pretty(&stored)
            .map_err(|e| WebError::Acme(format!("account credentials: {e}")))?;
        // The credentials hold the account's private key.
        write(path, &text, Mode::Private)?;
        tracing::info!(directory = %self.config.directory, "ACME account created");
        Ok(account)
    }

    /// Runs one order to completion and installs the certificate.
    async fn obtain(&self) -> Result<()> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(acme_err("new order"))?;
        let mut tokens = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(acme_err("authorization"))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(WebError::Acme(format!(
                            "authorization for {} is {other:?}",
                            authz.identifier()
                        )));
                    }
                }
                let mut challenge = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| WebError::Acme("the CA offers no http-01 challenge".into()))?;
                challenges_lock(&self.challenges).insert(
                    challenge.token.clone(),
                    challenge.key_authorization().as_str().to_string(),
                );
                tokens.push(challenge.token.clone());
                challenge.set_ready().await.map_err(acme_err("challenge"))?;
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(200))
            .timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await;
        let clear = || {
            let mut c = challenges_lock(&self.challenges);
            for t in &tokens {
                c.remove(t);
            }
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                clear();
                return Err(acme_err("order")(e));
            }
        };
        clear();
        if status != OrderStatus::Ready {
            return Err(WebError::Acme(format!(
                "order is {status:?}, not ready (did the CA reach {}?)",
                self.config.http_listen
            )));
        }
        // A fresh key per certificate (ECDSA P-256 through aws-lc-rs).
        let key = rcgen::KeyPair::generate()
            .map_err(|e| WebError::Acme(format!("key generation: {e}")))?;
        let mut params = rcgen::CertificateParams::new(self.config.domains.clone())
            .map_err(|e| WebError::Acme(format!("CSR: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| WebError::Acme(format!("CSR: {e}")))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(acme_err("finalize"))?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .map_err(acme_err("certificate"))?;
        let key_pem = key.serialize_pem();
        let ck = certified_key(chain.as_bytes(), key_pem.as_bytes())?;
        // Key first: a crash in between leaves a key without its certificate (ignored), never
        // a new certificate with the old key.
        write(&self.key_path(), key_pem.as_bytes(), Mode::Private)?;
        write(&self.cert_path(), chain.as_bytes(), Mode::Public)?;
        let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .and_then(std::result::Result::ok);
        let v = leaf.as_ref().and_then(validity);
        tracing::info!(domains = ?self.config.domains, not_after = v.map(|v| v.1), "ACME certificate issued");
        self.slot.set(ck);
        Ok(())
    }

    /// Keeps the certificate fresh until the task is dropped: sleeps until renewal is due
    /// (re-checking at least every 12 hours), renews, retries failures every 10 minutes.
    pub async fn renew_forever(self: Arc<Self>) {
        loop {
            let now = now_s();
            let wait = match self.cached_validity() {
                Some((nb, na)) => {
                    Duration::from_secs(u64::try_from(renewal_at(nb, na) - now).unwrap_or(0))
                }
                None => Duration::ZERO,
            }
            .clamp(Duration::from_secs(60), Duration::from_secs(12 * 3600));
            tokio::time::sleep(wait).await;
            match self.ensure(now_s()).await {
                Ok(Ensured::Issued) => tracing::info!("ACME certificate renewed"),
                Ok(Ensured::Reused) => {}
                Err(e) => {
                    tracing::error!(error = %e, "ACME renewal failed; retrying in 10 minutes");
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
            }
        }
    }
}

/// Seconds since the epoch.
pub fn now_s() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_in_the_last_third_of_the_lifetime() {
        let day = 86_400;
        let (nb, na) = (0, 90 * day);
        assert!(!renewal_due(nb, na, 0));
        assert!(!renewal_due(nb, na, 59 * day));
        assert!(!renewal_due(nb, na, 60 * day));
        assert!(renewal_due(nb, na, 60 * day + 1));
        assert!(renewal_due(nb, na, 100 * day));
        assert!(renewal_due(5, 5, 0), "no lifetime");
        assert_eq!(renewal_at(nb, na), 60 * day);
    }

    #[tokio::test]
    async fn http01_answers_only_pending_tokens() {
        use tower::ServiceExt as _;
        let c: Challenges = Arc::default();
        challenges_lock(&c).insert("tok".into(), "tok.thumb".into());
        let app = http01_router(Arc::clone(&c));
        let get = |uri: &str| {
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app
            .clone()
            .oneshot(get("/.well-known/acme-challenge/tok"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app
            .clone()
            .oneshot(get("/.well-known/acme-challenge/other"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = app.oneshot(get("/api/devices")).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
