//! Device management and privacy from a server.toml and its SQLite registry, at a fixed time.

use iotsec_audit::{Inputs, OwaspIot, Status};
use iotsec_server::store::sqlite::Sqlite;
use iotsec_server::store::{Batch, Reading, Rejection, Storage};
use iotsec_testkit::{TestDir, TestPki};
use time::macros::datetime;

use crate::common;

const DAY_MS: i64 = 86_400_000;

#[test]
fn registry_checks_use_the_clock_they_are_given() {
    let now = datetime!(2026-06-01 12:00 UTC);
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let root = TestDir::new();
    let mut pki = TestPki::new(
        &root,
        iotsec_pki::KeyAlgorithm::default(),
        &["fresh", "stale", "gone", "unlisted"],
    );
    pki.ca.write_crl(30).unwrap();

    let db_path = root.join("iotsec.db");
    let mut db = Sqlite::open(&db_path).unwrap();
    for id in ["fresh", "stale", "gone", "never"] {
        db.upsert_device(id, id == "stale", 1).unwrap();
    }
    db.set_device_status("gone", "revoked").unwrap();
    let reading = |device: &str, seq: u64, received_ms: i64, payload: &str| Reading {
        device: device.into(),
        seq,
        ts_ms: received_ms,
        received_ms,
        payload: payload.into(),
        sig: format!("{seq:064x}"),
    };
    db.commit(&Batch {
        readings: vec![
            reading(
                "fresh",
                1,
                now_ms - DAY_MS,
                r#"{"temp": 21.5, "owner": "ana@example.org"}"#,
            ),
            reading("stale", 1, now_ms - 30 * DAY_MS, r#"{"temp": 19.0}"#),
        ],
        rejections: vec![Rejection {
            received_ms: now_ms - DAY_MS,
            device: Some("intruder".into()),
            reason: "bad_signature".into(),
            size: 80,
        }],
    })
    .unwrap();
    drop(db);
    let server = root.join("server.toml");
    std::fs::write(
        &server,
        format!(
            "[broker]\nhost = \"localhost\"\nport = 8883\n[tls]\nca = \"pki/ca.crt\"\ncert = \"pki/devices/iotsec-server.crt\"\nkey = \"pki/devices/iotsec-server.key\"\n[keys]\nmaster = \"master.key\"\n[storage]\nsqlite = \"{}\"\n",
            db_path.display()
        ),
    )
    .unwrap();

    let report = common::audit_at(
        Inputs {
            server_config: Some(server),
            pki: Some(pki.dir.clone()),
            ..Inputs::default()
        },
        now,
    );
    eprintln!("{}", iotsec_audit::render::text(&report));
    let about = |id: &str, device: &str| {
        report
            .findings
            .iter()
            .any(|f| f.id == id && f.location.to_string().contains(&format!("device {device}")))
    };
    assert!(about("DEV-SILENT", "stale"), "30 days without a message");
    assert!(about("DEV-SILENT", "never"));
    assert!(!about("DEV-SILENT", "fresh"));
    assert!(about("DEV-LEGACY-KEY", "stale"));
    assert!(about("DEV-UNREGISTERED", "intruder"));
    assert!(about("DEV-REVOKED-CERT-ACTIVE", "gone"));
    assert!(about("DEV-CERT-UNREGISTERED", "unlisted"));
    assert!(about("PRIV-PERSONAL-DATA", "fresh"));
    let status = |c: OwaspIot| {
        report
            .categories
            .iter()
            .find(|x| x.category == c)
            .unwrap()
            .status
    };
    assert_eq!(status(OwaspIot::I6), Status::Fail);
    assert_eq!(status(OwaspIot::I8), Status::Fail);

    // A week later nothing changed in the registry, but "fresh" is now silent too.
    let later = common::audit_at(
        Inputs {
            server_config: Some(root.join("server.toml")),
            ..Inputs::default()
        },
        now + time::Duration::days(8),
    );
    assert!(
        later
            .findings
            .iter()
            .any(|f| f.id == "DEV-SILENT" && f.location.to_string().contains("device fresh"))
    );
}
