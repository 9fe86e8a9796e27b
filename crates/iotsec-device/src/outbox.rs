//! The outbox: the sans-I/O core that decides which queued readings to publish, when to
//! publish one again, and when the disk queue may forget one.
//!
//! It owns no socket, file or clock. The shell feeds it [`Event`]s with the current
//! monotonic time and performs the [`Action`]s it returns:
//!
//! | event | meaning | typical actions |
//! |---|---|---|
//! | [`Event::Loaded`] | readings read from the disk queue (at most [`Outbox::room`]) | `Publish` each, if connected |
//! | [`Event::Connected`] | CONNACK on a new connection | `Publish` *every* unacked reading again |
//! | [`Event::Disconnected`] | the connection is gone | — |
//! | [`Event::Published`] | the broker PUBACKed a reading | — (restarts its retry timer) |
//! | [`Event::Acked`] | the ingest's end-to-end [`Ack`]: these seqs are stored | `Release` |
//! | [`Event::Tick`] | time passed | `Publish` readings whose retry timer ran out |
//!
//! Rules (the property tests check them):
//! * a reading leaves the outbox only through the ingest's ack, never through a broker
//!   PUBACK (a `kill -9` of Mosquitto can lose PUBACKed messages);
//! * at most `window` readings are loaded and unacked at a time;
//! * publishing happens only while connected, in seq order within one step;
//! * after every (re)connect every unacked reading is published again, and within one
//!   connection a reading is published again only when its retry timeout has passed since
//!   it was published or PUBACKed, whichever is later. The timeout is `retry_after`,
//!   doubled after each expiry on the same connection up to 16 times `retry_after`, so a
//!   reading the ingest keeps refusing costs little while it waits (it is never dropped);
//! * `Release { below }` is monotonic and never covers a reading that is not acked.
//!
//! Every `Publish` is signed by the shell at send time, with a fresh `ts` and the reading's
//! own seq, so a retransmission is a valid new signature over the same seq: the ingest
//! recognises it as a copy of a stored seq, drops it and acks again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use iotsec_broker::topic::Ack;

use crate::queue::Entry;

/// Tuning of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Readings published but not yet acked by the ingest, at most.
    pub window: usize,
    /// A reading not acked this long after its publish (or PUBACK) is published again
    /// (doubling per expiry on one connection, up to 16 times this).
    pub retry_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            window: 500,
            retry_after: Duration::from_secs(10),
        }
    }
}

/// Something that happened, for [`Outbox::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Readings read from the disk queue, in increasing seq order.
    Loaded(Vec<Entry>),
    /// A connection was established (CONNACK accepted).
    Connected,
    /// The connection is gone.
    Disconnected,
    /// The broker acknowledged (PUBACK) the publish of this seq.
    Published {
        /// The reading's seq.
        seq: u64,
    },
    /// The ingest stored these seqs.
    Acked(Ack),
    /// Time passed (retry timers).
    Tick,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sign `reading` as v2 with `seq` and the current time, publish it at QoS 1.
    Publish {
        /// The reading's seq.
        seq: u64,
        /// The reading (JSON object, unsigned).
        reading: Arc<[u8]>,
        /// 1 for the first publish, more for each retransmission.
        attempt: u32,
    },
    /// Every seq below `below` is acked: the disk queue may drop those readings.
    Release {
        /// Exclusive bound.
        below: u64,
    },
}

#[derive(Debug)]
struct Slot {
    reading: Arc<[u8]>,
    attempts: u32,
    /// Retry timers that ran out on the current connection.
    expiries: u32,
    /// `Some` while in flight on the current connection: when to publish it again.
    deadline: Option<Duration>,
}

/// The outbox state machine. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    config: OutboxConfig,
    connected: bool,
    entries: BTreeMap<u64, Slot>,
    /// Loaded, unacked, not in flight on this connection.
    waiting: BTreeSet<u64>,
    /// In flight: (retry deadline, seq).
    deadlines: BTreeSet<(Duration, u64)>,
    loaded_up_to: Option<u64>,
    released: u64,
}

impl Outbox {
    /// An empty, disconnected outbox.
    pub fn new(config: OutboxConfig) -> Self {
        Outbox {
            config: OutboxConfig {
                window: config.window.max(1),
                ..config
            },
            connected: false,
            entries: BTreeMap::new(),
            waiting: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            loaded_up_to: None,
            released: 0,
        }
    }

