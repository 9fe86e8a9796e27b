//! One storage test suite, run against both engines: SQLite (a temporary file) and PostgreSQL
//! (a real server started by the test through `iotsec-testkit`, one fresh database per case).
//! Every case gets a function that opens a new connection to the same database, so the
//! concurrent-writers case runs several workers' connections side by side.
//!
//! Plus the migrations of each engine: on an empty database, on a version-1 schema created by
//! hand (the historical DDL, frozen here), and a database newer than this build is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;

use iotsec_server::ingest::{SeenKind, classify_seen};
use iotsec_server::store::postgres::{Postgres, PostgresUrl};
use iotsec_server::store::sqlite::Sqlite;
use iotsec_server::store::{Batch, Inserted, Reading, Rejection, Storage};
use iotsec_testkit::TestDir;
use iotsec_testkit::postgres::TestPostgres;

type Open<'a> = &'a (dyn Fn() -> Box<dyn Storage> + Sync);

/// The schema version that added `readings_received` (both engines).
const RETENTION_INDEX: usize = 2;

fn reading(device: &str, seq: u64, received_ms: i64, sig: &str) -> Reading {
    Reading {
        device: device.into(),
        seq,
        ts_ms: 1_000 + seq as i64,
        received_ms,
        payload: format!("{{\"n\": {seq}}}"),
        sig: sig.into(),
    }
}

fn rejection(device: Option<&str>, reason: &str) -> Rejection {
    Rejection {
        received_ms: 7,
        device: device.map(str::to_owned),
        reason: reason.into(),
        size: 42,
    }
}

fn readings(readings: Vec<Reading>) -> Batch {
    Batch {
        readings,
        rejections: vec![],
    }
}

// ---------------------------------------------------------------- the cases

fn unique_device_seq_makes_redelivery_idempotent(open: Open) {
    let mut s = open();
    s.upsert_device("a", false, 1).unwrap();
    let b = readings(vec![
        reading("a", 1, 10, "s1"),
        reading("a", 2, 11, "s2"),
        reading("a", 1, 12, "other"),
    ]);
    assert_eq!(
        s.commit(&b).unwrap(),
        vec![Inserted::New, Inserted::New, Inserted::Duplicate]
    );
    assert_eq!(s.commit(&b).unwrap(), vec![Inserted::Duplicate; 3]);
    assert_eq!(s.reading_count().unwrap(), 2);
    let d = &s.devices().unwrap()[0];
    assert_eq!((d.accepted, d.last_seen_ms), (2, Some(11)));
    assert_eq!(s.newest_seqs().unwrap(), vec![("a".to_string(), 2)]);
    // The first copy of a key in a batch is the one stored.
    assert_eq!(s.stored_sig("a", 1).unwrap().as_deref(), Some("s1"));
    assert_eq!(s.stored_sig("a", 3).unwrap(), None);
}

fn an_empty_batch_and_unknown_devices_are_harmless(open: Open) {
    let mut s = open();
    assert_eq!(s.commit(&Batch::default()).unwrap(), vec![]);
    // A reading of a device not in the registry is stored (the ingest rejects those before
    // storage; the engine itself does not enforce the registry) and counts nowhere.
    assert_eq!(
        s.commit(&readings(vec![reading("ghost", 1, 1, "x")]))
            .unwrap(),
        vec![Inserted::New]
    );
    assert!(s.devices().unwrap().is_empty());
    assert_eq!(s.reading_count().unwrap(), 1);
}

fn rejections_are_counted_by_reason_and_device(open: Open) {
    let mut s = open();
    s.upsert_device("a", false, 1).unwrap();
    s.upsert_device("b", false, 1).unwrap();
    s.commit(&Batch {
        readings: vec![reading("a", 1, 5, "s")],
        rejections: vec![
            rejection(Some("a"), "bad_signature"),
            rejection(Some("b"), "replayed"),
            rejection(Some("a"), "bad_signature"),
            rejection(None, "bad_topic"),
        ],
    })
    .unwrap();
    s.commit(&Batch {
        readings: vec![],
        rejections: vec![rejection(Some("b"), "replayed")],
    })
    .unwrap();
    assert_eq!(
        s.rejection_counts().unwrap(),
        vec![
            ("bad_signature".into(), 2),
            ("bad_topic".into(), 1),
            ("replayed".into(), 2)
        ]
    );
    let devices = s.devices().unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.id.as_str(), d.accepted, d.rejected, d.last_seen_ms))
            .collect::<Vec<_>>(),
        vec![("a", 1, 2, Some(5)), ("b", 0, 2, None)]
    );
    let recent = s.recent_rejections(2).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0], rejection(Some("b"), "replayed"), "newest first");
    assert_eq!(s.recent_rejections(100).unwrap().len(), 5);
}

