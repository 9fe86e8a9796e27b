//! PostgreSQL engine: the shared store of several ingest workers.
//!
//! Same logical schema and the same idempotency as the SQLite engine: `readings` has the
//! primary key `(device, seq)` and every insert is `ON CONFLICT DO NOTHING`, so whichever
//! worker commits a reading first stores it and every later copy (an MQTT redelivery, a
//! device retransmission, the same message seen by another worker) is reported as
//! [`Inserted::Duplicate`] for the ingest to classify. The unique key, not any worker's
//! in-memory replay window, is the final word.
//!
//! One batch = one transaction, with one round trip per table: readings go in as one
//! `INSERT … SELECT FROM unnest($1::text[], …) ON CONFLICT DO NOTHING RETURNING` (a fixed
//! statement, prepared once, whatever the batch size), the per-device counters as one
//! `UPDATE … FROM unnest(…)`, rejections and their counters likewise. Commits are durable
//! before they return (PostgreSQL's default `synchronous_commit = on`); the ingest sends
//! its MQTT acknowledgements only after that.
//!
//! Concurrent workers never deadlock on each other: every transaction takes its row locks
//! in one global order — readings sorted by `(device, seq)`, then the `devices` rows sorted
//! by id (locked up front with `SELECT … ORDER BY id FOR UPDATE`), then the
//! `rejection_counts` rows sorted by reason. A transaction that still fails with a deadlock
//! or serialization error (a DBA's trigger, say) is retried a few times; it rolled back, so
//! a retry is exact.
//!
//! The `postgres` client runs its own small tokio runtime and must never be driven (or
//! dropped) on an async task, while the ingest calls storage from both async code (opening)
//! and blocking threads. So the connection lives on a dedicated thread and [`Postgres`] sends
//! it jobs over a channel: callable from anywhere, droppable anywhere.
//!
//! TLS to PostgreSQL is not implemented: [`PostgresUrl`] accepts only loopback hosts and unix
//! sockets (see `docs/deployment.md` for reaching a remote server through a local pooler).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use super::{Batch, DeviceRecord, Inserted, Reading, Rejection, Storage};
use crate::error::{Result, ServerError};

/// Schema migrations, applied in order; `schema_version` records each one that ran.
/// The same logical schema as the SQLite engine's, version for version.
const MIGRATIONS: &[&str] = &[
    // 1: readings, rejections, devices
    "CREATE TABLE readings (
        device TEXT NOT NULL,
        seq BIGINT NOT NULL,
        ts_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL,
        payload TEXT NOT NULL,
        sig TEXT NOT NULL,
        PRIMARY KEY (device, seq)
     );
     CREATE INDEX readings_device_ts ON readings (device, ts_ms);
     CREATE TABLE rejections (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_ms BIGINT NOT NULL,
        device TEXT,
        reason TEXT NOT NULL,
        size BIGINT NOT NULL
     );
     CREATE TABLE rejection_counts (reason TEXT PRIMARY KEY, count BIGINT NOT NULL);
     CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL DEFAULT 'active',
        legacy BOOLEAN NOT NULL DEFAULT false,
        key_version INTEGER NOT NULL DEFAULT 1,
        firmware TEXT,
        last_seen_ms BIGINT,
        accepted BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0
     );",
    // 2: retention by age (`DELETE … WHERE received_ms < …`, see docs/deployment.md). BRIN:
    // received_ms grows with the physical order of an append-mostly table, so a block-range
    // index is a few pages and costs the inserts next to nothing.
    "CREATE INDEX readings_received ON readings USING brin (received_ms);",
];

/// Serializes migrations of workers that start at the same time (any constant will do;
/// this one spells "iotsec").
const MIGRATION_LOCK: i64 = 0x696f_7473_6563;

/// Transactions retried after a deadlock or serialization failure, at most.
const RETRIES: u32 = 5;

/// A validated `postgres://` URL. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct PostgresUrl {
    text: String,
    config: postgres::Config,
}

