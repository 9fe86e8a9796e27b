//! Fuzzes iotsec-tls on what a server controls: the certificate bytes it presents (DER
//! parsing, the validity-period reader, pin matching in the `pin` and `spki` policies)
//! and, with a leading 0xFF byte, pin and policy text from configuration. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xFF, text)) => {
            if let Ok(text) = std::str::from_utf8(text) {
                iotsec_tls::fuzzing::pin_text(text);
            }
        }
        _ => iotsec_tls::fuzzing::certificate(data),
    }
});
