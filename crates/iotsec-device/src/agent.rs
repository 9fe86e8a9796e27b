//! The async shell of the device agent: reads the source into the disk queue, drives the
//! [`Outbox`] with MQTT events and performs its actions.
//!
//! Two tasks: the MQTT event loop runs in its own task (it must be polled continuously,
//! and reconnects with jittered exponential backoff), forwarding what matters over an
//! unbounded channel; the main loop owns the queue, the sequence counter, the signer and
//! the outbox, and never blocks on the MQTT client (publishes use `try_publish` into a
//! request channel sized for twice the outbox window).
//!
//! Order of durability: a reading gets its seq (the seq bound is on disk first), is appended
//! to the queue, fsynced in a group of up to [`SYNC_GROUP`] readings or after [`SYNC_DELAY`],
//! and only then loaded into the outbox and published. It leaves the queue when the ingest's
//! ack names its seq.

use std::future::Future;
use std::time::Duration;

use iotsec_broker::topic::Ack;
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, NoticeFailureReason, Packet,
    PublishOptions, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::link::{self, Failure, Topics, Will};
use crate::ota::{self, Command as OtaCommand, FromOta, ToOta};
use crate::outbox::{Action, Event, Outbox, OutboxConfig};
use crate::queue::{Queue, QueueOptions};
use crate::reading::{self, Sealer};
use crate::source::{Source, wall_ms};
use crate::state::{SeqStore, StateLock};

/// Readings fsynced together at most.
pub const SYNC_GROUP: usize = 64;

/// Longest a reading waits for its group's fsync.
pub const SYNC_DELAY: Duration = Duration::from_millis(2);

/// How the agent runs (defaults suit a gateway; tests shorten the timers).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Read at most this many readings from the source, then exit once the queue is empty
    /// (every reading, including any left from earlier runs, acked by the ingest).
    pub count: Option<u64>,
    /// Outbox window and retry timeout.
    pub outbox: OutboxConfig,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How often the queue's head is written (at most).
    pub head_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            count: None,
            outbox: OutboxConfig::default(),
            backoff: Backoff::default(),
            keep_alive: Duration::from_secs(30),
            head_interval: Duration::from_secs(1),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Readings found in the queue at start (left by an earlier run).
    pub backlog: u64,
    /// Readings taken from the source and queued.
    pub queued: u64,
    /// Readings acked by the ingest and removed from the queue.
    pub acked: u64,
    /// Publishes of a reading after its first (retry timeout or reconnect).
    pub retransmissions: u64,
    /// Source lines refused as readings.
    pub invalid: u64,
    /// Connections established.
    pub connections: u64,
    /// A firmware update was installed and the agent stopped so the supervisor boots it.
    pub update_installed: bool,
}

/// What the MQTT task tells the main loop.
#[derive(Debug)]
enum Net {
    Connected,
    Down(Failure),
    Ack(Vec<u8>),
    /// A message on `devices/<id>/commands/ota`.
    Ota(Vec<u8>),
}

