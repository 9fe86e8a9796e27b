//! MSG benchmark helper (see BENCHMARKS.md and `bench/verify.sh`).
//!
//! `msgbench hmac KEYFILE < FILE`: the whole-process ceiling: HMAC-SHA256 (precomputed key
//! state) of every line of stdin, read the same way as `iotsec msg verify --jsonl` (the same
//! reading loop, copied here).
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

use std::io::Read;
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

/// The lines of stdin, read the way `iotsec msg verify --jsonl` reads them (128 KiB reads,
/// lines borrowed from the buffer, SWAR newline search).
fn each_line(mut f: impl FnMut(&[u8])) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 128 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        while let Some(nl) = find_newline(&buf[start..end]) {
            let line = &buf[start..start + nl];
            start += nl + 1;
            if !line.is_empty() {
                f(line);
            }
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stdin.read(&mut buf[end..]).unwrap();
        if n == 0 {
            if end > 0 {
                f(&buf[..end]);
            }
            return;
        }
        end += n;
    }
}

fn find_newline(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let newlines = |c: &[u8]| {
        let x = u64::from_le_bytes(c.try_into().unwrap()) ^ (ONES * u64::from(b'\n'));
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut chunks = s.chunks_exact(16);
    let mut at = 0;
    for c in &mut chunks {
        let (lo, hi) = (newlines(&c[..8]), newlines(&c[8..]));
        if lo | hi != 0 {
            let (word, base) = if lo != 0 { (lo, at) } else { (hi, at + 8) };
            return Some(base + (word.trailing_zeros() / 8) as usize);
        }
        at += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let key = MsgKey::new(&std::fs::read(&args[2]).unwrap()).unwrap();
    match args[1].as_str() {
        "hmac" => {
            let (mut n, mut acc) = (0u64, 0u8);
            each_line(|line| {
                acc ^= key.tag(line)[0];
                n += 1;
            });
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
