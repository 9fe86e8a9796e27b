#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]
use iotsec_msg::{MsgKey, Verifier};
use std::io::Read;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let key = MsgKey::new(&std::fs::read(&args[1]).unwrap()).unwrap();
    let mut data = Vec::new();
    std::fs::File::open(&args[2])
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
    let (mut best_v, mut best_c, mut best_h) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..200 {
        let t = Instant::now();
        for l in &lines {
            out.clear();
            let _ = v.verify(l, &mut out);
        }
        best_v = best_v.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for l in &lines {
            let _ = v.check(l);
        }
        best_c = best_c.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for l in &lines {
            std::hint::black_box(key.tag(l));
        }
        best_h = best_h.min(t.elapsed().as_secs_f64());
    }
    let mut codec = iotsec_msg::Codec::default();
    let (mut best_p, mut best_w) = (f64::MAX, f64::MAX);
    let mut buf = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        for l in &lines {
            let _ = std::hint::black_box(codec.parse(l).is_ok());
        }
        best_p = best_p.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for l in &lines {
            buf.clear();
            if let Ok(mut d) = codec.parse(l) {
                d.write_canonical(&mut buf);
            }
        }
        best_w = best_w.min(t.elapsed().as_secs_f64());
    }
    let n = lines.len() as f64;
    println!(
        "min ns/msg: parse {:.0}, parse+canonical {:.0}",
        best_p / n * 1e9,
        best_w / n * 1e9
    );
    println!(
        "min ns/msg: verify {:.0}, check {:.0}, raw hmac {:.0}",
        best_v / n * 1e9,
        best_c / n * 1e9,
        best_h / n * 1e9
    );
}
