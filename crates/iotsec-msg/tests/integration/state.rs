//! State machines against simple models: the replay window (a set of seen numbers + the max)
//! and the sequence counter under power cuts at every step.

use std::collections::BTreeSet;
use std::num::NonZeroU64;

use iotsec_msg::seq::{Next, SeqCounter};
use iotsec_msg::{Error, ReplayWindow};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Pick {
    Abs(u64),
    Above(u64),
    Below(u64),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => prop_oneof![any::<u64>(), (u64::MAX - 200)..=u64::MAX, 0u64..200].prop_map(Pick::Abs),
        3 => (0u64..80).prop_map(Pick::Above),
        5 => (0u64..140).prop_map(Pick::Below),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn replay_window_matches_model(picks in proptest::collection::vec(pick(), 1..200)) {
        let mut w = ReplayWindow::new();
        let mut seen = BTreeSet::new();
        let mut max: Option<u64> = None;
        for p in picks {
            let m = max.unwrap_or(0);
            let seq = match p {
                Pick::Abs(s) => s,
                Pick::Above(d) => m.saturating_add(d),
                Pick::Below(d) => m.saturating_sub(d),
            };
            let want = match max {
                None => Ok(()),
                Some(mx) if seq > mx => Ok(()),
                Some(mx) if mx - seq >= 64 => Err(Error::Stale { seq, newest: mx }),
                Some(_) if seen.contains(&seq) => Err(Error::Replayed { seq }),
                Some(_) => Ok(()),
            };
            prop_assert_eq!(w.check_and_accept(seq), want.clone());
            if want.is_ok() {
                seen.insert(seq);
                max = Some(max.map_or(seq, |mx| mx.max(seq)));
            }
            prop_assert_eq!(w.newest(), max);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Ask for a number; if a bound must be persisted, the write succeeds.
    Send,
    /// Power cut before the pending write reaches storage.
    CutBeforeWrite,
    /// Power cut right after the write reached storage, before the counter learnt of it.
    CutAfterWrite,
    /// Power cut at a random moment between messages.
    Cut,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => Just(Step::Send),
        1 => Just(Step::CutBeforeWrite),
        1 => Just(Step::CutAfterWrite),
        1 => Just(Step::Cut),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn seq_never_repeats_across_power_cuts(
        steps in proptest::collection::vec(step(), 1..400),
        n in 1u64..20,
    ) {
        let step_n = NonZeroU64::new(n).unwrap();
        let mut stored: Option<u64> = None;
        let mut c = SeqCounter::boot(stored, step_n);
        let mut used: Vec<u64> = Vec::new();
        let mut writes = 0u64;
        let mut boots = 1u64;
        for s in steps {
            match s {
                Step::Send => loop {
                    match c.next_seq().unwrap() {
                        Next::Use(x) => {
                            // never handed out at or above what storage holds
                            prop_assert!(Some(x) < stored);
                            used.push(x);
                            break;
                        }
                        Next::Persist(b) => {
                            stored = Some(b);
                            writes += 1;
                            c.persisted(b);
                        }
                    }
                },
                Step::CutBeforeWrite | Step::CutAfterWrite => {
                    if let Next::Persist(b) = c.next_seq().unwrap()
                        && matches!(s, Step::CutAfterWrite)
                    {
                        stored = Some(b);
                        writes += 1;
                    }
                    c = SeqCounter::boot(stored, step_n);
                    boots += 1;
                }
                Step::Cut => {
                    c = SeqCounter::boot(stored, step_n);
                    boots += 1;
                }
            }
        }
        prop_assert!(used.windows(2).all(|w| w[0] < w[1]), "{:?}", used);
        // one write per `n` numbers plus at most one per boot
        prop_assert!(writes <= used.len() as u64 / n + boots + 1);
    }
}

#[test]
fn seq_exhaustion_is_an_error() {
    let mut c = SeqCounter::boot(Some(u64::MAX), NonZeroU64::new(10).unwrap());
    assert_eq!(c.next_seq(), Err(Error::SeqExhausted));
}