fn the_registry_upserts_revokes_and_records_firmware(open: Open) {
    let mut s = open();
    s.upsert_device("b", true, 1).unwrap();
    s.upsert_device("a", false, 1).unwrap();
    assert!(s.set_device_status("b", "revoked").unwrap());
    assert!(!s.set_device_status("nobody", "revoked").unwrap());
    s.set_firmware("a", "1.2.3").unwrap();
    let d = s.devices().unwrap();
    assert_eq!(
        d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(d[0].firmware.as_deref(), Some("1.2.3"));
    assert_eq!((d[1].status.as_str(), d[1].legacy), ("revoked", true));
    // Re-adding re-activates and updates the key version.
    s.upsert_device("b", false, 2).unwrap();
    let b = s.devices().unwrap().pop().unwrap();
    assert_eq!(
        (b.status.as_str(), b.legacy, b.key_version),
        ("active", false, 2)
    );
    // last_seen only moves forward.
    s.commit(&readings(vec![reading("a", 5, 500, "x")]))
        .unwrap();
    s.commit(&readings(vec![reading("a", 6, 300, "y")]))
        .unwrap();
    assert_eq!(s.devices().unwrap()[0].last_seen_ms, Some(500));
}

fn telemetry_pages_by_time_and_seq(open: Open) {
    let mut s = open();
    s.upsert_device("a", false, 1).unwrap();
    s.commit(&readings(
        (1..=20)
            .rev()
            .map(|n| reading("a", n, 1, "s"))
            .chain([reading("b", 3, 1, "s")])
            .collect(),
    ))
    .unwrap();
    // ts_ms = 1000 + seq
    let page = s.telemetry("a", 1_005, 1_015, None, 4).unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 6, 7, 8]
    );
    let next = s.telemetry("a", 1_005, 1_015, Some(8), 100).unwrap();
    assert_eq!(
        next.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![9, 10, 11, 12, 13, 14]
    );
    assert_eq!(next[0], reading("a", 9, 1, "s"));
    assert!(
        s.telemetry("nobody", 0, i64::MAX, None, 10)
            .unwrap()
            .is_empty()
    );
}

fn seqs_beyond_i64_are_refused_not_wrapped(open: Open) {
    let mut s = open();
    let e = s
        .commit(&readings(vec![reading("a", u64::MAX, 1, "s")]))
        .unwrap_err();
    assert!(e.to_string().contains("2^63-1"), "{e}");
    assert_eq!(s.reading_count().unwrap(), 0);
    assert!(s.stored_sig("a", u64::MAX).is_err());
}

fn the_stored_copy_classifies_seen_messages(open: Open) {
    let mut s = open();
    s.commit(&readings(vec![reading("a", 1, 1, "d1")])).unwrap();
    let stored = s.stored_sig("a", 1).unwrap();
    assert_eq!(
        classify_seen(stored.as_deref(), "d1", true),
        SeenKind::Redelivery
    );
    assert_eq!(
        classify_seen(stored.as_deref(), "d1", false),
        SeenKind::Replay
    );
    assert_eq!(
        classify_seen(stored.as_deref(), "d2", false),
        SeenKind::Retransmission
    );
    let missing = s.stored_sig("a", 2).unwrap();
    assert_eq!(
        classify_seen(missing.as_deref(), "d1", true),
        SeenKind::Replay
    );
}

