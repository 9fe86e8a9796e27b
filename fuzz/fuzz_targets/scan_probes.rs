//! Fuzz every parser the scanner runs on bytes from the network (and on the files it reads):
//! MQTT CONNACK, TLS records / ServerHello / alerts, HTTP heads, banners, Telnet IAC, Modbus/TCP,
//! Redis/memcached, CoAP, X.509 certificates, `/proc/net/tcp`, port specs and policies.
//! None may panic, whatever the input.
#![no_main]

use iotsec_scan::probe::mqtt::{self, MqttVersion};
use iotsec_scan::probe::{self, Probe, banner, coap, http, kv, modbus, telnet, tls};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for eof in [false, true] {
        for p in [
            Probe::Passive,
            Probe::Mqtt(MqttVersion::V311),
            Probe::Mqtt(MqttVersion::V5),
            Probe::Http,
            Probe::Kv,
            Probe::Modbus,
        ] {
            let _ = probe::classify(p, data, eof);
        }
        let _ = http::parse_response(data, eof);
        let _ = banner::parse_banner(data, eof);
        let _ = kv::parse_reply(data, eof);
    }
    let _ = mqtt::parse_connack(data, MqttVersion::V311);
    let _ = mqtt::parse_connack(data, MqttVersion::V5);
    let _ = mqtt::decode_varint(data);
    let _ = tls::parse_server_flight(data);
    let _ = tls::looks_like_record(data);
    let _ = telnet::parse_greeting(data);
    let _ = modbus::parse_reply(data, probe::MODBUS_TRANSACTION);
    if let [a, b, c, d, ..] = data {
        let _ = coap::parse_reply(&data[4..], u16::from_be_bytes([*a, *b]), [*c, *d]);
    }
    let _ = coap::parse_reply(data, 0, [0, 0]);
    let _ = probe::printable(data, 40);
    let _ = iotsec_scan::certificate::inspect(data, 1_700_000_000);
    let text = String::from_utf8_lossy(data);
    let _ = iotsec_scan::local::parse_proc_net_tcp(&text, false);
    let _ = iotsec_scan::local::parse_proc_net_tcp(&text, true);
    let _ = iotsec_scan::ports::PortSet::parse(&text);
    let _ = iotsec_scan::policy::Policy::parse(&text);
});
