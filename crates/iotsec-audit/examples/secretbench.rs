//! Secret-scanner benchmark: generates a mixed tree (sources, binaries with embedded strings,
//! logs/JSON; 200 MiB by default) once, then times `secrets::scan` on it.
//!
//! `cargo run --release -p iotsec-audit --example secretbench -- DIR [MIB] [THREADS]`
//! (`bench/secrets.sh` runs it next to a `grep` baseline).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use iotsec_audit::secrets::{ScanOptions, scan};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "int",
    "void",
    "return",
    "status",
    "update",
    "config",
    "buffer",
    "length",
    "device",
    "sensor",
    "value",
    "state",
    "client",
    "connect",
    "publish",
    "topic",
    "payload",
    "timeout",
    "retry",
    "if",
    "else",
    "for",
    "while",
    "self",
    "data",
    "json",
    "token_count",
    "password_prompt",
    "key",
    "http",
    "rotate",
    "quota",
    "iota",
    "verify",
    "secretary",
];

const SECRETS: &[&str] = &[
    "SECRET_KEY = b\"0123456789abcdef0123456789abcdef\"",
    "client.tls_insecure_set(True)",
    "const char* mqtt_password = \"hunter2hunter2\";",
    "WiFi.begin(\"home\", \"correcthorsebattery\");",
    "url = \"http://updates.example.com/firmware/app.bin\"",
    "-----BEGIN EC PRIVATE KEY-----",
];

fn source(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut line = 0u64;
    while out.len() < size {
        line += 1;
        if rng.below(4000) == 0 {
            out.extend_from_slice(SECRETS[rng.below(SECRETS.len() as u64) as usize].as_bytes());
        } else {
            let n = 3 + rng.below(10);
            out.extend_from_slice(b"    ");
            for i in 0..n {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            }
            write!(out, " = {};", line).unwrap();
        }
        out.push(b'\n');
    }
    out
}

fn binary(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 256);
    while out.len() < size {
        if rng.below(64) == 0 {
            out.push(0);
            let n = 40 + rng.below(80) as usize;
            let s = source(rng, n);
            out.extend_from_slice(&s[..s.len() - 1]);
            out.push(0);
        } else {
            for _ in 0..64 {
                out.push(rng.next() as u8);
            }
        }
    }
    out
}

fn generate(dir: &Path, mib: usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let total = mib * 1024 * 1024;
    let (src_bytes, bin_bytes) = (total / 5, total * 3 / 5);
    let log_bytes = total - src_bytes - bin_bytes;
    let mut n = 0;
    let mut written = 0;
    while written < src_bytes {
        let p = dir.join(format!("src/module{}/file{n}.c", n % 40));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 4096 + rng.below(32 * 1024) as usize;
        let data = source(&mut rng, len);
        written += data.len();
        fs::write(p, data).unwrap();
        n += 1;
    }
    written = 0;
    n = 0;
    while written < bin_bytes {
        let p = dir.join(format!("rootfs/usr/lib/lib{n}.so"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 1024 * 1024 + rng.below(4 * 1024 * 1024) as usize;
        let data = binary(&mut rng, len);
        written += data.len();
        fs::write(p, data).unwrap();
        n += 1;
    }
    written = 0;
    n = 0;
    while written < log_bytes {
        let p = dir.join(format!("var/log/app{n}.json"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = source(&mut rng, 2 * 1024 * 1024);
        written += data.len();
        fs::write(p, data).unwrap();
        n += 1;
    }
    fs::write(dir.join(".complete"), format!("{mib}\n")).unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: secretbench DIR [MIB] [THREADS]"));
    let mib: usize = args.next().map_or(200, |a| a.parse().unwrap());
    let threads: usize = args.next().map_or(2, |a| a.parse().unwrap());
    if fs::read_to_string(dir.join(".complete")).ok().as_deref() != Some(&format!("{mib}\n")) {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        generate(&dir, mib);
        println!("generated {mib} MiB in {:.1} s", t.elapsed().as_secs_f64());
    }
    let opts = ScanOptions {
        threads,
        ..ScanOptions::default()
    };
    // One warm-up run (page cache), then the measured ones.
    let _ = scan(std::slice::from_ref(&dir), &opts).unwrap();
    let mut best = f64::MAX;
    let mut result = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = scan(std::slice::from_ref(&dir), &opts).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        result = Some(r);
    }
    let r = result.unwrap();
    let mib_read = r.bytes as f64 / (1024.0 * 1024.0);
    println!(
        "secrets::scan threads={threads}: {} files, {mib_read:.0} MiB ({} text), {} findings, best of 3: {best:.2} s = {:.0} MiB/s",
        r.files,
        r.text_files,
        r.hits.len(),
        mib_read / best
    );
}