impl PostgresUrl {
    /// Parses and checks a `postgres://` / `postgresql://` URL: every host must be a loopback
    /// address, `localhost` or a unix socket directory (there is no TLS to PostgreSQL), and
    /// `sslmode=require` is refused for the same reason.
    pub fn parse(text: &str) -> Result<PostgresUrl> {
        let bad = |msg: String| ServerError::Config(format!("storage.url {}: {msg}", redact(text)));
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(bad("must start with postgres:// or postgresql://".into()));
        }
        let mut config: postgres::Config = text
            .parse()
            .map_err(|e: postgres::Error| bad(error_text(&e)))?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(bad("names no host".into()));
        }
        for host in config.get_hosts() {
            if let Host::Tcp(name) = host
                && !is_loopback(name)
            {
                return Err(bad(format!(
                    "host {name} is not on this machine: iotsec talks to PostgreSQL without \
                     TLS, so only 127.0.0.1, ::1, localhost or a unix socket directory are \
                     accepted (reach a remote server through a local pooler that uses TLS, \
                     see docs/deployment.md)"
                )));
            }
        }
        if let Some(addr) = config.get_hostaddrs().iter().find(|a| !a.is_loopback()) {
            return Err(bad(format!("hostaddr {addr} is not a loopback address")));
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(bad(
                "sslmode=require is not supported (no TLS to PostgreSQL); use a loopback \
                 address or a unix socket"
                    .into(),
            ));
        }
        // Plain text on loopback: do not even offer TLS.
        config.ssl_mode(SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(PostgresUrl {
            text: text.to_owned(),
            config,
        })
    }

    /// The same URL with `application_name` set to `name` unless the URL sets one (it shows
    /// in `pg_stat_activity`: the ingest uses its MQTT client id).
    pub fn with_default_application_name(&self, name: &str) -> PostgresUrl {
        let mut u = self.clone();
        if u.config.get_application_name().is_none() {
            u.config.application_name(name);
        }
        u
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// Replaces the password of `scheme://user:password@host/...` and any `password=` query
/// parameter with `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{hosts}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{authority}{tail}", &url[..rest_start])
}

/// The error text with its cause (`postgres::Error`'s `Display` alone says only "db error").
fn error_text(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn db(e: postgres::Error) -> ServerError {
    ServerError::Storage(error_text(&e))
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| ServerError::Storage(format!("seq {seq} exceeds 2^63-1")))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Statements prepared once per connection.
struct Statements {
    insert_readings: Statement,
    lock_devices: Statement,
    update_devices: Statement,
    insert_rejections: Statement,
    count_rejections: Statement,
    stored_sig: Statement,
}

/// The connection, owned by the storage thread.
struct Conn {
    config: postgres::Config,
    client: Client,
    stmts: Statements,
}

impl Conn {
    fn open(config: postgres::Config) -> Result<Conn> {
        let mut client = config.connect(NoTls).map_err(db)?;
        migrate(&mut client)?;
        let stmts = prepare(&mut client)?;
        Ok(Conn {
            config,
            client,
            stmts,
        })
    }

    /// Reconnects when the server closed the connection (a PostgreSQL restart): the next
    /// call works again instead of failing forever.
    fn ensure_open(&mut self) -> Result<()> {
        if self.client.is_closed() {
            let mut client = self.config.connect(NoTls).map_err(db)?;
            self.stmts = prepare(&mut client)?;
            self.client = client;
        }
        Ok(())
    }
}

fn prepare(c: &mut Client) -> Result<Statements> {
    let mut p = |sql: &str| c.prepare(sql).map_err(db);
    Ok(Statements {
        insert_readings: p(
            "INSERT INTO readings (device, seq, ts_ms, received_ms, payload, sig)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[])
             ON CONFLICT DO NOTHING RETURNING device, seq",
        )?,
        lock_devices: p("SELECT id FROM devices WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE")?,
        update_devices: p(
            "UPDATE devices d SET accepted = d.accepted + v.accepted,
                rejected = d.rejected + v.rejected,
                last_seen_ms = CASE WHEN v.last_seen IS NULL THEN d.last_seen_ms
                                    ELSE GREATEST(COALESCE(d.last_seen_ms, 0), v.last_seen) END
             FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[])
                  AS v(id, accepted, rejected, last_seen)
             WHERE d.id = v.id",
        )?,
        insert_rejections: p(
            "INSERT INTO rejections (received_ms, device, reason, size)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])",
        )?,
        count_rejections: p(
            "INSERT INTO rejection_counts (reason, count)
             SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (reason) DO UPDATE SET count = rejection_counts.count + excluded.count",
        )?,
        stored_sig: p("SELECT sig FROM readings WHERE device = $1 AND seq = $2")?,
    })
}

