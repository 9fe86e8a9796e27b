//! MSG benchmark helper (see BENCHMARKS.md and `bench/verify.sh`).
//!
//! `msgbench hmac KEYFILE < FILE`: the whole-process ceiling: HMAC-SHA256 (precomputed key
//! state) of every line of stdin, read the same way as `iotsec msg verify --jsonl`.
//! `msgbench inproc KEYFILE FILE`: in-process cost per message (no I/O; the minimum over many
//! rounds, which is what a quiet core would do) of raw HMAC over the line, v1 verify with the
//! payload written out, and v1 sign of the payloads.
//! `msgbench profile KEYFILE FILE MODE N`: MODE (`verify`, `sign`, `hmac`, `none`) over the first
//! N lines once, nothing else: a fixed amount of work for `valgrind --tool=callgrind` (`none`
//! measures the harness alone).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    missing_docs
)]

use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use iotsec_msg::{MsgKey, Signer, Verifier};

/// Minimum time per item over `rounds` runs of `f` over `items`.
fn min_ns<T>(items: &[T], rounds: usize, mut f: impl FnMut(&T)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        items.iter().for_each(&mut f);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best / items.len() as f64 * 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let key = MsgKey::new(&std::fs::read(&args[2]).unwrap()).unwrap();
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
                .take(5000)
                .collect();
            let mut v = Verifier::new(key.clone());
            let mut out = Vec::new();
            let mut payloads = Vec::new();
            for l in &lines {
                let mut p = Vec::new();
                v.verify(l, &mut p).unwrap();
                payloads.push(p);
            }
            let hmac = min_ns(&lines, 200, |l| {
                std::hint::black_box(key.tag(l));
            });
            let verify = min_ns(&lines, 200, |l| {
                out.clear();
                v.verify(l, &mut out).unwrap();
            });
            let mut s = Signer::new(key.clone());
            let sign = min_ns(&payloads, 200, |p| {
                out.clear();
                s.sign(p, &mut out).unwrap();
            });
            println!(
                "in-process ns/message (min of 200 rounds over {} messages): raw HMAC {hmac:.0}, \
                 v1 verify {verify:.0} ({:.0}/s), v1 sign {sign:.0} ({:.0}/s)",
                lines.len(),
                1e9 / verify,
                1e9 / sign
            );
        }
        "profile" => {
            let data = std::fs::read(&args[3]).unwrap();
            let n: usize = args[5].parse().unwrap();
            let lines: Vec<&[u8]> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .take(n)
                .collect();
            let mut out = Vec::new();
            let mut ok = 0usize;
            match args[4].as_str() {
                "verify" => {
                    let mut v = Verifier::new(key);
                    for l in &lines {
                        out.clear();
                        ok += usize::from(v.verify(l, &mut out).is_ok());
                    }
                }
                "sign" => {
                    let mut s = Signer::new(key);
                    for l in &lines {
                        out.clear();
                        ok += usize::from(s.sign(l, &mut out).is_ok());
                    }
                }
                "hmac" => {
                    for l in &lines {
                        ok += usize::from(std::hint::black_box(key.tag(l))[0] < 255);
                    }
                }
                "none" => {}
                other => panic!("unknown profile mode {other}"),
            }
            eprintln!("{ok} of {} ok", lines.len());
        }
        other => panic!("unknown mode {other}"),
    }
}
