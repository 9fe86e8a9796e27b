//! SQLite engine: WAL, `synchronous=FULL`, one transaction per batch, versioned migrations.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Batch, DeviceOta, DeviceRecord, Inserted, Reading, Rejection, ReleaseRecord, RolloutRecord,
    Storage,
};
use crate::error::{Result, ServerError};

/// Schema migrations, applied in order; `schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: readings, rejections, devices
    "CREATE TABLE readings (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        payload TEXT NOT NULL,
        sig TEXT NOT NULL,
        PRIMARY KEY (device, seq)
     ) WITHOUT ROWID;
     CREATE INDEX readings_device_ts ON readings (device, ts_ms);
     CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        device TEXT,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL
     );
     CREATE TABLE rejection_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
     CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL DEFAULT 'active',
        legacy INTEGER NOT NULL DEFAULT 0,
        key_version INTEGER NOT NULL DEFAULT 1,
        firmware TEXT,
        last_seen_ms INTEGER,
        accepted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0
     );",
    // 2: retention by age (`DELETE ... WHERE received_ms < ...`, see docs/deployment.md)
    "CREATE INDEX readings_received ON readings (received_ms);",
    // 3: OTA distribution: the release index, rollouts (state machine as JSON), each device's
    // latest OTA report
    "CREATE TABLE releases (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        hardware_id TEXT NOT NULL,
        security_counter INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        file TEXT NOT NULL,
        published_ms INTEGER NOT NULL
     );
     CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        release TEXT NOT NULL REFERENCES releases (id),
        status TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE TABLE device_ota (
        device TEXT PRIMARY KEY,
        release TEXT,
        version TEXT,
        state TEXT NOT NULL,
        progress INTEGER,
        reason TEXT,
        updated_ms INTEGER NOT NULL
     );",
];

/// The SQLite engine.
#[derive(Debug)]
pub struct Sqlite {
    conn: Connection,
}

