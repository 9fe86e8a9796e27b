//! Fuzzes what the device's OTA worker reads from the broker before it verifies anything: a
//! message on `devices/<id>/commands/ota` (update notice or report ack), the signed manifest a
//! notice carries, and the download URL checked against the configured server. Never a panic;
//! a decoded manifest stays within the envelope limit; a URL accepted on the server is a path.
#![no_main]

use iotsec_device::ota::{Command, ServerUrl, parse_command};
use iotsec_ota::bundle::MAX_SIGNED_MANIFEST_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Command::Update(notice)) = parse_command(data) {
        assert!(notice.manifest.len() <= MAX_SIGNED_MANIFEST_LEN);
        let _ = iotsec_ota::SignedManifest::parse(&notice.manifest);
        let server = ServerUrl::parse("https://localhost:8443").expect("valid");
        if let Some(path) = server.path_of(&notice.url) {
            assert!(path.starts_with('/') && !path.contains(['?', '#']));
            assert_eq!(format!("{}{path}", server.origin), notice.url);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(url) = ServerUrl::parse(text)
    {
        assert!(url.port > 0 && !url.host.is_empty());
        assert!(url.origin.starts_with("https://"));
        let _ = url.authority();
    }
});