/// Applies pending migrations in one transaction under an advisory lock; returns the version.
fn migrate(c: &mut Client) -> Result<usize> {
    let mut tx = c.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db)?;
    let current: Option<i32> = tx
        .query_one("SELECT MAX(version) FROM schema_version", &[])
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(ServerError::Storage(format!(
            "database schema version {current} is newer than this iotsec ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).map_err(db)?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(MIGRATIONS.len())
}

/// A batch as column arrays, sorted for the lock order (see the module documentation).
struct Columns {
    /// Index in `batch.readings` of each row sent (first copy of each key only).
    rows: Vec<usize>,
    device: Vec<String>,
    seq: Vec<i64>,
    ts_ms: Vec<i64>,
    received_ms: Vec<i64>,
    payload: Vec<String>,
    sig: Vec<String>,
    rej_received: Vec<i64>,
    rej_device: Vec<Option<String>>,
    rej_reason: Vec<String>,
    rej_size: Vec<i64>,
    /// Rejections per reason, sorted by reason.
    reasons: Vec<String>,
    reason_counts: Vec<i64>,
    /// Every device the batch mentions, sorted.
    devices: Vec<String>,
    rejected_per_device: BTreeMap<String, i64>,
}

impl Columns {
    fn of(batch: &Batch) -> Result<Columns> {
        let mut order: Vec<usize> = (0..batch.readings.len()).collect();
        // Stable: among copies of one key the first in the batch comes first, and is the one
        // sent (the others are duplicates within the batch, as in the SQLite engine).
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&batch.readings[a], &batch.readings[b]);
            (ra.device.as_str(), ra.seq).cmp(&(rb.device.as_str(), rb.seq))
        });
        order.dedup_by(|b, a| {
            let (ra, rb) = (&batch.readings[*a], &batch.readings[*b]);
            ra.device == rb.device && ra.seq == rb.seq
        });
        let n = order.len();
        let mut c = Columns {
            rows: Vec::with_capacity(n),
            device: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            ts_ms: Vec::with_capacity(n),
            received_ms: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            sig: Vec::with_capacity(n),
            rej_received: Vec::new(),
            rej_device: Vec::new(),
            rej_reason: Vec::new(),
            rej_size: Vec::new(),
            reasons: Vec::new(),
            reason_counts: Vec::new(),
            devices: Vec::new(),
            rejected_per_device: BTreeMap::new(),
        };
        for i in order {
            let r = &batch.readings[i];
            c.rows.push(i);
            c.device.push(r.device.clone());
            c.seq.push(seq_i64(r.seq)?);
            c.ts_ms.push(r.ts_ms);
            c.received_ms.push(r.received_ms);
            c.payload.push(r.payload.clone());
            c.sig.push(r.sig.clone());
        }
        let mut per_reason: BTreeMap<&str, i64> = BTreeMap::new();
        for r in &batch.rejections {
            c.rej_received.push(r.received_ms);
            c.rej_device.push(r.device.clone());
            c.rej_reason.push(r.reason.clone());
            c.rej_size.push(i64::try_from(r.size).unwrap_or(i64::MAX));
            *per_reason.entry(r.reason.as_str()).or_default() += 1;
            if let Some(d) = &r.device {
                *c.rejected_per_device.entry(d.clone()).or_default() += 1;
            }
        }
        for (reason, n) in per_reason {
            c.reasons.push(reason.to_owned());
            c.reason_counts.push(n);
        }
        let mut devices: Vec<String> = c.device.clone();
        devices.extend(c.rejected_per_device.keys().cloned());
        devices.sort();
        devices.dedup();
        c.devices = devices;
        Ok(c)
    }
}

