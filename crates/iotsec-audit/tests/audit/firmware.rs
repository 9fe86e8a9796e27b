//! Firmware trees: an ESP-IDF project, a Linux root file system, an iotsec-ota bundle.

use iotsec_audit::{Inputs, Location, OwaspIot, Status};
use iotsec_testkit::TestDir;

use crate::common;

fn write(root: &TestDir, rel: &str, content: &[u8]) -> std::path::PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn esp_idf_project_and_rootfs() {
    let root = TestDir::new();
    let sdk = write(
        &root,
        "esp/sdkconfig",
        b"CONFIG_IDF_TARGET=\"esp32\"\n# CONFIG_SECURE_BOOT is not set\n# CONFIG_SECURE_FLASH_ENC_ENABLED is not set\nCONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y\n",
    );
    let main = write(
        &root,
        "esp/main/app_main.c",
        b"#include \"esp_https_ota.h\"\n#define WIFI_PASS \"correct-horse\"\nvoid ota(void) {\n  esp_http_client_config_t c = { .url = \"http://fw.example.com/app.bin\" };\n  esp_https_ota(&c);\n}\n",
    );
    let init = write(
        &root,
        "rootfs/etc/init.d/S50telnet",
        b"#!/bin/sh\n/usr/sbin/telnetd -l /bin/sh\n",
    );
    let shadow = write(
        &root,
        "rootfs/etc/shadow",
        b"root:$1$salt$abcdefghijklmnopqrstuv:19000:0:99999:7:::\nguest::19000::::::\n",
    );
    let mut image = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    image.extend_from_slice(&[0u8; 64]);
    image.extend_from_slice(b"-----BEGIN RSA PRIVATE KEY-----\x00");
    image.extend_from_slice(&[0xffu8; 32]);
    image.extend_from_slice(b"OpenSSL 1.0.2k  26 Jan 2017\x00");
    let bin = write(&root, "rootfs/usr/lib/libapp.so", &image);
    std::os::unix::fs::symlink(root.path(), root.join("rootfs/loop")).unwrap();

    let report = common::audit(Inputs {
        firmware: vec![root.join("esp"), root.join("rootfs")],
        ..Inputs::default()
    });
    let has = |id: &str, loc: &Location| {
        report
            .findings
            .iter()
            .any(|f| f.id == id && &f.location == loc)
    };
    assert!(has("HW-NO-SECURE-BOOT", &Location::line(&sdk, 2)));
    assert!(has("HW-NO-FLASH-ENCRYPTION", &Location::line(&sdk, 3)));
    assert!(report.findings.iter().any(|f| f.id == "HW-UART-DOWNLOAD"));
    assert!(has("FW-UPDATE-HTTP", &Location::line(&sdk, 4)));
    assert!(has("FW-UPDATE-HTTP", &Location::line(&main, 4)));
    assert!(has("FW-WIFI-PSK", &Location::line(&main, 2)));
    assert!(has("OTA-UNSIGNED", &Location::line(&main, 1)));
    assert!(has("OTA-NO-ANTI-ROLLBACK", &Location::file(&sdk)));
    assert!(has("FW-TELNETD", &Location::line(&init, 2)));
    assert!(has("FW-WEAK-PASSWORD-HASH", &Location::line(&shadow, 1)));
    assert!(has("FW-EMPTY-PASSWORD", &Location::line(&shadow, 2)));
    let key = report
        .findings
        .iter()
        .find(|f| f.id == "FW-PRIVATE-KEY")
        .unwrap();
    assert_eq!(
        key.location,
        Location::File {
            path: bin.clone(),
            line: None,
            offset: Some(72)
        }
    );
    assert!(report.findings.iter().any(|f| f.id == "FW-OLD-OPENSSL"));
    for c in [
        OwaspIot::I1,
        OwaspIot::I2,
        OwaspIot::I4,
        OwaspIot::I5,
        OwaspIot::I10,
    ] {
        let v = report.categories.iter().find(|x| x.category == c).unwrap();
        assert_eq!(v.status, Status::Fail, "{c}");
    }
    assert!(
        report.notes.iter().any(|n| n.contains("symbolic links")),
        "{:?}",
        report.notes
    );
}

#[test]
fn signed_bundle_passes_the_update_category() {
    let root = TestDir::new();
    let key = iotsec_ota::SecretKey::from_seed(iotsec_ota::Algorithm::Ed25519, &[7; 32]).unwrap();
    let image = b"gateway firmware 2.1.0".to_vec();
    let manifest = iotsec_ota::Manifest {
        version: iotsec_ota::Version::parse("2.1.0").unwrap(),
        security_counter: 3,
        hardware_id: iotsec_ota::HardwareId::new("acme-gw").unwrap(),
        image_size: image.len() as u64,
        image_sha256: iotsec_ota::sha256(&image),
        created_s: 1_700_000_000,
        expires_s: None,
    };
    let signed = iotsec_ota::SignedManifest::sign(&manifest, &key).unwrap();
    let bundle = write(&root, "release/app.fw", &signed.bundle(&image).unwrap());
    write(&root, "release/broken.fw", b"IOTSSIG1\x00\x05junk");
    let report = common::audit(Inputs {
        firmware: vec![root.join("release")],
        ..Inputs::default()
    });
    let i4 = report
        .categories
        .iter()
        .find(|x| x.category == OwaspIot::I4)
        .unwrap();
    assert!(
        i4.assessed_by
            .iter()
            .any(|s| s.contains("security counter 3")),
        "{i4:?}"
    );
    assert!(report.findings.iter().any(|f| f.id == "OTA-BUNDLE-INVALID"));
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.id == "OTA-NONE" || f.id == "OTA-UNSIGNED")
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.location == Location::file(&bundle))
    );
}
