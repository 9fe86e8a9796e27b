//! Bounded memory: peak RSS (VmHWM) of verifying a 512 MiB bundle stays within 8 MiB of
//! verifying a 1 MiB bundle. Each verification runs in a child process (this test binary,
//! re-run with `IOTSEC_OTA_MEMORY_CHILD` set), so the peaks do not mix. The big image is a
//! sparse file of zeros (fine for memory, it is read like any other file) and is deleted.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use iotsec_ota::file::{ImageSource, verify_file};
use iotsec_ota::{Manifest, SignedManifest};

use crate::common::*;

const MIB: u64 = 1 << 20;

/// SHA-256 of 512 MiB of zero bytes (`head -c 536870912 /dev/zero | sha256sum`).
const ZEROS_512M: &str = "9acca8e8c22201155389f65abbf6bc9723edc7384ead80503839f49dcc56d767";
/// SHA-256 of 1 MiB of zero bytes.
const ZEROS_1M: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";

fn sparse_bundle(dir: &Path, size: u64, digest: &str) -> std::path::PathBuf {
    let mut sha = [0u8; 32];
    for (i, byte) in sha.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap();
    }
    let m = Manifest {
        image_size: size,
        image_sha256: sha,
        ..manifest("1.0.0", 1, b"x")
    };
    let signed = SignedManifest::sign(&m, &vendor()).unwrap();
    let path = dir.join(format!("zeros-{size}.fw"));
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(signed.as_bytes()).unwrap();
    file.set_len(signed.as_bytes().len() as u64 + size).unwrap();
    path
}

/// Peak RSS in KiB of a child process verifying `bundle`.
fn peak_kib(bundle: &Path) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "memory::memory_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IOTSEC_OTA_MEMORY_CHILD", bundle)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("VmHWM-KiB=").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no VmHWM in child output: {stdout}"))
        .trim()
        .parse()
        .unwrap()
}

/// Not a test on its own: the child half of `verifying_512_mib_needs_no_more_memory`.
#[test]
fn memory_child() {
    let Some(path) = std::env::var_os("IOTSEC_OTA_MEMORY_CHILD") else {
        return;
    };
    verify_file(Path::new(&path), ImageSource::Bundled, &keys()).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string();
    println!("\nVmHWM-KiB={hwm}");
}

#[test]
fn verifying_512_mib_needs_no_more_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let small = sparse_bundle(tmp.path(), MIB, ZEROS_1M);
    let big = sparse_bundle(tmp.path(), 512 * MIB, ZEROS_512M);
    let small_kib = peak_kib(&small);
    let big_kib = peak_kib(&big);
    println!("peak RSS verifying 1 MiB: {small_kib} KiB, 512 MiB: {big_kib} KiB");
    assert!(
        big_kib <= small_kib + 8 * 1024,
        "512 MiB took {big_kib} KiB, 1 MiB took {small_kib} KiB"
    );
    drop(tmp); // deletes the big file
}
