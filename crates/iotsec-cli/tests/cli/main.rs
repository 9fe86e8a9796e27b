//! End-to-end tests of the `iotsec` binary: real files, real openssl, real Mosquitto.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod acme;
mod broker;
mod browser;
mod fw;
mod https;
mod msg;
mod ota;
mod pki;
mod scale;
mod scale_bench;
mod scan;
mod stack;
mod transport;
mod up;
mod web;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use iotsec_testkit::{Output, run};

/// Runs `iotsec ARGS` in `dir`.
pub fn iotsec(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotsec"));
    cmd.current_dir(dir).args(args);
    run(&mut cmd, Duration::from_secs(120))
}

/// Runs `openssl ARGS` in `dir` and returns stdout; panics with stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let out = run(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.code, 0, "openssl {args:?}: {}", out.stderr);
    out.stdout
}

/// Every file under `dir`, relative, sorted (to prove nothing was left behind).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