/// Aborts a spawned task when dropped (the agent's future may be dropped at any await).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the agent until the source is exhausted (or `options.count` readings were taken)
/// and the queue is empty, or until `shutdown` completes. Dropping the future stops it at
/// once, like a crash: the queue on disk is consistent at every await point.
///
/// # Errors
/// Disk and state errors ([`Error::Io`], [`Error::StateCorrupt`]), a failing source,
/// [`Error::SeqExhausted`]. Broker and network failures are not errors: the agent logs them
/// and keeps reconnecting, with every reading kept in the queue.
pub async fn run<S: Source>(
    config: &Config,
    mut source: S,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary> {
    let mut shell = Shell::open(config, &options)?;
    let tls = config.client_tls()?;
    let window = options.outbox.window.max(1);
    let (client, eventloop) = link::client(
        config,
        &tls,
        config.id.to_string(),
        Will::Offline,
        options.keep_alive,
        2 * window + 64,
    )?;
    let (net_tx, mut net_rx) = mpsc::unbounded_channel();
    let mut driver = AbortOnDrop(tokio::spawn(drive(
        eventloop,
        client.clone(),
        shell.topics.clone(),
        tls,
        options.backoff.clone(),
        net_tx,
    )));
    shell.client = Some(client.clone());
    // Firmware updates: a worker of its own (downloads must not stall the readings).
    let (ota_tx, mut from_ota) = mpsc::unbounded_channel();
    let _ota_worker = config.ota.clone().map(|settings| {
        let (tx, rx) = mpsc::unbounded_channel();
        shell.ota = Some(tx);
        AbortOnDrop(tokio::spawn(ota::run(
            settings,
            config.identity.clone(),
            config.state_dir.clone(),
            rx,
            ota_tx.clone(),
        )))
    });
    drop(ota_tx);
    shell.settle()?;

    let mut shutdown = std::pin::pin!(shutdown);
    let mut source_open = true;
    let mut sync_at: Option<Instant> = None;
    let mut head_timer = tokio::time::interval(options.head_interval);
    head_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pubacks: JoinSet<Option<u64>> = JoinSet::new();
    loop {
        let taking = source_open && options.count.is_none_or(|n| shell.summary.queued < n);
        if !taking && shell.queue.is_empty() && shell.queue.unsynced() == 0 {
            break;
        }
        let retry_at = shell.outbox.next_deadline().map(|d| shell.start + d);
        let want_source = taking && shell.queue.has_room();
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
            Some(net) = net_rx.recv() => shell.net(net)?,
            Some(msg) = from_ota.recv() => {
                if shell.ota_message(msg)? {
                    tracing::info!("stopping so that the supervisor boots the installed update");
                    shell.summary.update_installed = true;
                    break;
                }
            }
            Some(done) = pubacks.join_next(), if !pubacks.is_empty() => {
                if let Ok(Some(seq)) = done {
                    shell.handle(Event::Published { seq });
                }
            }
            () = sleep_until(retry_at) => shell.handle(Event::Tick),
            () = sleep_until(sync_at) => {
                shell.queue.sync()?;
                sync_at = None;
            }
            item = source.next(), if want_source => match item {
                Ok(Some(line)) => {
                    if shell.take(&line)? {
                        if shell.queue.unsynced() >= SYNC_GROUP {
                            shell.queue.sync()?;
                            sync_at = None;
                        } else if sync_at.is_none() {
                            sync_at = Some(Instant::now() + SYNC_DELAY);
                        }
                    }
                }
                Ok(None) => {
                    tracing::info!("the reading source ended");
                    source_open = false;
                }
                Err(Error::InvalidReading { len, reason }) => shell.invalid(len, &reason),
                Err(e) => return Err(e),
            },
            _ = head_timer.tick() => shell.queue.persist_head()?,
        }
        shell.settle()?;
        shell.spawn_trackers(&mut pubacks);
    }

    // Orderly end: everything durable, the head written, an explicit offline status.
    shell.queue.sync()?;
    shell.queue.persist_head()?;
    // Only with nothing left to send: a status must not overtake older readings (see
    // `Shell::status_in_order`).
    if shell.outbox.is_connected() && shell.queue.is_empty() {
        shell.status("offline")?;
    }
    // The MQTT task ends once the DISCONNECT is out (no will is published then).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = client.disconnect().await;
        let _ = (&mut driver.0).await;
    })
    .await;
    Ok(shell.summary)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The main loop's state.
struct Shell {
    _lock: StateLock,
    outbox: Outbox,
    queue: Queue,
    seqs: SeqStore,
    sealer: Sealer,
    topics: Topics,
    firmware: String,
    client: Option<AsyncClient>,
    start: Instant,
    actions: Vec<Action>,
    signed: Vec<u8>,
    /// PUBACK notices to wait for: (seq, notice).
    notices: Vec<(u64, rumqttc::PublishNotice)>,
    /// The "online" status owed since the last connect (see [`Shell::status_in_order`]).
    status_due: bool,
    /// The OTA worker, when `[ota]` is configured.
    ota: Option<mpsc::UnboundedSender<ToOta>>,
    /// Seq of the outcome report waiting for the server's ack.
    ota_outcome_seq: Option<u64>,
    summary: Summary,
}