/// One attempt at committing a batch; `Err` leaves nothing behind (the transaction rolled back).
fn commit_once(
    conn: &mut Conn,
    c: &Columns,
    readings: usize,
) -> std::result::Result<Vec<Inserted>, postgres::Error> {
    let s = &conn.stmts;
    let mut tx = conn.client.transaction()?;
    let mut out = vec![Inserted::Duplicate; readings];
    let mut accepted: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    if !c.rows.is_empty() {
        let stored = tx.query(
            &s.insert_readings,
            &[
                &c.device,
                &c.seq,
                &c.ts_ms,
                &c.received_ms,
                &c.payload,
                &c.sig,
            ],
        )?;
        let mut new: HashSet<(String, i64)> = HashSet::with_capacity(stored.len());
        for row in stored {
            new.insert((row.try_get(0)?, row.try_get(1)?));
        }
        for (k, &i) in c.rows.iter().enumerate() {
            if new.contains(&(c.device[k].clone(), c.seq[k])) {
                out[i] = Inserted::New;
                let e = accepted.entry(c.device[k].as_str()).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(c.received_ms[k]);
            }
        }
    }
    let touched: Vec<&str> = c
        .devices
        .iter()
        .map(String::as_str)
        .filter(|d| accepted.contains_key(d) || c.rejected_per_device.contains_key(*d))
        .collect();
    if !touched.is_empty() {
        tx.query(&s.lock_devices, &[&touched])?;
        let mut ids = Vec::with_capacity(touched.len());
        let mut acc = Vec::with_capacity(touched.len());
        let mut rej = Vec::with_capacity(touched.len());
        let mut last: Vec<Option<i64>> = Vec::with_capacity(touched.len());
        for d in touched {
            let (a, l) = accepted.get(d).copied().unwrap_or((0, 0));
            ids.push(d);
            acc.push(a);
            rej.push(c.rejected_per_device.get(d).copied().unwrap_or(0));
            last.push((a > 0).then_some(l));
        }
        tx.execute(&s.update_devices, &[&ids, &acc, &rej, &last])?;
    }
    if !c.rej_reason.is_empty() {
        tx.execute(
            &s.insert_rejections,
            &[&c.rej_received, &c.rej_device, &c.rej_reason, &c.rej_size],
        )?;
        tx.execute(&s.count_rejections, &[&c.reasons, &c.reason_counts])?;
    }
    tx.commit()?;
    Ok(out)
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The PostgreSQL engine: a handle to the connection thread.
pub struct Postgres {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres").field("url", &self.url).finish()
    }
}

impl Postgres {
    /// Connects, migrates the schema (serialized across workers by an advisory lock) and
    /// prepares the statements.
    pub fn connect(url: &PostgresUrl) -> Result<Postgres> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let config = url.config.clone();
        let thread = std::thread::Builder::new()
            .name("iotsec-postgres".into())
            .spawn(move || {
                let mut conn = match Conn::open(config) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| ServerError::Storage(format!("cannot start the storage thread: {e}")))?;
        let opened = ready_rx.recv().unwrap_or_else(|_| {
            Err(ServerError::Storage(
                "the storage thread ended while connecting".into(),
            ))
        });
        let pg = Postgres {
            jobs: Some(jobs),
            thread: Some(thread),
            url: url.redacted(),
        };
        opened.map_err(|e| ServerError::Storage(format!("{}: {e}", url.redacted())))?;
        Ok(pg)
    }