    /// How many more readings the shell may load from the disk queue.
    pub fn room(&self) -> usize {
        self.config.window.saturating_sub(self.entries.len())
    }

    /// Loaded readings not yet acked.
    pub fn unacked(&self) -> usize {
        self.entries.len()
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// When the next retry timer runs out (send [`Event::Tick`] then), if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        if !self.connected {
            return None;
        }
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Handles one event at monotonic time `now`, appending the actions to perform.
    pub fn handle(&mut self, now: Duration, event: Event, actions: &mut Vec<Action>) {
        match event {
            Event::Loaded(batch) => {
                for entry in batch {
                    if self.loaded_up_to.is_some_and(|l| entry.seq <= l) {
                        continue; // out of order: the queue never does this
                    }
                    self.loaded_up_to = Some(entry.seq);
                    self.entries.insert(
                        entry.seq,
                        Slot {
                            reading: Arc::from(entry.reading),
                            attempts: 0,
                            expiries: 0,
                            deadline: None,
                        },
                    );
                    self.waiting.insert(entry.seq);
                }
            }
            Event::Connected => {
                self.connected = true;
                self.deadlines.clear();
                for (seq, slot) in &mut self.entries {
                    slot.deadline = None;
                    slot.expiries = 0;
                    self.waiting.insert(*seq);
                }
            }
            Event::Disconnected => {
                self.connected = false;
            }
            Event::Published { seq } => {
                let retry_after = self.config.retry_after;
                if let Some(slot) = self.entries.get_mut(&seq)
                    && let Some(old) = slot.deadline
                    && now + timeout(retry_after, slot.expiries) > old
                {
                    let new = now + timeout(retry_after, slot.expiries);
                    self.deadlines.remove(&(old, seq));
                    self.deadlines.insert((new, seq));
                    slot.deadline = Some(new);
                }
            }
            Event::Acked(ack) => {
                for &(lo, hi) in &ack.ranges {
                    let acked: Vec<u64> = self.entries.range(lo..=hi).map(|(s, _)| *s).collect();
                    for seq in acked {
                        if let Some(slot) = self.entries.remove(&seq) {
                            self.waiting.remove(&seq);
                            if let Some(d) = slot.deadline {
                                self.deadlines.remove(&(d, seq));
                            }
                        }
                    }
                }
                if let Some(loaded) = self.loaded_up_to {
                    let below = self
                        .entries
                        .keys()
                        .next()
                        .copied()
                        .unwrap_or(loaded.saturating_add(1));
                    if below > self.released {
                        self.released = below;
                        actions.push(Action::Release { below });
                    }
                }
            }
            Event::Tick => {
                while let Some(&(deadline, seq)) = self.deadlines.first() {
                    if deadline > now {
                        break;
                    }
                    self.deadlines.pop_first();
                    if let Some(slot) = self.entries.get_mut(&seq) {
                        slot.deadline = None;
                        slot.expiries = slot.expiries.saturating_add(1);
                        self.waiting.insert(seq);
                    }
                }
            }
        }
        self.flush(now, actions);
    }

    /// Readings loaded but not yet published on the current connection.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Publishes every waiting reading, if connected.
    fn flush(&mut self, now: Duration, actions: &mut Vec<Action>) {
        if !self.connected {
            return;
        }
        while let Some(seq) = self.waiting.pop_first() {
            let Some(slot) = self.entries.get_mut(&seq) else {
                continue;
            };
            let deadline = now + timeout(self.config.retry_after, slot.expiries);
            slot.attempts = slot.attempts.saturating_add(1);
            slot.deadline = Some(deadline);
            self.deadlines.insert((deadline, seq));
            actions.push(Action::Publish {
                seq,
                reading: Arc::clone(&slot.reading),
                attempt: slot.attempts,
            });
        }
    }
}