/// Three workers' connections commit overlapping batches of one device's readings at the same
/// time, each in its own order (one device's messages spread over several workers, plus
/// redeliveries of the same messages to different workers): every key is stored once,
/// reported `New` to exactly one writer, and the device counter matches.
fn concurrent_writers_store_each_reading_once(open: Open) {
    let mut s = open();
    for d in ["a", "b", "c"] {
        s.upsert_device(d, false, 1).unwrap();
    }
    fn all_keys() -> Vec<(String, u64)> {
        (1..=200u64)
            .flat_map(|seq| ["a", "b", "c"].map(|d| (d.to_string(), seq)))
            .collect()
    }
    // All writers commit their n-th batch at the same moment.
    let rounds = std::sync::Barrier::new(3);
    let rounds = &rounds;
    let new_per_writer: Vec<Vec<(String, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3u64)
            .map(|w| {
                scope.spawn(move || {
                    let mut conn = open();
                    let mut new = Vec::new();
                    // Every writer has every key, each in its own order, 50 per batch.
                    let mut keys = all_keys();
                    if w == 1 {
                        keys.reverse();
                    }
                    if w == 2 {
                        keys.sort_by_key(|(d, s)| ((s * 37) % 101, d.clone()));
                    }
                    for chunk in keys.chunks(50) {
                        rounds.wait();
                        let batch = readings(
                            chunk
                                .iter()
                                .map(|(d, seq)| reading(d, *seq, 100 + w as i64, &format!("w{w}")))
                                .collect(),
                        );
                        let out = conn.commit(&batch).unwrap();
                        for (r, i) in batch.readings.iter().zip(out) {
                            if i == Inserted::New {
                                new.push((r.device.clone(), r.seq));
                            }
                        }
                    }
                    new
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<&(String, u64)> = new_per_writer.iter().flatten().collect();
    let unique: HashSet<&(String, u64)> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a key was reported new twice");
    assert_eq!(
        unique.len(),
        all_keys().len(),
        "a key was never reported new"
    );
    assert_eq!(s.reading_count().unwrap(), unique.len() as u64);
    // The work really was shared: more than one writer stored something.
    assert!(
        new_per_writer.iter().filter(|n| !n.is_empty()).count() > 1,
        "{:?}",
        new_per_writer.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let accepted: u64 = s.devices().unwrap().iter().map(|d| d.accepted).sum();
    assert_eq!(accepted, unique.len() as u64);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let dir = iotsec_testkit::TestDir::new();
                    let path = dir.join("iotsec.db");
                    super::$case(&|| Box::new(super::Sqlite::open(&path).unwrap()));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    let pg = super::TestPostgres::shared();
                    let url = super::PostgresUrl::parse(&pg.fresh_database()).unwrap();
                    super::$case(&|| Box::new(super::Postgres::connect(&url).unwrap()));
                }
            )*
        }
    };
}

suite!(
    unique_device_seq_makes_redelivery_idempotent,
    an_empty_batch_and_unknown_devices_are_harmless,
    rejections_are_counted_by_reason_and_device,
    the_registry_upserts_revokes_and_records_firmware,
    telemetry_pages_by_time_and_seq,
    seqs_beyond_i64_are_refused_not_wrapped,
    the_stored_copy_classifies_seen_messages,
    concurrent_writers_store_each_reading_once,
);

// ---------------------------------------------------------------- migrations

/// Schema version 1 as iotsec first shipped it (frozen: this is history, not the current DDL).
const SQLITE_V1: &str = "CREATE TABLE schema_version (version INTEGER NOT NULL);
     CREATE TABLE readings (device TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL, payload TEXT NOT NULL, sig TEXT NOT NULL,
        PRIMARY KEY (device, seq)) WITHOUT ROWID;
     CREATE INDEX readings_device_ts ON readings (device, ts_ms);
     CREATE TABLE rejections (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, device TEXT,
        reason TEXT NOT NULL, size INTEGER NOT NULL);
     CREATE TABLE rejection_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
     CREATE TABLE devices (id TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'active',
        legacy INTEGER NOT NULL DEFAULT 0, key_version INTEGER NOT NULL DEFAULT 1, firmware TEXT,
        last_seen_ms INTEGER, accepted INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0);
     INSERT INTO schema_version (version) VALUES (1);
     INSERT INTO devices (id, accepted, last_seen_ms) VALUES ('old', 1, 9);
     INSERT INTO readings VALUES ('old', 41, 1, 9, '{\"t\": 1}', 'sig41');";

const POSTGRES_V1: &str = "CREATE TABLE schema_version (version INTEGER NOT NULL);
     CREATE TABLE readings (device TEXT NOT NULL, seq BIGINT NOT NULL, ts_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL, payload TEXT NOT NULL, sig TEXT NOT NULL,
        PRIMARY KEY (device, seq));
     CREATE INDEX readings_device_ts ON readings (device, ts_ms);
     CREATE TABLE rejections (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_ms BIGINT NOT NULL, device TEXT, reason TEXT NOT NULL, size BIGINT NOT NULL);
     CREATE TABLE rejection_counts (reason TEXT PRIMARY KEY, count BIGINT NOT NULL);
     CREATE TABLE devices (id TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'active',
        legacy BOOLEAN NOT NULL DEFAULT false, key_version INTEGER NOT NULL DEFAULT 1,
        firmware TEXT, last_seen_ms BIGINT, accepted BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0);
     INSERT INTO schema_version (version) VALUES (1);
     INSERT INTO devices (id, accepted, last_seen_ms) VALUES ('old', 1, 9);
     INSERT INTO readings VALUES ('old', 41, 1, 9, '{\"t\": 1}', 'sig41');";

/// What every migrated database must hold: the old reading, still deduplicated, and the
/// engine working on top of it.
fn check_migrated(s: &mut dyn Storage) {
    assert_eq!(s.reading_count().unwrap(), 1);
    assert_eq!(s.stored_sig("old", 41).unwrap().as_deref(), Some("sig41"));
    assert_eq!(
        s.commit(&readings(vec![
            reading("old", 41, 10, "again"),
            reading("old", 42, 10, "s42")
        ]))
        .unwrap(),
        vec![Inserted::Duplicate, Inserted::New]
    );
    let d = &s.devices().unwrap()[0];
    assert_eq!((d.accepted, d.last_seen_ms), (2, Some(10)));
}

fn sqlite_schema(path: &PathBuf) -> (Vec<i64>, bool) {
    let c = rusqlite::Connection::open(path).unwrap();
    let versions = c
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let index: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'readings_received'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (versions, index == 1)
}

#[test]
fn sqlite_migrates_an_empty_database_and_a_version_1_schema() {
    let dir = TestDir::new();
    let empty = dir.join("empty.db");
    let latest = Sqlite::open(&empty).unwrap().migrate().unwrap();
    assert!(latest >= RETENTION_INDEX);
    assert_eq!(sqlite_schema(&empty), ((1..=latest as i64).collect(), true));

    let old = dir.join("v1.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch(SQLITE_V1)
        .unwrap();
    assert_eq!(sqlite_schema(&old), (vec![1], false));
    let mut s = Sqlite::open(&old).unwrap();
    assert_eq!(sqlite_schema(&old), ((1..=latest as i64).collect(), true));
    check_migrated(&mut s);
    // Opening again applies nothing twice.
    drop(s);
    Sqlite::open(&old).unwrap();
    assert_eq!(sqlite_schema(&old).0.len(), latest);

    rusqlite::Connection::open(&old)
        .unwrap()
        .execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    let e = Sqlite::open(&old).unwrap_err().to_string();
    assert!(e.contains("newer than this iotsec"), "{e}");
}

#[test]
fn postgres_migrates_an_empty_database_and_a_version_1_schema() {
    let pg = TestPostgres::shared();
    let schema = |db: &str| {
        let versions = pg.psql(
            db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version",
        );
        let index = pg.psql(
            db,
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'readings_received'",
        );
        (versions.trim().to_owned(), index.trim() == "1")
    };
    pg.create_database("mig_empty");
    let mut s = Postgres::connect(&PostgresUrl::parse(&pg.url("mig_empty")).unwrap()).unwrap();
    let latest = s.migrate().unwrap();
    assert!(latest >= RETENTION_INDEX);
    let all: String = (1..=latest)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(schema("mig_empty"), (all.clone(), true));

    pg.create_database("mig_v1");
    pg.psql("mig_v1", POSTGRES_V1);
    assert_eq!(schema("mig_v1"), ("1".to_string(), false));
    let url = PostgresUrl::parse(&pg.url("mig_v1")).unwrap();
    // Several workers starting at once: the advisory lock lets one migrate, the rest see it done.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Postgres::connect(&url).map(drop)))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    assert_eq!(schema("mig_v1"), (all, true));
    check_migrated(&mut Postgres::connect(&url).unwrap());

    pg.psql("mig_v1", "INSERT INTO schema_version (version) VALUES (99)");
    let e = Postgres::connect(&url).unwrap_err().to_string();
    assert!(e.contains("newer than this iotsec"), "{e}");
}

#[test]
fn postgres_errors_name_the_server_but_never_the_password() {
    let pg = TestPostgres::shared();
    let right = pg.url("postgres");
    let wrong = right.replacen(":pw", ":notthepassword-", 1);
    assert_ne!(right, wrong);
    let e = Postgres::connect(&PostgresUrl::parse(&wrong).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1") && e.contains("***"), "{e}");
    assert!(!e.contains("notthepassword"), "{e}");
    assert!(e.contains("password authentication failed"), "{e}");
}
