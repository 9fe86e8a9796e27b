//! MSG benchmark helper (see BENCHMARKS.md and bench/verify.sh).
//!
//! `msgbench hmac KEYFILE < FILE`: whole-process ceiling: HMAC-SHA256 (precomputed key state)
//! of every line of stdin, read the same way as `iotsec msg verify --jsonl`.
//! `msgbench inproc KEYFILE FILE`: in-process rates (messages/s, no I/O) for raw HMAC, v1
//! verify, v1 sign (of the payloads without sig), over FILE's lines.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    missing_docs
)]

use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use iotsec_msg::{MsgKey, Signer, Verifier};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let key_bytes = std::fs::read(&args[2]).unwrap();
    let key = MsgKey::new(&key_bytes).unwrap();
    match args[1].as_str() {
        "hmac" => {
            let mut r = BufReader::with_capacity(1 << 20, std::io::stdin().lock());
            let mut line = Vec::new();
            let (mut n, mut acc) = (0u64, 0u8);
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).unwrap() == 0 {
                    break;
                }
                acc ^= key.tag(line.strip_suffix(b"\n").unwrap_or(&line))[0];
                n += 1;
            }
            eprintln!("hmac {n} lines ({acc})");
        }
        "inproc" => {
            let mut data = Vec::new();
            std::fs::File::open(&args[3])
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            let lines: Vec<&[u8]> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let rate = |name: &str, f: &mut dyn FnMut(&[u8]) -> bool| {
                let t = Instant::now();
                let ok = lines.iter().filter(|l| f(l)).count();
                let s = t.elapsed().as_secs_f64();
                println!(
                    "{name}: {:.0}/s ({ok} ok of {})",
                    lines.len() as f64 / s,
                    lines.len()
                );
            };
            let mut v = Verifier::new(key.clone());
            let mut out = Vec::new();
            for _ in 0..3 {
                rate("raw hmac", &mut |l| key.tag(l)[0] != 1);
                rate("v1 verify", &mut |l| {
                    out.clear();
                    v.verify(l, &mut out).is_ok()
                });
                rate("v1 check (no payload out)", &mut |l| v.check(l).is_ok());
            }
            // Payloads without sig: what the verifier printed.
            let mut payloads = Vec::with_capacity(lines.len());
            for l in &lines {
                let mut p = Vec::new();
                if v.verify(l, &mut p).is_ok() {
                    payloads.push(p);
                }
            }
            let mut s = Signer::new(key.clone());
            let mut i = 0;
            let t = Instant::now();
            for p in &payloads {
                out.clear();
                i += usize::from(s.sign(p, &mut out).is_ok());
            }
            println!(
                "v1 sign: {:.0}/s ({i} signed)",
                payloads.len() as f64 / t.elapsed().as_secs_f64()
            );
        }
        other => panic!("unknown mode {other}"),
    }
}