impl Shell {
    fn open(config: &Config, options: &RunOptions) -> Result<Shell> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(Error::io("create", &config.state_dir))?;
        let lock = StateLock::acquire(&config.state_dir)?;
        let (queue, report) = Queue::open(
            &config.state_dir.join("queue"),
            QueueOptions::with_max_bytes(config.max_queue_bytes),
        )?;
        for t in &report.truncated {
            tracing::warn!(
                segment = %t.path.display(),
                offset = t.offset,
                dropped_bytes = t.dropped,
                reason = %t.reason,
                "queue: cut a torn record (a crash during a write); earlier readings are kept"
            );
        }
        if report.head_ignored {
            tracing::warn!("queue: unreadable head file ignored; unacked readings are resent");
        }
        let seqs = SeqStore::open(&config.state_dir, queue.last_seq().map_or(0, |l| l + 1))?;
        tracing::info!(
            device = %config.id,
            broker = %config.broker,
            policy = %config.policy.kind(),
            backlog = report.pending,
            next_seq = seqs.peek(),
            "device agent starting"
        );
        Ok(Shell {
            _lock: lock,
            outbox: Outbox::new(options.outbox),
            queue,
            seqs,
            sealer: Sealer::new(config.kid.clone(), config.msg_key.clone()),
            topics: Topics::new(config.id.as_str()),
            // Under the OTA supervisor, the running slot's (signed) version.
            firmware: std::env::var("IOTSEC_OTA_VERSION")
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 64)
                .unwrap_or_else(|| config.firmware_version.clone()),
            client: None,
            start: Instant::now(),
            actions: Vec::new(),
            signed: Vec::new(),
            notices: Vec::new(),
            status_due: false,
            ota: None,
            ota_outcome_seq: None,
            summary: Summary {
                backlog: report.pending,
                ..Summary::default()
            },
        })
    }

    fn handle(&mut self, event: Event) {
        let now = self.start.elapsed();
        self.outbox.handle(now, event, &mut self.actions);
    }

    /// Checks a source line and queues it with a fresh seq. `Ok(false)` if it was refused.
    fn take(&mut self, line: &[u8]) -> Result<bool> {
        match self.sealer.prepare(line, wall_ms()) {
            Ok(reading) => {
                let seq = self.seqs.allocate()?;
                self.queue.append(seq, &reading)?;
                self.summary.queued += 1;
                Ok(true)
            }
            Err(Error::InvalidReading { len, reason }) => {
                self.invalid(len, &reason);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn invalid(&mut self, len: usize, reason: &str) {
        self.summary.invalid += 1;
        tracing::warn!(len, reason, "skipped a source line that is not a reading");
    }

    fn net(&mut self, net: Net) -> Result<()> {
        match net {
            Net::Connected => {
                self.summary.connections += 1;
                tracing::info!(
                    unacked = self.outbox.unacked(),
                    "connected; (re)sending every unacked reading"
                );
                self.status_due = true;
                self.handle(Event::Connected);
                self.to_ota(ToOta::Connected);
            }
            Net::Down(failure) => {
                self.status_due = false;
                if failure.is_certificate_refused() {
                    tracing::error!(%failure, "readings stay queued; retrying with backoff");
                } else {
                    tracing::warn!(%failure, "not connected; readings stay queued");
                }
                self.handle(Event::Disconnected);
            }
            Net::Ack(payload) => match Ack::decode(&payload) {
                Some(ack) => {
                    let before = self.outbox.unacked();
                    self.handle(Event::Acked(ack));
                    self.summary.acked += (before - self.outbox.unacked()) as u64;
                }
                None => tracing::warn!(len = payload.len(), "ignored a malformed ack"),
            },
            Net::Ota(payload) => match (ota::parse_command(&payload), &self.ota) {
                (_, None) => tracing::debug!("update command ignored: no [ota] section"),
                (Some(OtaCommand::Ack { seq }), Some(_)) => {
                    if self.ota_outcome_seq == Some(seq) {
                        self.ota_outcome_seq = None;
                        self.to_ota(ToOta::OutcomeAcked);
                    }
                }
                (Some(OtaCommand::Update(notice)), Some(_)) => {
                    tracing::info!(release = %notice.release, "update notice");
                    self.to_ota(ToOta::Notice(notice));
                }
                (None, Some(_)) => {
                    tracing::warn!(len = payload.len(), "ignored a malformed update command");
                }
            },
        }
        Ok(())
    }

    fn to_ota(&self, msg: ToOta) {
        if let Some(tx) = &self.ota {
            let _ = tx.send(msg);
        }
    }

    /// Publishes the worker's reports (signed like status messages, a seq of their own);
    /// `true` when the agent should stop for the supervisor to boot an installed update.
    fn ota_message(&mut self, msg: FromOta) -> Result<bool> {
        let (body, outcome) = match msg {
            FromOta::Restart => return Ok(true),
            FromOta::Report { body, outcome } => (body, outcome),
        };
        // Offline, a report is dropped: the worker sends what must arrive again on connect.
        if !self.outbox.is_connected() {
            return Ok(false);
        }
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let seq = self.seqs.allocate()?;
        self.sealer.seal(&body, seq, wall_ms(), &mut self.signed)?;
        match client.try_publish(
            self.topics.ota.as_str(),
            self.signed.clone(),
            PublishOptions::new(QoS::AtLeastOnce),
        ) {
            Ok(_) if outcome => self.ota_outcome_seq = Some(seq),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "OTA report not sent"),
        }
        Ok(false)
    }

    /// Publishes a signed status message (a seq of its own; not queued, not retried).
    fn status(&mut self, state: &str) -> Result<()> {
        let seq = self.seqs.allocate()?;
        self.sealer.seal(
            &reading::status(&self.firmware, state),
            seq,
            wall_ms(),
            &mut self.signed,
        )?;
        if let Some(client) = &self.client {
            match client.try_publish_tracked(
                self.topics.status.as_str(),
                self.signed.clone(),
                PublishOptions::new(QoS::AtLeastOnce),
            ) {
                Ok(notice) if state == "online" => confirm_when_acked(notice),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "status message not sent"),
            }
        }
        Ok(())
    }

    /// Performs the outbox's actions and loads readings into it until nothing changes.
    fn settle(&mut self) -> Result<()> {
        loop {
            let mut actions = std::mem::take(&mut self.actions);
            for action in actions.drain(..) {
                self.perform(action)?;
            }
            self.actions = actions;
            let room = self.outbox.room();
            if room == 0 {
                break;
            }
            let batch = self.queue.read_batch(room)?;
            if batch.is_empty() {
                break;
            }
            self.handle(Event::Loaded(batch));
        }
        self.status_in_order()
    }

    /// Sends the owed "online" status once every queued reading (all have lower seqs than
    /// the status will get) has been published on this connection.
    ///
    /// The ingest checks a device's seqs against one 64-entry replay window, and messages
    /// arrive in the order they were published; a status that overtook a backlog of older
    /// readings would push the window past them and get them refused as replays. In seq
    /// order nothing is overtaken. (Until then the ingest still sees the device: its
    /// readings arrive.)
    fn status_in_order(&mut self) -> Result<()> {
        if self.status_due
            && self.outbox.is_connected()
            && self.outbox.waiting() == 0
            && self.queue.unsynced() == 0
            && !self.queue.has_unread()
        {
            self.status_due = false;
            self.status("online")?;
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> Result<()> {
        match action {
            Action::Publish {
                seq,
                reading,
                attempt,
            } => {
                if attempt > 1 {
                    self.summary.retransmissions += 1;
                    tracing::debug!(seq, attempt, "retransmitting");
                }
                self.sealer
                    .seal(&reading, seq, wall_ms(), &mut self.signed)?;
                let Some(client) = &self.client else {
                    return Ok(());
                };
                match client.try_publish_tracked(
                    self.topics.telemetry.as_str(),
                    self.signed.clone(),
                    PublishOptions::new(QoS::AtLeastOnce),
                ) {
                    Ok(notice) => self.notices.push((seq, notice)),
                    // The retry timer sends it again.
                    Err(e) => tracing::warn!(seq, error = %e, "publish not queued"),
                }
            }
            Action::Release { below } => self.queue.release(below)?,
        }
        Ok(())
    }

    /// One small task per publish waits for its PUBACK (the notice resolves with an error
    /// when the connection drops first).
    fn spawn_trackers(&mut self, set: &mut JoinSet<Option<u64>>) {
        for (seq, notice) in self.notices.drain(..) {
            set.spawn(async move { notice.wait_async().await.ok().map(|_| seq) });
        }
    }
}

/// The MQTT task: polls the event loop, subscribes to the device's commands on every
/// connect, forwards connects, failures and acks, and waits out the backoff after a failure.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    topics: Topics,
    tls: iotsec_tls::ClientTls,
    mut backoff: Backoff,
    net: mpsc::UnboundedSender<Net>,
) {
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(e) = client.try_subscribe(topics.commands.as_str(), QoS::AtLeastOnce) {
                    tracing::warn!(error = %e, "cannot subscribe to commands");
                }
                if net.send(Net::Connected).is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                if p.topic.as_ref() == topics.ack.as_bytes() {
                    if net.send(Net::Ack(p.payload.to_vec())).is_err() {
                        return;
                    }
                } else if p.topic.as_ref() == topics.ota_command.as_bytes() {
                    if net.send(Net::Ota(p.payload.to_vec())).is_err() {
                        return;
                    }
                } else {
                    tracing::debug!(topic = %String::from_utf8_lossy(&p.topic), "command ignored");
                }
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        topic = topics.commands,
                        "the broker refused the subscription: no ack can arrive, so the \
                         queue cannot drain (check the broker ACL)"
                    );
                }
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => return,
            Err(e) => {
                // rumqttc would replay what was in flight after reconnecting; the outbox
                // re-signs and resends every unacked reading itself, so drop those copies.
                eventloop.drain_pending_as_failed(NoticeFailureReason::SessionReset);
                let failure = Failure::of(&e, &tls);
                if net.send(Net::Down(failure)).is_err() {
                    return;
                }
                let mut random = [0u8; 8];
                let random = match getrandom::fill(&mut random) {
                    Ok(()) => u64::from_le_bytes(random),
                    Err(_) => wall_ms().unsigned_abs(),
                };
                tokio::time::sleep(backoff.next_delay(random)).await;
            }
        }
    }
}

/// The OTA confirm condition of a trial firmware (iotsec-ota's supervisor): "connected to the
/// broker over TLS and reported its version". When the supervisor runs this agent as the trial
/// program it sets `IOTSEC_OTA_CONFIRM` to a file path; once the broker has acknowledged the
/// signed "online" status (which carries the firmware version), the file is created and the
/// supervisor commits the new image. Without the variable this does nothing.
fn confirm_when_acked(notice: rumqttc::PublishNotice) {
    let Some(path) = std::env::var_os("IOTSEC_OTA_CONFIRM") else {
        return;
    };
    tokio::spawn(async move {
        match notice.wait_async().await {
            Ok(_) => match std::fs::write(&path, b"confirmed\n") {
                Ok(()) => tracing::info!(
                    file = %std::path::Path::new(&path).display(),
                    "firmware confirmed: connected over TLS and reported its version"
                ),
                Err(e) => tracing::warn!(error = %e, "could not write the OTA confirm file"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "online status not acknowledged; trial not confirmed")
            }
        }
    });
}
