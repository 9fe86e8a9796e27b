//! The ingest service: the async shell around [`crate::ingest::Ingest`] and [`crate::store`].
//!
//! One task polls the MQTT event loop and forwards events; the main task batches incoming
//! PUBLISHes (up to `batch_max` or `batch_ms`), judges them, commits the batch to storage in
//! one transaction on a blocking thread, and only then sends the MQTT PUBACKs (in arrival
//! order, never across a reconnect) and the end-to-end [`Ack`]s to the devices. A crash at any
//! point loses nothing: uncommitted messages are redelivered by the broker (persistent
//! session), committed ones are dropped as duplicates by the unique `(device, seq)`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iotsec_broker::topic::{self, Ack};
use iotsec_msg::MsgKey;
use iotsec_msg::v2::{Keyring, Policy};
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use rumqttc::{
    AckMode, AsyncClient, Event, EventLoop, Incoming, MqttOptions, Publish, QoS, SessionMode,
    TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::ingest::{Ingest, OtaReport, Registration, SeenKind, Status, Verdict, classify_seen};
use crate::release::{self, OtaConfig};
use crate::store::{Batch, Inserted, Rejection, Storage};

/// Largest MQTT packet the ingest reads; at least the broker's `max_packet_size`.
pub const MAX_PACKET: usize = 1024 * 1024;

/// Counters of one ingest process (also logged).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Readings stored.
    pub stored: u64,
    /// Repeats dropped quietly (MQTT redelivery, device retransmission, duplicate key).
    pub duplicates: u64,
    /// Messages rejected.
    pub rejected: u64,
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Loads the message keys named by the config.
pub fn keyring(config: &ServerConfig) -> Result<Keyring> {
    let master = iotsec_msg::keyfile::read(&config.master_key)
        .map_err(|e| ServerError::Config(format!("{}: {e}", config.master_key.display())))?;
    let mut ring = Keyring::new(master, config.key_versions.clone());
    if let Some(path) = &config.legacy_key {
        let k = iotsec_msg::keyfile::read(path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let key = MsgKey::new(k.expose())
            .map_err(|_| ServerError::Config(format!("{}: unusable key", path.display())))?;
        ring = ring.with_legacy_key(key);
    }
    Ok(ring)
}

/// The rustls configuration the ingest connects with: the broker must chain to the CA and
/// match `broker.host`; the client identity is the service certificate.
pub fn tls(config: &ServerConfig) -> Result<ClientTls> {
    let tls_err = |e: iotsec_tls::Error| ServerError::Config(e.to_string());
    let trust = CaTrust::from_pem_file(&config.ca).map_err(tls_err)?;
    let identity = Identity::from_pem_files(&config.cert, &config.key).map_err(tls_err)?;
    ClientTls::new(&TrustPolicy::Ca(trust), Some(&identity)).map_err(tls_err)
}

type Shared = Arc<Mutex<Box<dyn Storage>>>;

fn lock(store: &Shared) -> std::sync::MutexGuard<'_, Box<dyn Storage>> {
    // A panic while holding the lock cannot leave a half transaction (SQLite rolls back), so a
    // poisoned lock is still usable.
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    store: &Shared,
    f: impl FnOnce(&mut dyn Storage) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let mut guard = lock(&store);
        f(guard.as_mut())
    })
    .await
    .map_err(|e| ServerError::Storage(format!("storage task failed: {e}")))?
}

async fn refresh_registry(store: &Shared, ingest: &mut Ingest<Keyring>) -> Result<()> {
    let devices = blocking(store, |s| s.devices()).await?;
    for d in devices {
        let reg = if d.status == "revoked" {
            Registration::Revoked
        } else {
            Registration::Active
        };
        ingest.register(&d.id, d.legacy, reg);
    }
    Ok(())
}

/// One received PUBLISH waiting for its batch to commit.
struct Pending {
    publish: Publish,
    generation: u64,
}