fn db(e: rusqlite::Error) -> ServerError {
    ServerError::Storage(e.to_string())
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| ServerError::Storage(format!("seq {seq} exceeds 2^63-1")))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Sqlite> {
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Sqlite> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Sqlite> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        // FULL: a committed batch survives power loss, not only a process crash; the ingest
        // acknowledges MQTT messages only after this.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        let mut s = Sqlite { conn };
        s.migrate()?;
        Ok(s)
    }

    /// Applies pending migrations; returns the schema version.
    pub fn migrate(&mut self) -> Result<usize> {
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(db)?;
        let current: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(db)?;
        let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(ServerError::Storage(format!(
                "database schema version {current} is newer than this iotsec ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i as i64 + 1],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(MIGRATIONS.len())
    }
}

impl Storage for Sqlite {
    fn commit(&mut self, batch: &Batch) -> Result<Vec<Inserted>> {
        let tx = self.conn.transaction().map_err(db)?;
        let mut out = Vec::with_capacity(batch.readings.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO readings (device, seq, ts_ms, received_ms, payload, sig)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )
                .map_err(db)?;
            // Per-device counters: one UPDATE per device per batch, not per reading.
            let mut per_device: std::collections::HashMap<&str, (i64, i64)> =
                std::collections::HashMap::new();
            for r in &batch.readings {
                let n = insert
                    .execute(params![
                        r.device,
                        seq_i64(r.seq)?,
                        r.ts_ms,
                        r.received_ms,
                        r.payload,
                        r.sig
                    ])
                    .map_err(db)?;
                if n == 1 {
                    let e = per_device.entry(r.device.as_str()).or_insert((0, 0));
                    e.0 += 1;
                    e.1 = e.1.max(r.received_ms);
                    out.push(Inserted::New);
                } else {
                    out.push(Inserted::Duplicate);
                }
            }
            let mut seen = tx
                .prepare_cached(
                    "UPDATE devices SET accepted = accepted + ?2,
                     last_seen_ms = MAX(COALESCE(last_seen_ms, 0), ?3) WHERE id = ?1",
                )
                .map_err(db)?;
            for (device, (count, last)) in per_device {
                seen.execute(params![device, count, last]).map_err(db)?;
            }
            let mut reject = tx
                .prepare_cached(
                    "INSERT INTO rejections (received_ms, device, reason, size) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            let mut counter = tx
                .prepare_cached(
                    "INSERT INTO rejection_counts (reason, count) VALUES (?1, 1)
                     ON CONFLICT (reason) DO UPDATE SET count = count + 1",
                )
                .map_err(db)?;
            let mut device_rejected = tx
                .prepare_cached("UPDATE devices SET rejected = rejected + 1 WHERE id = ?1")
                .map_err(db)?;
            for r in &batch.rejections {
                reject
                    .execute(params![r.received_ms, r.device, r.reason, r.size as i64])
                    .map_err(db)?;
                counter.execute(params![r.reason]).map_err(db)?;
                if let Some(d) = &r.device {
                    device_rejected.execute(params![d]).map_err(db)?;
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn stored_sig(&mut self, device: &str, seq: u64) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT sig FROM readings WHERE device = ?1 AND seq = ?2")
            .map_err(db)?
            .query_row(params![device, seq_i64(seq)?], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    fn newest_seqs(&mut self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, MAX(seq) FROM readings GROUP BY device")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, count(r.get::<_, i64>(1)?)))
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn upsert_device(&mut self, id: &str, legacy: bool, key_version: u32) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO devices (id, legacy, key_version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET legacy = ?2, key_version = ?3, status = 'active'",
                params![id, legacy, key_version],
            )
            .map_err(db)?;
        Ok(())
    }

    fn set_device_status(&mut self, id: &str, status: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE devices SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn set_firmware(&mut self, id: &str, version: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE devices SET firmware = ?2 WHERE id = ?1",
                params![id, version],
            )
            .map_err(db)?;
        Ok(())
    }

    fn devices(&mut self) -> Result<Vec<DeviceRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, status, legacy, key_version, firmware, last_seen_ms, accepted, rejected
                 FROM devices ORDER BY id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeviceRecord {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    legacy: r.get(2)?,
                    key_version: r.get(3)?,
                    firmware: r.get(4)?,
                    last_seen_ms: r.get(5)?,
                    accepted: count(r.get(6)?),
                    rejected: count(r.get(7)?),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn rejection_counts(&mut self) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT reason, count FROM rejection_counts ORDER BY reason")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, count(r.get(1)?))))
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn telemetry(
        &mut self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Reading>> {
        let after = match after_seq {
            Some(s) => seq_i64(s)?,
            None => -1,
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT device, seq, ts_ms, received_ms, payload, sig FROM readings
                 WHERE device = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND seq > ?4
                 ORDER BY seq LIMIT ?5",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![device, from_ms, to_ms, after, limit.min(10_000) as i64],
                |r| {
                    Ok(Reading {
                        device: r.get(0)?,
                        seq: count(r.get(1)?),
                        ts_ms: r.get(2)?,
                        received_ms: r.get(3)?,
                        payload: r.get(4)?,
                        sig: r.get(5)?,
                    })
                },
            )
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn recent_rejections(&mut self, limit: usize) -> Result<Vec<Rejection>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT received_ms, device, reason, size FROM rejections ORDER BY id DESC LIMIT ?1",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![limit.min(10_000) as i64], |r| {
                Ok(Rejection {
                    received_ms: r.get(0)?,
                    device: r.get(1)?,
                    reason: r.get(2)?,
                    size: usize::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn reading_count(&mut self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
            .map_err(db)?;
        Ok(count(n))
    }

    fn insert_release(&mut self, r: &ReleaseRecord) -> Result<bool> {
        let size = i64::try_from(r.size)
            .map_err(|_| ServerError::Storage(format!("release size {} too large", r.size)))?;
        let n = self
            .conn
            .execute(
                "INSERT INTO releases (id, version, hardware_id, security_counter, size, sha256,
                 file, published_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO NOTHING",
                params![
                    r.id,
                    r.version,
                    r.hardware_id,
                    r.security_counter,
                    size,
                    r.sha256,
                    r.file,
                    r.published_ms
                ],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn releases(&mut self) -> Result<Vec<ReleaseRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, version, hardware_id, security_counter, size, sha256, file,
                 published_ms FROM releases ORDER BY published_ms, id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ReleaseRecord {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    hardware_id: r.get(2)?,
                    security_counter: r.get(3)?,
                    size: count(r.get(4)?),
                    sha256: r.get(5)?,
                    file: r.get(6)?,
                    published_ms: r.get(7)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn insert_rollout(
        &mut self,
        release: &str,
        status: &str,
        now_ms: i64,
        body: &str,
    ) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO rollouts (release, status, created_ms, updated_ms, body)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![release, status, now_ms, body],
            )
            .map_err(db)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_rollout(&mut self, id: i64, status: &str, now_ms: i64, body: &str) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE rollouts SET status = ?2, updated_ms = ?3, body = ?4 WHERE id = ?1",
                params![id, status, now_ms, body],
            )
            .map_err(db)?;
        if n == 1 {
            Ok(())
        } else {
            Err(ServerError::Storage(format!("no rollout {id}")))
        }
    }

    fn rollouts(&mut self) -> Result<Vec<RolloutRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, release, status, created_ms, updated_ms, body FROM rollouts ORDER BY id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RolloutRecord {
                    id: r.get(0)?,
                    release: r.get(1)?,
                    status: r.get(2)?,
                    created_ms: r.get(3)?,
                    updated_ms: r.get(4)?,
                    body: r.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn set_device_ota(&mut self, o: &DeviceOta) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO device_ota (device, release, version, state, progress, reason, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (device) DO UPDATE SET release = ?2, version = ?3, state = ?4,
                 progress = ?5, reason = ?6, updated_ms = ?7",
            )
            .map_err(db)?
            .execute(params![
                o.device,
                o.release,
                o.version,
                o.state,
                o.progress,
                o.reason,
                o.updated_ms
            ])
            .map_err(db)?;
        Ok(())
    }

    fn device_ota(&mut self) -> Result<Vec<DeviceOta>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT device, release, version, state, progress, reason, updated_ms
                 FROM device_ota ORDER BY device",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeviceOta {
                    device: r.get(0)?,
                    release: r.get(1)?,
                    version: r.get(2)?,
                    state: r.get(3)?,
                    progress: r.get(4)?,
                    reason: r.get(5)?,
                    updated_ms: r.get(6)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: &str, seq: u64) -> Reading {
        Reading {
            device: device.into(),
            seq,
            ts_ms: 1000 + seq as i64,
            received_ms: 2000,
            payload: format!("{{\"n\": {seq}}}"),
            sig: "00".repeat(32),
        }
    }

    #[test]
    fn unique_device_seq_makes_redelivery_idempotent() {
        let mut s = Sqlite::in_memory().unwrap();
        s.upsert_device("a", false, 1).unwrap();
        let b = Batch {
            readings: vec![reading("a", 1), reading("a", 2), reading("a", 1)],
            rejections: vec![],
        };
        assert_eq!(
            s.commit(&b).unwrap(),
            vec![Inserted::New, Inserted::New, Inserted::Duplicate]
        );
        assert_eq!(s.commit(&b).unwrap(), vec![Inserted::Duplicate; 3]);
        assert_eq!(s.reading_count().unwrap(), 2);
        assert_eq!(s.devices().unwrap()[0].accepted, 2);
        assert_eq!(s.newest_seqs().unwrap(), vec![("a".to_string(), 2)]);
    }

    #[test]
    fn rejections_are_counted_by_reason() {
        let mut s = Sqlite::in_memory().unwrap();
        s.upsert_device("a", false, 1).unwrap();
        let rej = |reason: &str| Rejection {
            received_ms: 1,
            device: Some("a".into()),
            reason: reason.into(),
            size: 10,
        };
        s.commit(&Batch {
            readings: vec![],
            rejections: vec![rej("bad_signature"), rej("replayed"), rej("bad_signature")],
        })
        .unwrap();
        assert_eq!(
            s.rejection_counts().unwrap(),
            vec![("bad_signature".into(), 2), ("replayed".into(), 1)]
        );
        assert_eq!(s.devices().unwrap()[0].rejected, 3);
        assert_eq!(s.recent_rejections(2).unwrap().len(), 2);
    }

    #[test]
    fn releases_rollouts_and_device_ota_round_trip() {
        let mut s = Sqlite::in_memory().unwrap();
        let r = ReleaseRecord {
            id: "0123456789abcdef".into(),
            version: "2.0.0".into(),
            hardware_id: "acme-gw".into(),
            security_counter: 2,
            size: 1 << 33,
            sha256: "aa".repeat(32),
            file: "0123456789abcdef.fw".into(),
            published_ms: 5,
        };
        assert!(s.insert_release(&r).unwrap());
        assert!(!s.insert_release(&r).unwrap(), "same id twice");
        assert_eq!(s.releases().unwrap(), vec![r.clone()]);
        let id = s.insert_rollout(&r.id, "running", 10, "{}").unwrap();
        s.update_rollout(id, "halted", 20, "{\"x\":1}").unwrap();
        assert!(s.update_rollout(id + 1, "halted", 20, "{}").is_err());
        let ro = &s.rollouts().unwrap()[0];
        assert_eq!(
            (
                ro.id,
                ro.status.as_str(),
                ro.created_ms,
                ro.updated_ms,
                ro.body.as_str()
            ),
            (id, "halted", 10, 20, "{\"x\":1}")
        );
        let mut o = DeviceOta {
            device: "d".into(),
            release: Some(r.id.clone()),
            version: Some("2.0.0".into()),
            state: "downloading".into(),
            progress: Some(40),
            reason: None,
            updated_ms: 30,
        };
        s.set_device_ota(&o).unwrap();
        o.state = "rolled_back".into();
        o.progress = None;
        o.reason = Some("deadline_passed".into());
        s.set_device_ota(&o).unwrap();
        assert_eq!(s.device_ota().unwrap(), vec![o]);
    }

    #[test]
    fn migrations_are_idempotent_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let mut s = Sqlite::open(&path).unwrap();
            s.commit(&Batch {
                readings: vec![reading("a", 7)],
                rejections: vec![],
            })
            .unwrap();
            assert_eq!(s.migrate().unwrap(), MIGRATIONS.len());
        }
        let mut s = Sqlite::open(&path).unwrap();
        assert_eq!(s.reading_count().unwrap(), 1);
        let page = s.telemetry("a", 0, i64::MAX, None, 10).unwrap();
        assert_eq!(page[0].seq, 7);
    }
}
