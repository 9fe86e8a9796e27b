//! Property tests: encoders round-trip, and random sequences of update operations keep the
//! engine's invariants (no downgrade, counter = max over confirmed releases, always bootable).

use iotsec_ota::record::{BootRecord, LastResult, Outcome, SlotState, Trial, TrialPhase};
use iotsec_ota::sim::SimFlash;
use iotsec_ota::{Engine, HardwareId, Manifest, RollbackReason, SlotId, Version};
use proptest::prelude::*;

use crate::common::*;

fn slot() -> impl Strategy<Value = SlotId> {
    prop_oneof![Just(SlotId::A), Just(SlotId::B)]
}

fn slot_state() -> impl Strategy<Value = SlotState> {
    prop_oneof![
        Just(SlotState::Empty),
        any::<[u8; 32]>().prop_map(SlotState::Writing),
        any::<[u8; 32]>().prop_map(SlotState::Verified),
    ]
}

fn version() -> impl Strategy<Value = Version> {
    (
        0u64..1000,
        0u64..1000,
        0u64..1000,
        proptest::option::of("[a-z]{1,5}(\\.[0-9]{1,3})?"),
    )
        .prop_filter_map("valid semver", |(a, b, c, pre)| {
            let text = match pre {
                Some(pre) => format!("{a}.{b}.{c}-{pre}"),
                None => format!("{a}.{b}.{c}"),
            };
            Version::parse(&text).ok()
        })
}

proptest! {
    #[test]
    fn manifest_round_trips(
        v in version(),
        counter in any::<u32>(),
        hw in "[A-Za-z0-9._:/-]{1,64}",
        size in 1u64..(1 << 40),
        sha in any::<[u8; 32]>(),
        created in 0u64..u64::MAX / 2,
        expires in proptest::option::of(1u64..1000),
    ) {
        let m = Manifest {
            version: v,
            security_counter: counter,
            hardware_id: HardwareId::new(&hw).unwrap(),
            image_size: size,
            image_sha256: sha,
            created_s: created,
            expires_s: expires.map(|d| created + d),
        };
        let bytes = m.encode().unwrap();
        prop_assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn boot_record_round_trips(
        seq in any::<u32>(),
        states in (slot_state(), slot_state()),
        trial in proptest::option::of((slot(), proptest::option::of(any::<u64>()))),
        counter in any::<u32>(),
        last in proptest::option::of((proptest::option::of(version()), 0u8..6)),
        pending in any::<bool>(),
    ) {
        let record = BootRecord {
            seq,
            active: None,
            slots: [states.0, states.1],
            trial: trial.map(|(slot, deadline)| Trial {
                slot,
                phase: deadline.map_or(TrialPhase::Pending, |d| TrialPhase::Booted { deadline_ms: d }),
            }),
            security_counter: counter,
            last: last.map(|(version, r)| LastResult {
                version,
                outcome: match r {
                    0 => Outcome::Confirmed,
                    1 => Outcome::RolledBack(RollbackReason::DeadlinePassed),
                    2 => Outcome::RolledBack(RollbackReason::ResetBeforeConfirm),
                    3 => Outcome::RolledBack(RollbackReason::TrialExited),
                    4 => Outcome::RolledBack(RollbackReason::ImageInvalid),
                    _ => Outcome::RolledBack(RollbackReason::Requested),
                },
            }),
            report_pending: pending,
        };
        match BootRecord::decode(&record.encode()) {
            Ok(back) => prop_assert_eq!(back, record),
            // Only records breaking the structural rules are refused.
            Err(_) => prop_assert!(record.trial.is_some_and(|t| !matches!(record.slot(t.slot), SlotState::Verified(_)))),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Install(usize),
    InstallTampered(usize),
    Boot(u64),
    Confirm(u64),
    CheckDeadline(u64),
    Reset,
    RollBack,
    Ack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..6).prop_map(Op::Install),
        (0usize..6).prop_map(Op::InstallTampered),
        (0u64..40_000).prop_map(Op::Boot),
        (0u64..40_000).prop_map(Op::Confirm),
        (0u64..40_000).prop_map(Op::CheckDeadline),
        Just(Op::Reset),
        Just(Op::RollBack),
        Just(Op::Ack),
    ]
}

fn catalogue() -> &'static [Release] {
    static RELEASES: std::sync::OnceLock<Vec<Release>> = std::sync::OnceLock::new();
    // Versions rise; counters mostly rise but 1.2.0 lowers it (must be refused after 1.1.0).
    RELEASES.get_or_init(|| {
        [
            ("1.0.0", 1),
            ("1.1.0", 3),
            ("1.2.0", 2),
            ("2.0.0", 3),
            ("2.1.0", 5),
            ("3.0.0", 5),
        ]
        .iter()
        .map(|(v, c)| release(v, *c))
        .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec(op(), 1..25)) {
        let releases = catalogue();
        let mut engine = device();
        let mut now = NOW_MS;
        // The model: what has been confirmed.
        let mut confirmed: Vec<&Release> = Vec::new();
        for op in ops {
            match op {
                Op::Install(i) => { let _ = install(&mut engine, &releases[i]); }
                Op::InstallTampered(i) => {
                    let r = &releases[i];
                    let mut image = r.image.clone();
                    let at = i * 7 % image.len();
                    image[at] ^= 1;
                    let err = install_parts(&mut engine, r.signed.as_bytes(), &image, &keys(), now);
                    prop_assert!(err.is_err());
                }
                Op::Boot(dt) => { now += dt; engine.boot(&keys(), now).unwrap(); }
                Op::Confirm(dt) => {
                    now += dt;
                    if let Ok(v) = engine.confirm(now) {
                        confirmed.push(releases.iter().find(|r| *r.version() == v).unwrap());
                    }
                }
                Op::CheckDeadline(dt) => { now += dt; engine.check_deadline(now).unwrap(); }
                Op::Reset => engine = Engine::open(engine.into_store(), config()).unwrap(),
                Op::RollBack => { let _ = engine.roll_back(RollbackReason::Requested); }
                Op::Ack => engine.ack_report().unwrap(),
            }
            // Invariants.
            let record = engine.record().clone();
            let max_counter = confirmed.iter().map(|r| r.signed.manifest().security_counter).max();
            prop_assert_eq!(record.security_counter, max_counter.unwrap_or(0));
            for pair in confirmed.windows(2) {
                prop_assert!(pair[0].version() < pair[1].version(), "no downgrade");
                prop_assert!(pair[0].signed.manifest().security_counter <= pair[1].signed.manifest().security_counter);
            }
            prop_assert_eq!(engine.installed().map(|m| &m.version), confirmed.last().map(|r| r.version()));
            if let Some(t) = record.trial {
                prop_assert!(Some(t.slot) != record.active);
            }
        }
        // Always still bootable, into the last confirmed release (after a reset).
        let mut engine: Engine<SimFlash> = Engine::open(engine.into_store(), config()).unwrap();
        let boot = engine.boot(&keys(), now).unwrap();
        match confirmed.last() {
            // Nothing confirmed: nothing boots, unless a first install starts its trial now.
            None => prop_assert!(boot.is_none_or(|b| b.trial)),
            Some(last) => {
                // A pending trial starts now; otherwise the last confirmed release runs.
                let boot = boot.unwrap();
                let active = engine.record().active.unwrap();
                prop_assert_eq!(engine.slot_manifest(active).unwrap(), &last.signed);
                prop_assert_eq!(boot.slot == active, !boot.trial);
            }
        }
    }
}