/// The retry timeout after `expiries` expiries: doubling, at most 16 times `base`.
fn timeout(base: Duration, expiries: u32) -> Duration {
    base.saturating_mul(1 << expiries.min(4))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const RETRY: Duration = Duration::from_millis(1000);

    fn config(window: usize) -> OutboxConfig {
        OutboxConfig {
            window,
            retry_after: RETRY,
        }
    }

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            reading: format!("{{\"n\": {seq}}}").into_bytes(),
        }
    }

    fn publishes(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Publish { seq, .. } => Some(*seq),
                Action::Release { .. } => None,
            })
            .collect()
    }

    #[test]
    fn publish_ack_release_and_retry() {
        let mut o = Outbox::new(config(3));
        let mut a = Vec::new();
        let t0 = Duration::ZERO;
        o.handle(t0, Event::Loaded(vec![entry(5), entry(7)]), &mut a);
        assert!(a.is_empty(), "not connected yet");
        assert_eq!(o.room(), 1);
        o.handle(t0, Event::Connected, &mut a);
        assert_eq!(publishes(&a), [5, 7]);
        a.clear();
        // a broker PUBACK is not an ack
        o.handle(t0, Event::Published { seq: 5 }, &mut a);
        assert!(a.is_empty());
        assert_eq!(o.unacked(), 2);
        // the retry timer runs out for both
        o.handle(t0 + RETRY, Event::Tick, &mut a);
        assert_eq!(publishes(&a), [5, 7]);
        assert!(matches!(a[0], Action::Publish { attempt: 2, .. }));
        a.clear();
        // The next timeout is twice as long.
        o.handle(t0 + RETRY * 2, Event::Tick, &mut a);
        assert!(publishes(&a).is_empty(), "second timeout doubled");
        assert_eq!(o.next_deadline(), Some(t0 + RETRY * 3));
        o.handle(t0 + RETRY, Event::Acked(Ack::from_seqs([7])), &mut a);
        // 7 is acked but 5 is not: the queue may only forget what lies below 5.
        assert_eq!(a, [Action::Release { below: 5 }]);
        a.clear();
        o.handle(t0 + RETRY, Event::Acked(Ack::from_seqs([5])), &mut a);
        assert_eq!(a, [Action::Release { below: 8 }]);
        assert_eq!(o.room(), 3);
    }

    #[test]
    fn reconnect_resends_everything_unacked() {
        let mut o = Outbox::new(config(10));
        let mut a = Vec::new();
        o.handle(Duration::ZERO, Event::Connected, &mut a);
        o.handle(
            Duration::ZERO,
            Event::Loaded((1..=4).map(entry).collect()),
            &mut a,
        );
        assert_eq!(publishes(&a), [1, 2, 3, 4]);
        a.clear();
        o.handle(Duration::ZERO, Event::Acked(Ack::from_seqs([2])), &mut a);
        assert_eq!(a, [Action::Release { below: 1 }]);
        a.clear();
        o.handle(Duration::ZERO, Event::Disconnected, &mut a);
        o.handle(Duration::from_secs(99), Event::Tick, &mut a);
        assert!(a.is_empty(), "nothing is sent while disconnected");
        o.handle(Duration::from_secs(99), Event::Connected, &mut a);
        assert_eq!(publishes(&a), [1, 3, 4]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Load(usize, u64),
        Connect,
        Disconnect,
        Puback(prop::sample::Index),
        AckSome(Vec<prop::sample::Index>),
        AckUnknown(u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1usize..8, 0u64..3).prop_map(|(n, gap)| Op::Load(n, gap)),
            1 => Just(Op::Connect),
            1 => Just(Op::Disconnect),
            2 => any::<prop::sample::Index>().prop_map(Op::Puback),
            3 => proptest::collection::vec(any::<prop::sample::Index>(), 1..6).prop_map(Op::AckSome),
            1 => any::<u64>().prop_map(Op::AckUnknown),
            3 => (0u64..1500).prop_map(Op::Advance),
        ]
    }

    /// A model of what the shell and the ingest see, checking the outbox's rules.
    struct Harness {
        o: Outbox,
        now: Duration,
        next_seq: u64,
        loaded: BTreeSet<u64>,
        acked: BTreeSet<u64>,
        /// Published on the current connection: seq -> last milestone (publish or PUBACK).
        in_flight: BTreeMap<u64, Duration>,
        connected: bool,
        released: u64,
    }

    impl Harness {
        fn new(window: usize) -> Self {
            Harness {
                o: Outbox::new(config(window)),
                now: Duration::ZERO,
                next_seq: 0,
                loaded: BTreeSet::new(),
                acked: BTreeSet::new(),
                in_flight: BTreeMap::new(),
                connected: false,
                released: 0,
            }
        }

        fn step(&mut self, event: Event) -> Result<Vec<Action>, TestCaseError> {
            let mut actions = Vec::new();
            let is_connect = event == Event::Connected;
            self.o.handle(self.now, event, &mut actions);
            let published = publishes(&actions);
            prop_assert!(published.windows(2).all(|w| w[0] < w[1]), "seq order");
            if is_connect {
                let unacked: Vec<u64> = self.loaded.difference(&self.acked).copied().collect();
                prop_assert_eq!(
                    &published,
                    &unacked,
                    "a connect resends every unacked reading"
                );
            }
            for a in &actions {
                match a {
                    Action::Publish { seq, .. } => {
                        prop_assert!(self.connected, "published while disconnected");
                        prop_assert!(self.loaded.contains(seq) && !self.acked.contains(seq));
                        if let Some(last) = self.in_flight.get(seq) {
                            prop_assert!(
                                self.now >= *last + RETRY,
                                "seq {} resent {:?} after its last milestone",
                                seq,
                                self.now - *last
                            );
                        }
                        self.in_flight.insert(*seq, self.now);
                    }
                    Action::Release { below } => {
                        prop_assert!(*below > self.released, "release is monotonic");
                        for s in self.loaded.range(..*below) {
                            prop_assert!(self.acked.contains(s), "released unacked {}", s);
                        }
                        self.released = *below;
                    }
                }
            }
            prop_assert!(self.o.unacked() <= self.o.config.window);
            prop_assert_eq!(
                self.o.unacked(),
                self.loaded.difference(&self.acked).count()
            );
            Ok(actions)
        }

        fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
            match op {
                Op::Load(n, gap) => {
                    let n = n.min(self.o.room());
                    let mut batch = Vec::new();
                    for _ in 0..n {
                        self.next_seq += gap;
                        batch.push(entry(self.next_seq));
                        self.loaded.insert(self.next_seq);
                        self.next_seq += 1;
                    }
                    self.step(Event::Loaded(batch))?;
                }
                Op::Connect => {
                    self.connected = true;
                    self.in_flight.clear();
                    self.step(Event::Connected)?;
                }
                Op::Disconnect => {
                    self.connected = false;
                    self.in_flight.clear();
                    self.step(Event::Disconnected)?;
                }
                Op::Puback(i) => {
                    if self.connected && !self.in_flight.is_empty() {
                        let seq = *self
                            .in_flight
                            .keys()
                            .nth(i.index(self.in_flight.len()))
                            .unwrap();
                        if !self.acked.contains(&seq) {
                            self.in_flight.insert(seq, self.now);
                        }
                        self.step(Event::Published { seq })?;
                    }
                }
                Op::AckSome(picks) => {
                    let published: Vec<u64> = self.in_flight.keys().copied().collect();
                    if !published.is_empty() {
                        let seqs: Vec<u64> = picks
                            .iter()
                            .map(|i| published[i.index(published.len())])
                            .collect();
                        self.acked.extend(seqs.iter().copied());
                        for s in &seqs {
                            self.in_flight.remove(s);
                        }
                        self.step(Event::Acked(Ack::from_seqs(seqs)))?;
                    }
                }
                Op::AckUnknown(seq) => {
                    // An ack for something never loaded (or long gone) changes nothing.
                    if !self.loaded.contains(&seq) {
                        let before = self.o.unacked();
                        self.step(Event::Acked(Ack::from_seqs([seq])))?;
                        prop_assert_eq!(before, self.o.unacked());
                    }
                }
                Op::Advance(ms) => {
                    self.now += Duration::from_millis(ms);
                    self.step(Event::Tick)?;
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rules_hold_and_everything_drains(
            window in 1usize..12,
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let mut h = Harness::new(window);
            for op in ops {
                h.apply(op)?;
            }
            // Liveness: connected, with an ingest that acks whatever arrives, everything
            // loaded (and then everything still to load) drains and is released.
            h.apply(Op::Connect)?;
            for _ in 0..200 {
                let published: Vec<u64> = h.in_flight.keys().copied().collect();
                if published.is_empty() && h.o.unacked() == 0 && h.next_seq > 100 {
                    break;
                }
                h.acked.extend(published.iter().copied());
                h.in_flight.clear();
                h.step(Event::Acked(Ack::from_seqs(published)))?;
                if h.next_seq <= 100 {
                    h.apply(Op::Load(8, 1))?;
                }
                h.now += RETRY;
                h.step(Event::Tick)?;
            }
            prop_assert_eq!(h.o.unacked(), 0);
            if let Some(last) = h.loaded.last() {
                prop_assert_eq!(h.released, last + 1);
            }
        }
    }
}
