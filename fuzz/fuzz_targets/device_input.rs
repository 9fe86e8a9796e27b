//! Fuzzes what reaches the device agent from outside its own code: bytes of a queue segment
//! after a crash or corruption (the scan that `Queue::open` does), a line from the reading
//! source (stdin or a command), and an ack message from the broker. Never a panic; a record
//! that decodes re-encodes to the same bytes; a line accepted as a reading always signs and
//! verifies as v2; an ack only ever removes loaded readings.
#![no_main]

use iotsec_broker::topic::Ack;
use iotsec_device::frame::{self, Decoded};
use iotsec_device::outbox::{Event, Outbox, OutboxConfig};
use iotsec_device::queue::Entry;
use iotsec_device::reading::Sealer;
use iotsec_msg::key::KeyMaterial;
use iotsec_msg::v2::{DeviceState, Keyring, Policy, V2Verifier};
use iotsec_msg::{DeviceId, Kid, MsgKey};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    // 1. A segment file: scan records until the first torn one, as Queue::open does.
    let mut offset = 0;
    while let Decoded::Record { seq, reading, frame } = frame::decode(&data[offset..]) {
        assert!(offset + frame <= data.len());
        let mut again = Vec::new();
        frame::encode(seq, reading, &mut again);
        assert_eq!(&again[..], &data[offset..offset + frame]);
        offset += frame;
    }

    // 2. A source line.
    let master = KeyMaterial::new(vec![7u8; 32]).unwrap();
    let kid = Kid::new(DeviceId::new("fuzz").unwrap(), 1);
    let key = iotsec_msg::key::derive_device_key(&master, &kid);
    let mut sealer = Sealer::new(kid, MsgKey::new(key.expose()).unwrap());
    if let Ok(reading) = sealer.prepare(data, NOW) {
        let mut signed = Vec::new();
        sealer
            .seal(&reading, 7, NOW, &mut signed)
            .expect("a prepared reading always signs");
        let mut keys = Keyring::new(master, 1..=1);
        let mut state = DeviceState::v2_only();
        let mut payload = Vec::new();
        V2Verifier::new(Policy::default())
            .verify(&signed, "fuzz", NOW, &mut keys, &mut state, &mut payload)
            .expect("a signed reading verifies");
    }

    // 3. An ack from the broker.
    if let Some(ack) = Ack::decode(data) {
        let mut outbox = Outbox::new(OutboxConfig::default());
        let mut actions = Vec::new();
        let now = std::time::Duration::ZERO;
        let entries = (10..20)
            .map(|seq| Entry { seq, reading: b"{}".to_vec() })
            .collect();
        outbox.handle(now, Event::Loaded(entries), &mut actions);
        outbox.handle(now, Event::Connected, &mut actions);
        let removed = (10..20).filter(|s| ack.contains(*s)).count();
        outbox.handle(now, Event::Acked(ack), &mut actions);
        assert_eq!(outbox.unacked(), 10 - removed);
    }
});