/// What the commit decided for one message, for the e2e ack.
enum Outcome {
    Ack {
        device: String,
        seq: u64,
    },
    /// An OTA report was stored: acknowledge it on `devices/<id>/commands/ota`.
    OtaAck {
        device: String,
        seq: u64,
    },
    None,
}

/// How often running rollouts are stepped (notices, stage changes, halts).
const ROLLOUT_TICK: Duration = Duration::from_millis(500);

/// Runs the ingest until `shutdown` resolves. Returns the counters.
pub async fn run(
    config: ServerConfig,
    storage: Box<dyn Storage>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Stats> {
    let store: Shared = Arc::new(Mutex::new(storage));
    let policy = Policy {
        max_skew_ms: config.max_skew_ms,
        ..Policy::default()
    };
    let mut ingest = Ingest::new(keyring(&config)?, policy);
    // Firmware distribution: OTA reports are only read (and rollouts driven) with an [ota]
    // section, i.e. when the storage keeps them.
    let ota = OtaConfig::of_server(&config)?;
    refresh_registry(&store, &mut ingest).await?;
    // Not with a share group: the newest stored seq is the other workers' progress, and this
    // worker's backlog (its broker session after a restart) is older; the unique key decides.
    if config.share_group.is_none() {
        for (device, seq) in blocking(&store, |s| s.newest_seqs()).await? {
            ingest.seed(&device, seq);
        }
    }
    let tls = tls(&config)?;

    let mut options = MqttOptions::new(
        config.client_id.clone(),
        (config.broker_host.clone(), config.broker_port),
    );
    options
        .set_keep_alive(30)
        // Accept anything the broker accepts (its max_packet_size is 256 KiB): a message too
        // large for the verifier must be rejected and counted, not kill the connection (which
        // would make the broker redeliver it forever).
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_session_mode(SessionMode::Persistent)
        .set_ack_mode(AckMode::Manual)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.config(),
        )));
    let (client, eventloop) = AsyncClient::builder(options).capacity(4096).build();
    let (tx, mut rx) = mpsc::channel::<(u64, Event)>(4096);
    // Connection generation, bumped by the poller the moment a connection fails (before the
    // next poll can reconnect): PUBACKs are only sent for messages of the current connection,
    // since acking a packet id of an earlier connection makes rumqttc drop the new one. The
    // poller stamps each event with the generation it arrived on: read here instead, a
    // message still in the channel when its connection failed would look like one of the
    // next connection.
    let connection = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = tokio::spawn(poll(eventloop, tx, Arc::clone(&connection)));

    let mut stats = Stats::default();
    let mut batch: Vec<Pending> = Vec::new();
    // At most one commit in flight; while it runs, the next batch fills (pipelining the
    // network with the disk). Its PUBACKs go out when it completes, in arrival order.
    let mut committing: Option<InFlight> = None;
    let batch_wait = Duration::from_millis(config.batch_ms);
    let mut registry_tick = tokio::time::interval(Duration::from_secs(2));
    let mut rollout_tick = tokio::time::interval(ROLLOUT_TICK);
    rollout_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut deadline: Option<tokio::time::Instant> = None;

    loop {
        let due = !batch.is_empty()
            && (batch.len() >= config.batch_max
                || deadline.is_some_and(|d| d <= tokio::time::Instant::now()));
        if due && committing.is_none() {
            committing = Some(start_commit(
                std::mem::take(&mut batch),
                &mut ingest,
                &store,
            ));
            deadline = None;
        }
        let flush_at = if committing.is_none() { deadline } else { None };
        tokio::select! {
            () = &mut shutdown => break,
            done = async {
                match committing.as_mut() {
                    Some(c) => (&mut c.task).await,
                    None => std::future::pending().await,
                }
            } => {
                let in_flight = committing.take().map(|c| c.batch).unwrap_or_default();
                let (outcomes, counts) = done
                    .map_err(|e| ServerError::Storage(format!("storage task failed: {e}")))??;
                tracing::debug!(messages = in_flight.len(), stored = counts.stored, duplicates = counts.duplicates, rejected = counts.rejected, "batch committed");
                stats.add(&counts);
                finish(in_flight, outcomes, &client, &connection).await?;
            }
            ev = rx.recv() => {
                let Some((generation, ev)) = ev else { break };
                match ev {
                    Event::Incoming(Incoming::ConnAck(ack)) => {
                        // Acks owed on the old connection must not be sent on the new one; the
                        // broker redelivers those messages (and storage drops the repeats).
                        batch.clear();
                        deadline = None;
                        tracing::info!(session_present = ack.session_present, "connected to the broker");
                        let leaves: &[&str] = if ota.is_some() {
                            &["telemetry", "status", "ota"]
                        } else {
                            &["telemetry", "status"]
                        };
                        for leaf in leaves {
                            let filter = topic::ingest_filter(leaf, config.share_group.as_deref());
                            client
                                .subscribe(filter, QoS::AtLeastOnce)
                                .await
                                .map_err(|e| ServerError::Broker(e.to_string()))?;
                        }
                    }
                    Event::Incoming(Incoming::Publish(publish)) => {
                        batch.push(Pending { publish, generation });
                        if deadline.is_none() {
                            deadline = Some(tokio::time::Instant::now() + batch_wait);
                        }
                    }
                    _ => {}
                }
            }
            () = async { if let Some(d) = flush_at { tokio::time::sleep_until(d).await } else { std::future::pending().await } } => {}
            _ = registry_tick.tick() => {
                refresh_registry(&store, &mut ingest).await?;
            }
            _ = rollout_tick.tick(), if ota.is_some() => {
                if let Some(ota) = &ota {
                    drive_rollouts(&store, ota, &client).await?;
                }
            }
        }
    }
    // Shutting down: finish what is in flight and commit what was received.
    if let Some(c) = committing.take() {
        let (outcomes, counts) = c
            .task
            .await
            .map_err(|e| ServerError::Storage(format!("storage task failed: {e}")))??;
        stats.add(&counts);
        finish(c.batch, outcomes, &client, &connection).await?;
    }
    if !batch.is_empty() {
        let c = start_commit(std::mem::take(&mut batch), &mut ingest, &store);
        let (outcomes, counts) = c
            .task
            .await
            .map_err(|e| ServerError::Storage(format!("storage task failed: {e}")))??;
        stats.add(&counts);
        finish(c.batch, outcomes, &client, &connection).await?;
    }
    let _ = client.disconnect().await;
    poller.abort();
    Ok(stats)
}

