//! Connect-sweep a port range of an address and print the open ports and timing (no probes).
//! `cargo run --release -p iotsec-scan --example sweep -- 127.0.0.1 1-65535`
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let ip = args
        .next()
        .unwrap_or_else(|| "127.0.0.1".into())
        .parse()
        .unwrap();
    let ports =
        iotsec_scan::ports::PortSet::parse(&args.next().unwrap_or_else(|| "all".into())).unwrap();
    let budget = iotsec_scan::limits::raise_nofile();
    let window: usize = args
        .next()
        .map(|w| w.parse().unwrap())
        .unwrap_or(budget.available.min(4096));
    let t = Instant::now();
    let out = iotsec_scan::sweep::sweep(
        ip,
        ports.as_slice(),
        {
            let mut c = iotsec_scan::sweep::SweepConfig::new(window, Duration::from_millis(1500));
            if let Some(t) = args.next() {
                c.threads = t.parse().unwrap();
            }
            c
        },
        |_| {},
        |_| {},
    )
    .unwrap();
    println!(
        "{:.3}s open={:?} closed={} filtered={} stats={:?}",
        t.elapsed().as_secs_f64(),
        out.open,
        out.closed,
        out.filtered.len(),
        out.stats
    );
}