    fn call<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let gone = || ServerError::Storage("the PostgreSQL connection thread is gone".into());
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let r = conn.ensure_open().and_then(|()| f(conn));
            let _ = tx.send(r);
        });
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// Applies pending migrations; returns the schema version.
    pub fn migrate(&mut self) -> Result<usize> {
        self.call(|c| migrate(&mut c.client))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the connection on its own stack.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Storage for Postgres {
    fn commit(&mut self, batch: &Batch) -> Result<Vec<Inserted>> {
        let columns = Columns::of(batch)?;
        let readings = batch.readings.len();
        self.call(move |conn| {
            let mut attempt = 0;
            loop {
                match commit_once(conn, &columns, readings) {
                    Ok(out) => return Ok(out),
                    Err(e) if retryable(&e) && attempt < RETRIES => {
                        attempt += 1;
                        tracing::warn!(attempt, error = %error_text(&e), "storage: retrying the batch");
                    }
                    Err(e) => return Err(db(e)),
                }
            }
        })
    }

    fn stored_sig(&mut self, device: &str, seq: u64) -> Result<Option<String>> {
        let device = device.to_owned();
        let seq = seq_i64(seq)?;
        self.call(move |c| {
            let row = c
                .client
                .query_opt(&c.stmts.stored_sig, &[&device, &seq])
                .map_err(db)?;
            row.map(|r| r.try_get(0).map_err(db)).transpose()
        })
    }

    fn newest_seqs(&mut self) -> Result<Vec<(String, u64)>> {
        // One backward index probe per registered device, not a scan of every reading.
        self.call(|c| {
            let rows = c
                .client
                .query(
                    "SELECT d.id, (SELECT MAX(r.seq) FROM readings r WHERE r.device = d.id)
                     FROM devices d",
                    &[],
                )
                .map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let newest: Option<i64> = r.try_get(1).map_err(db)?;
                if let Some(n) = newest {
                    out.push((r.try_get(0).map_err(db)?, count(n)));
                }
            }
            Ok(out)
        })
    }

    fn upsert_device(&mut self, id: &str, legacy: bool, key_version: u32) -> Result<()> {
        let id = id.to_owned();
        let kv = i32::try_from(key_version)
            .map_err(|_| ServerError::Storage(format!("key version {key_version} too large")))?;
        self.call(move |c| {
            c.client
                .execute(
                    "INSERT INTO devices (id, legacy, key_version) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET legacy = $2, key_version = $3, status = 'active'",
                    &[&id, &legacy, &kv],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    fn set_device_status(&mut self, id: &str, status: &str) -> Result<bool> {
        let (id, status) = (id.to_owned(), status.to_owned());
        self.call(move |c| {
            let n = c
                .client
                .execute(
                    "UPDATE devices SET status = $2 WHERE id = $1",
                    &[&id, &status],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    fn set_firmware(&mut self, id: &str, version: &str) -> Result<()> {
        let (id, version) = (id.to_owned(), version.to_owned());
        self.call(move |c| {
            c.client
                .execute(
                    "UPDATE devices SET firmware = $2 WHERE id = $1",
                    &[&id, &version],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    fn devices(&mut self) -> Result<Vec<DeviceRecord>> {
        self.call(|c| {
            let rows = c
                .client
                .query(
                    "SELECT id, status, legacy, key_version, firmware, last_seen_ms, accepted, rejected
                     FROM devices ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .map_err(db)?;
            rows.into_iter()
                .map(|r| {
                    Ok(DeviceRecord {
                        id: r.try_get(0).map_err(db)?,
                        status: r.try_get(1).map_err(db)?,
                        legacy: r.try_get(2).map_err(db)?,
                        key_version: u32::try_from(r.try_get::<_, i32>(3).map_err(db)?)
                            .unwrap_or(0),
                        firmware: r.try_get(4).map_err(db)?,
                        last_seen_ms: r.try_get(5).map_err(db)?,
                        accepted: count(r.try_get(6).map_err(db)?),
                        rejected: count(r.try_get(7).map_err(db)?),
                    })
                })
                .collect()
        })
    }

    fn rejection_counts(&mut self) -> Result<Vec<(String, u64)>> {
        self.call(|c| {
            let rows = c
                .client
                .query(
                    "SELECT reason, count FROM rejection_counts ORDER BY reason COLLATE \"C\"",
                    &[],
                )
                .map_err(db)?;
            rows.into_iter()
                .map(|r| Ok((r.try_get(0).map_err(db)?, count(r.try_get(1).map_err(db)?))))
                .collect()
        })
    }

    fn telemetry(
        &mut self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Reading>> {
        let device = device.to_owned();
        let after = match after_seq {
            Some(s) => seq_i64(s)?,
            None => -1,
        };
        let limit = i64::try_from(limit.min(10_000)).unwrap_or(10_000);
        self.call(move |c| {
            let rows = c
                .client
                .query(
                    "SELECT device, seq, ts_ms, received_ms, payload, sig FROM readings
                     WHERE device = $1 AND ts_ms >= $2 AND ts_ms < $3 AND seq > $4
                     ORDER BY seq LIMIT $5",
                    &[&device, &from_ms, &to_ms, &after, &limit],
                )
                .map_err(db)?;
            rows.into_iter()
                .map(|r| {
                    Ok(Reading {
                        device: r.try_get(0).map_err(db)?,
                        seq: count(r.try_get(1).map_err(db)?),
                        ts_ms: r.try_get(2).map_err(db)?,
                        received_ms: r.try_get(3).map_err(db)?,
                        payload: r.try_get(4).map_err(db)?,
                        sig: r.try_get(5).map_err(db)?,
                    })
                })
                .collect()
        })
    }

    fn recent_rejections(&mut self, limit: usize) -> Result<Vec<Rejection>> {
        let limit = i64::try_from(limit.min(10_000)).unwrap_or(10_000);
        self.call(move |c| {
            let rows = c
                .client
                .query(
                    "SELECT received_ms, device, reason, size FROM rejections
                     ORDER BY id DESC LIMIT $1",
                    &[&limit],
                )
                .map_err(db)?;
            rows.into_iter()
                .map(|r| {
                    Ok(Rejection {
                        received_ms: r.try_get(0).map_err(db)?,
                        device: r.try_get(1).map_err(db)?,
                        reason: r.try_get(2).map_err(db)?,
                        size: usize::try_from(r.try_get::<_, i64>(3).map_err(db)?).unwrap_or(0),
                    })
                })
                .collect()
        })
    }

    fn reading_count(&mut self) -> Result<u64> {
        self.call(|c| {
            let n: i64 = c
                .client
                .query_one("SELECT COUNT(*) FROM readings", &[])
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            Ok(count(n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_only_local_hosts_pass() {
        let u = PostgresUrl::parse("postgres://iotsec:s3cret@127.0.0.1:5433/iotsec").unwrap();
        assert_eq!(u.redacted(), "postgres://iotsec:***@127.0.0.1:5433/iotsec");
        assert!(!format!("{u:?}{u}").contains("s3cret"));
        assert_eq!(
            redact("postgresql://u@localhost/db?password=x&application_name=a"),
            "postgresql://u@localhost/db?password=***&application_name=a"
        );
        for ok in [
            "postgres://u:p@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgresql://u@127.0.0.2/db",
        ] {
            assert!(PostgresUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://u:secret@db.example.com/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@localhost/db?sslmode=require",
            "mysql://u@localhost/db",
            "host=localhost user=u",
        ] {
            let e = PostgresUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn a_batch_is_sorted_and_deduplicated_for_the_lock_order() {
        let r = |d: &str, seq: u64| Reading {
            device: d.into(),
            seq,
            ts_ms: 1,
            received_ms: 2,
            payload: "{}".into(),
            sig: format!("{d}{seq}"),
        };
        let batch = Batch {
            readings: vec![r("b", 2), r("a", 9), r("b", 1), r("a", 9), r("a", 3)],
            rejections: vec![Rejection {
                received_ms: 1,
                device: Some("c".into()),
                reason: "replayed".into(),
                size: 5,
            }],
        };
        let c = Columns::of(&batch).unwrap();
        assert_eq!(c.rows, vec![4, 1, 2, 0]);
        assert_eq!(c.seq, vec![3, 9, 1, 2]);
        assert_eq!(c.devices, vec!["a", "b", "c"]);
        assert_eq!(
            (c.reasons.clone(), c.reason_counts.clone()),
            (vec!["replayed".to_string()], vec![1])
        );
    }
}