/// Steps the running rollouts and publishes their notices. A rollout that cannot be driven
/// (its release file is gone) is logged, not fatal to the ingest.
async fn drive_rollouts(store: &Shared, ota: &OtaConfig, client: &AsyncClient) -> Result<()> {
    let config = ota.clone();
    let notices = match blocking(store, move |s| release::drive(s, &config, now_ms())).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot drive the rollouts");
            return Ok(());
        }
    };
    for n in notices {
        client
            .publish(
                n.topic,
                n.payload,
                rumqttc::PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .map_err(|e| ServerError::Broker(e.to_string()))?;
    }
    Ok(())
}

async fn poll(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<(u64, Event)>,
    connection: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match eventloop.poll().await {
            // Forward only incoming packets (at most the broker's in-flight window): our own
            // outgoing ones could fill the channel while the main loop waits for room in the
            // client's request queue, which drains only while this task polls (a deadlock).
            Ok(Event::Outgoing(_)) => backoff = Duration::from_millis(200),
            Ok(ev) => {
                backoff = Duration::from_millis(200);
                let generation = connection.load(std::sync::atomic::Ordering::SeqCst);
                if tx.send((generation, ev)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                connection.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!(error = %e, "broker connection lost; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

type CommitResult = Result<(Vec<Outcome>, Counts)>;

/// A batch whose commit is running on a blocking thread.
struct InFlight {
    batch: Vec<Pending>,
    task: tokio::task::JoinHandle<CommitResult>,
}

/// Judges a batch (CPU, on this task) and starts its commit on a blocking thread.
fn start_commit(batch: Vec<Pending>, ingest: &mut Ingest<Keyring>, store: &Shared) -> InFlight {
    let now = now_ms();
    let mut verdicts = Vec::with_capacity(batch.len());
    let mut status_updates = Vec::new();
    let mut status_rejections = Vec::new();
    let mut ota_reports = Vec::new();
    for (index, p) in batch.iter().enumerate() {
        let topic = String::from_utf8_lossy(&p.publish.topic);
        if topic.ends_with("/ota") {
            match ingest.handle_ota(&topic, &p.publish.payload, now) {
                Ok(report) => ota_reports.push((index, report)),
                Err(r) => status_rejections.push(r),
            }
            verdicts.push(None);
        } else if topic.ends_with("/status") {
            match ingest.handle_status(&topic, &p.publish.payload, now) {
                Ok(Status::Signed { device, payload }) => status_updates.push((device, payload)),
                Ok(Status::Offline { device }) => {
                    tracing::info!(%device, "device went offline (last will)");
                }
                Err(r) => status_rejections.push(r),
            }
            verdicts.push(None);
        } else {
            let verdict = ingest.handle(&topic, &p.publish.payload, p.publish.dup, now);
            verdicts.push(Some((verdict, p.publish.dup)));
        }
    }
    let store = Arc::clone(store);
    let task = tokio::task::spawn_blocking(move || {
        let mut guard = lock(&store);
        commit(
            guard.as_mut(),
            verdicts,
            status_updates,
            status_rejections,
            (now, ota_reports),
        )
    });
    InFlight { batch, task }
}

/// After a commit: PUBACKs in arrival order (only for this connection), then the end-to-end
/// acks telling each device which of its seqs are stored.
async fn finish(
    batch: Vec<Pending>,
    outcomes: Vec<Outcome>,
    client: &AsyncClient,
    connection: &std::sync::atomic::AtomicU64,
) -> Result<()> {
    for p in batch {
        if p.generation == connection.load(std::sync::atomic::Ordering::SeqCst) {
            client
                .ack(&p.publish)
                .await
                .map_err(|e| ServerError::Broker(e.to_string()))?;
        }
    }
    let mut per_device: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for o in &outcomes {
        if let Outcome::Ack { device, seq } = o {
            per_device.entry(device.clone()).or_default().push(*seq);
        }
    }
    for o in &outcomes {
        if let Outcome::OtaAck { device, seq } = o {
            client
                .publish(
                    topic::ota_command(device),
                    release::ack_payload(*seq),
                    rumqttc::PublishOptions::new(QoS::AtLeastOnce),
                )
                .await
                .map_err(|e| ServerError::Broker(e.to_string()))?;
        }
    }
    for (device, seqs) in per_device {
        for ack in Ack::from_seqs(seqs).chunks() {
            client
                .publish(
                    topic::ack(&device),
                    ack.encode(),
                    rumqttc::PublishOptions::new(QoS::AtLeastOnce),
                )
                .await
                .map_err(|e| ServerError::Broker(e.to_string()))?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    stored: u64,
    duplicates: u64,
    rejected: u64,
}

impl Stats {
    fn add(&mut self, c: &Counts) {
        self.stored += c.stored;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
    }
}

fn commit(
    s: &mut dyn Storage,
    verdicts: Vec<Option<(Verdict, bool)>>,
    status_updates: Vec<(String, String)>,
    mut status_rejections: Vec<Rejection>,
    (received_ms, ota_reports): (i64, Vec<(usize, OtaReport)>),
) -> Result<(Vec<Outcome>, Counts)> {
    // A report that verifies but says nothing this server understands is counted, not stored.
    let mut ota_updates = Vec::with_capacity(ota_reports.len());
    for (index, r) in ota_reports {
        match release::parse_report(&r.device, &r.payload, received_ms) {
            Some(update) => ota_updates.push((index, r.seq, update)),
            None => status_rejections.push(Rejection {
                received_ms,
                device: Some(r.device),
                reason: "malformed_report".into(),
                size: r.payload.len(),
            }),
        }
    }
    let mut db = Batch::default();
    let mut outcomes = Vec::with_capacity(verdicts.len());
    let mut counts = Counts::default();
    // For each reading in `db.readings`: its outcome index and the transport's DUP flag.
    let mut reading_index = Vec::new();
    let mut seen = Vec::new();
    for v in verdicts {
        match v {
            None => outcomes.push(Outcome::None),
            Some((Verdict::Accept(r), dup)) => {
                reading_index.push((outcomes.len(), dup));
                outcomes.push(Outcome::Ack {
                    device: r.device.clone(),
                    seq: r.seq,
                });
                db.readings.push(r);
            }
            Some((Verdict::Reject(r), _)) => {
                db.rejections.push(r);
                outcomes.push(Outcome::None);
            }
            Some((
                Verdict::Seen {
                    device,
                    seq,
                    digest,
                    redelivered,
                    rejection,
                },
                _,
            )) => {
                // Classified after this batch's readings are inserted: the stored copy may be
                // in this very batch (a retransmission right behind its original).
                seen.push((
                    outcomes.len(),
                    device.clone(),
                    seq,
                    digest,
                    redelivered,
                    rejection,
                ));
                outcomes.push(Outcome::Ack { device, seq });
            }
        }
    }
    db.rejections.extend(status_rejections);
    counts.rejected = db.rejections.len() as u64;
    let inserted = s.commit(&db)?;
    // A reading the replay window let through but whose (device, seq) was already stored: after
    // a restart (the window only knows the newest seq) or with several workers sharing the
    // stream, the unique key is the final word. Classify it exactly like a seen message.
    let mut late_replays = Vec::new();
    for (k, i) in inserted.iter().enumerate() {
        match i {
            Inserted::New => counts.stored += 1,
            Inserted::Duplicate => {
                let (index, dup) = reading_index[k];
                let r = &db.readings[k];
                let stored = s.stored_sig(&r.device, r.seq)?;
                match classify_seen(stored.as_deref(), &r.sig, dup) {
                    SeenKind::Replay => {
                        late_replays.push(Rejection {
                            received_ms: r.received_ms,
                            device: Some(r.device.clone()),
                            reason: "replayed".into(),
                            size: r.payload.len(),
                        });
                        outcomes[index] = Outcome::None;
                    }
                    SeenKind::Redelivery | SeenKind::Retransmission => counts.duplicates += 1,
                }
            }
        }
    }
    for (index, device, seq, digest, redelivered, rejection) in seen {
        let stored = s.stored_sig(&device, seq)?;
        match classify_seen(stored.as_deref(), &digest, redelivered) {
            SeenKind::Replay => {
                tracing::debug!(%device, seq, redelivered, stored = stored.is_some(), "replay refused");
                late_replays.push(rejection);
                outcomes[index] = Outcome::None;
            }
            SeenKind::Redelivery | SeenKind::Retransmission => counts.duplicates += 1,
        }
    }
    if !late_replays.is_empty() {
        counts.rejected += late_replays.len() as u64;
        s.commit(&Batch {
            readings: Vec::new(),
            rejections: late_replays,
        })?;
    }
    for (device, payload) in status_updates {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload)
            && let Some(fw) = v.get("firmware").and_then(|f| f.as_str())
            && fw.len() <= 64
        {
            s.set_firmware(&device, fw)?;
        }
    }
    for (index, seq, update) in ota_updates {
        s.set_device_ota(&update)?;
        outcomes[index] = Outcome::OtaAck {
            device: update.device,
            seq,
        };
    }
    Ok((outcomes, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reading;
    use crate::store::sqlite::Sqlite;

    fn reading(seq: u64, digest: &str) -> Reading {
        Reading {
            device: "d".into(),
            seq,
            ts_ms: 1,
            received_ms: 2,
            payload: "{}".into(),
            sig: digest.into(),
        }
    }

    fn seen(seq: u64, digest: &str, redelivered: bool) -> Verdict {
        Verdict::Seen {
            device: "d".into(),
            seq,
            digest: digest.into(),
            redelivered,
            rejection: Rejection {
                received_ms: 3,
                device: Some("d".into()),
                reason: "replayed".into(),
                size: 10,
            },
        }
    }

    #[test]
    fn a_retransmission_right_behind_its_original_in_one_batch_is_not_a_replay() {
        let mut db = Sqlite::in_memory().unwrap();
        db.upsert_device("d", false, 1).unwrap();
        let (outcomes, counts) = commit(
            &mut db,
            vec![
                Some((Verdict::Accept(reading(7, "aa")), false)),
                Some((seen(7, "bb", false), false)),
            ],
            vec![],
            vec![],
            (0, vec![]),
        )
        .unwrap();
        assert_eq!(
            (counts.stored, counts.duplicates, counts.rejected),
            (1, 1, 0)
        );
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Ack { seq: 7, .. }))
        );
    }

    #[test]
    fn ota_reports_are_stored_and_acked_and_malformed_ones_counted() {
        let mut db = Sqlite::in_memory().unwrap();
        db.upsert_device("d", false, 1).unwrap();
        let report = |seq, payload: &str| OtaReport {
            device: "d".into(),
            payload: payload.into(),
            seq,
        };
        let (outcomes, counts) = commit(
            &mut db,
            vec![None, None],
            vec![],
            vec![],
            (
                77,
                vec![
                    (
                        0,
                        report(5, r#"{"state":"rolled_back","reason":"trial_exited"}"#),
                    ),
                    (1, report(6, r#"{"state":"sleeping"}"#)),
                ],
            ),
        )
        .unwrap();
        assert!(matches!(&outcomes[0], Outcome::OtaAck { device, seq: 5 } if device == "d"));
        assert!(matches!(outcomes[1], Outcome::None));
        assert_eq!(counts.rejected, 1);
        let stored = db.device_ota().unwrap();
        assert_eq!(
            (
                stored[0].state.as_str(),
                stored[0].reason.as_deref(),
                stored[0].updated_ms
            ),
            ("rolled_back", Some("trial_exited"), 77)
        );
        assert_eq!(
            db.rejection_counts().unwrap(),
            vec![("malformed_report".into(), 1)]
        );
    }

    #[test]
    fn identical_bytes_are_a_replay_unless_flagged_as_redelivered() {
        let mut db = Sqlite::in_memory().unwrap();
        db.upsert_device("d", false, 1).unwrap();
        commit(
            &mut db,
            vec![Some((Verdict::Accept(reading(1, "aa")), false))],
            vec![],
            vec![],
            (0, vec![]),
        )
        .unwrap();
        let (_, c) = commit(
            &mut db,
            vec![Some((seen(1, "aa", true), true))],
            vec![],
            vec![],
            (0, vec![]),
        )
        .unwrap();
        assert_eq!((c.duplicates, c.rejected), (1, 0));
        let (o, c) = commit(
            &mut db,
            vec![Some((seen(1, "aa", false), false))],
            vec![],
            vec![],
            (0, vec![]),
        )
        .unwrap();
        assert_eq!((c.duplicates, c.rejected), (0, 1));
        assert!(matches!(o[0], Outcome::None));
        // Past the window after a restart: the window let it through, the unique key caught it.
        let (_, c) = commit(
            &mut db,
            vec![Some((Verdict::Accept(reading(1, "aa")), false))],
            vec![],
            vec![],
            (0, vec![]),
        )
        .unwrap();
        assert_eq!((c.stored, c.rejected), (0, 1));
        assert_eq!(db.rejection_counts().unwrap(), vec![("replayed".into(), 2)]);
    }
}
