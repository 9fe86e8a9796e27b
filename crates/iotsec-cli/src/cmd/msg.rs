//! `iotsec msg`: HMAC-SHA256 signed JSON telemetry, byte-compatible with the Python reference
//! (v1), and v2 with per-device keys, timestamps and replay protection.
//!
//! Single-message mode reads the whole of stdin; `--jsonl` reads one message per line (blank
//! lines skipped) and writes one result per line. Exit codes: 0 every message accepted, 1 a
//! message was rejected (the reason on stderr), 2 usage or runtime error.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use iotsec_msg::key::{DeviceId, KeyMaterial, Kid, derive_device_key};
use iotsec_msg::keyfile::{self, Overwrite};
use iotsec_msg::v2::{DeviceState, Envelope, Keyring, Policy, V2Verifier};
use iotsec_msg::{Error as MsgError, Limits, MsgKey, Signer, Verifier};

use crate::Outcome;

/// Arguments of `iotsec msg`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new random 32-byte key (mode 0600, written atomically).
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Sign a JSON object read from stdin; the signed message goes to stdout.
    Sign(SignArgs),
    /// Verify a signed message read from stdin; the payload without `sig` goes to stdout.
    Verify(VerifyArgs),
    /// Derive a device's v2 key from the master key (HKDF-SHA256); hex on stdout or a key file.
    DeriveKey {
        #[command(flatten)]
        master: MasterArgs,
        /// Device id (1-128 characters from [A-Za-z0-9._-]).
        #[arg(long)]
        device: String,
        /// Key version.
        #[arg(long, default_value_t = 1)]
        key_version: u32,
        /// Write the raw key to this file (0600) instead of printing it as hex.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file.
        #[arg(long, requires = "out")]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
struct KeyArgs {
    /// File whose bytes are the key, exactly (the reference key is 32 ASCII bytes).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The key as hex (alternative to --key-file).
    #[arg(long, conflicts_with = "key_file")]
    key_hex: Option<String>,
}

#[derive(Debug, clap::Args)]
struct MasterArgs {
    /// File whose bytes are the v2 master key.
    #[arg(long)]
    master_file: Option<PathBuf>,
    /// The v2 master key as hex (alternative to --master-file).
    #[arg(long, conflicts_with = "master_file")]
    master_hex: Option<String>,
}

#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Largest accepted message in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_bytes: usize,
    /// Deepest accepted nesting of arrays and objects.
    #[arg(long, default_value_t = 64)]
    max_depth: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_bytes,
            max_depth: self.max_depth,
        }
    }
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// One JSON object per line.
    #[arg(long)]
    jsonl: bool,
    /// Sign as v2 (adds v, kid, ts, seq); the key must be the device key (see derive-key).
    #[arg(long, requires_all = ["device", "seq"])]
    v2: bool,
    /// v2: the device id (the kid's device).
    #[arg(long, requires = "v2")]
    device: Option<String>,
    /// v2: the key version in the kid.
    #[arg(long, default_value_t = 1)]
    key_version: u32,
    /// v2: the sequence number (with --jsonl, of the first line; then +1 per line).
    #[arg(long, requires = "v2")]
    seq: Option<u64>,
    /// v2: the timestamp in ms since the Unix epoch (default: now).
    #[arg(long, requires = "v2")]
    ts: Option<i64>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// v1: the shared key. With --v2 --legacy: the fleet v1 key accepted from this device.
    #[command(flatten)]
    key: KeyArgs,
    /// One message per line; one result per line (`null` for a rejected message) and a
    /// summary by reason on stderr.
    #[arg(long)]
    jsonl: bool,
    /// Verify v2: per-device keys from the master key, sender binding, clock skew, replay
    /// window (kept across the lines of one run).
    #[arg(long, requires_all = ["device"])]
    v2: bool,
    #[command(flatten)]
    master: MasterArgs,
    /// v2: the sender identity the transport authenticated (MQTT username / topic segment).
    #[arg(long, requires = "v2")]
    device: Option<String>,
    /// v2: the device is legacy: accept v1 (with --key-file/--key-hex) until it sends v2.
    #[arg(long, requires = "v2")]
    legacy: bool,
    /// v2: the current time in ms since the Unix epoch (default: the system clock).
    #[arg(long, requires = "v2")]
    now: Option<i64>,
    /// v2: largest accepted |ts - now| in ms.
    #[arg(long, default_value_t = 300_000)]
    max_skew_ms: u64,
    /// v2: lowest accepted key version (raise it to retire leaked keys).
    #[arg(long, default_value_t = 0)]
    min_key_version: u32,
    /// v2: highest accepted key version.
    #[arg(long, default_value_t = u32::MAX)]
    max_key_version: u32,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Runs `iotsec msg`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Sign(a) => sign(&a),
        Command::Verify(a) => verify(&a),
        Command::DeriveKey {
            master,
            device,
            key_version,
            out,
            force,
        } => derive_key(&master, &device, key_version, out.as_deref(), force),
    }
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

fn keygen(out: &Path, force: bool) -> anyhow::Result<Outcome> {
    let key = keyfile::random_key()?;
    keyfile::write(out, &key, overwrite(force))
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote a new 32-byte key to {} (mode 0600)", out.display());
    Ok(Outcome::Ok)
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        bail!("hex key has an odd number of digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| anyhow!("hex key has a non-hex character"))
        })
        .collect()
}

fn material(
    file: Option<&Path>,
    hex: Option<&str>,
    what: &str,
) -> anyhow::Result<Option<KeyMaterial>> {
    match (file, hex) {
        (Some(path), _) => {
            Ok(Some(keyfile::read(path).with_context(|| {
                format!("cannot read {what} {}", path.display())
            })?))
        }
        (None, Some(h)) => Ok(Some(
            KeyMaterial::new(unhex(h)?).context(format!("bad {what}"))?,
        )),
        (None, None) => Ok(None),
    }
}

fn key_of(k: &KeyArgs) -> anyhow::Result<Option<MsgKey>> {
    material(k.key_file.as_deref(), k.key_hex.as_deref(), "key")?
        .map(|m| MsgKey::new(m.expose()).context("bad key"))
        .transpose()
}

fn required_key(k: &KeyArgs) -> anyhow::Result<MsgKey> {
    key_of(k)?.ok_or_else(|| anyhow!("give the key with --key-file FILE or --key-hex HEX"))
}

fn master_of(m: &MasterArgs) -> anyhow::Result<KeyMaterial> {
    material(
        m.master_file.as_deref(),
        m.master_hex.as_deref(),
        "master key",
    )?
    .ok_or_else(|| anyhow!("give the master key with --master-file FILE or --master-hex HEX"))
}

fn now_ms() -> anyhow::Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?;
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    Ok(input)
}

/// Read and write buffer size: large enough to make system calls rare, small enough to stay
/// in the core's L2 cache while the lines in it are verified.
const IO_CHUNK: usize = 128 * 1024;

/// The lines of stdin: `f` gets each non-blank line without its `\n`, borrowed straight from
/// the read buffer (no copy per line; a line longer than the buffer grows it).
fn each_line(mut f: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; IO_CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        while let Some(nl) = find_newline(&buf[start..end]) {
            let line = &buf[start..start + nl];
            start += nl + 1;
            if !line.is_empty() {
                f(line)?;
            }
        }
        // Keep the partial last line, then read more after it.
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = loop {
            match stdin.read(&mut buf[end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r.context("cannot read stdin")?,
            }
        };
        if n == 0 {
            if end > 0 {
                f(&buf[..end])?;
            }
            return Ok(());
        }
        end += n;
    }
}

/// The index of the first `\n` in `s`, sixteen bytes per step (SWAR): a zero byte of
/// `x ^ 0x0a..` is a newline; borrows only propagate upwards from a real match, so the lowest
/// flagged byte is one.
fn find_newline(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let newlines = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b'\n'));
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

/// Batches output: one write to stdout per `IO_CHUNK` bytes.
struct Out {
    buf: Vec<u8>,
    stdout: io::StdoutLock<'static>,
}

impl Out {
    fn new() -> Self {
        Out {
            buf: Vec::with_capacity(IO_CHUNK + (64 << 10)),
            stdout: io::stdout().lock(),
        }
    }

    fn maybe_flush(&mut self) -> anyhow::Result<()> {
        if self.buf.len() >= IO_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.stdout
            .write_all(&self.buf)
            .context("cannot write stdout")?;
        self.stdout.flush().context("cannot write stdout")?;
        self.buf.clear();
        Ok(())
    }
}

fn sign(a: &SignArgs) -> anyhow::Result<Outcome> {
    let key = required_key(&a.key)?;
    let mut signer = Signer::with_limits(key, a.limits.limits());
    let v2 = if a.v2 {
        let device = a.device.as_deref().unwrap_or_default();
        let device = DeviceId::new(device).with_context(|| format!("--device {device:?}"))?;
        Some(Envelope {
            kid: Kid::new(device, a.key_version),
            ts: 0,
            seq: a.seq.unwrap_or(0),
        })
    } else {
        None
    };
    let mut env = v2;
    let mut out = Out::new();
    let mut sign_one = |payload: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        match env.as_mut() {
            None => signer.sign(payload, out)?,
            Some(env) => {
                env.ts = match a.ts {
                    Some(ts) => ts,
                    None => now_ms()?,
                };
                signer.sign_v2(payload, env, out)?;
                env.seq = env
                    .seq
                    .checked_add(1)
                    .ok_or_else(|| anyhow!("sequence number overflow"))?;
            }
        }
        out.push(b'\n');
        Ok(())
    };
    if a.jsonl {
        let mut lineno = 0u64;
        each_line(|line| {
            lineno += 1;
            sign_one(line, &mut out.buf).with_context(|| format!("line {lineno}"))?;
            out.maybe_flush()
        })?;
    } else {
        sign_one(&read_stdin()?, &mut out.buf)?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// Either verifier, behind one call.
enum Check {
    V1(Verifier),
    V2 {
        verifier: V2Verifier,
        keys: Keyring,
        state: DeviceState,
        sender: String,
        now: Option<i64>,
    },
}

impl Check {
    fn verify(&mut self, msg: &[u8], out: &mut Vec<u8>) -> anyhow::Result<Result<(), MsgError>> {
        Ok(match self {
            Check::V1(v) => v.verify(msg, out),
            Check::V2 {
                verifier,
                keys,
                state,
                sender,
                now,
            } => {
                let now = match now {
                    Some(n) => *n,
                    None => now_ms()?,
                };
                verifier
                    .verify(msg, sender, now, keys, state, out)
                    .map(|_| ())
            }
        })
    }
}

fn verify(a: &VerifyArgs) -> anyhow::Result<Outcome> {
    let limits = a.limits.limits();
    let mut check = if a.v2 {
        let master = master_of(&a.master)?;
        let sender = a.device.clone().unwrap_or_default();
        DeviceId::new(&sender).with_context(|| format!("--device {sender:?}"))?;
        let mut keys = Keyring::new(master, a.min_key_version..=a.max_key_version);
        let state = if a.legacy {
            let legacy = key_of(&a.key)?
                .ok_or_else(|| anyhow!("--legacy needs the v1 key (--key-file or --key-hex)"))?;
            keys = keys.with_legacy_key(legacy);
            DeviceState::legacy()
        } else {
            DeviceState::v2_only()
        };
        Check::V2 {
            verifier: V2Verifier::new(Policy {
                max_skew_ms: a.max_skew_ms,
                limits,
            }),
            keys,
            state,
            sender,
            now: a.now,
        }
    } else {
        Check::V1(Verifier::with_limits(required_key(&a.key)?, limits))
    };

    let mut out = Out::new();
    if !a.jsonl {
        return match check.verify(&read_stdin()?, &mut out.buf)? {
            Ok(()) => {
                out.buf.push(b'\n');
                out.flush()?;
                Ok(Outcome::Ok)
            }
            Err(e) => {
                eprintln!("rejected: {e} ({})", e.code());
                Ok(Outcome::Failed)
            }
        };
    }
    let mut accepted = 0u64;
    let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    each_line(|line| {
        match check.verify(line, &mut out.buf)? {
            Ok(()) => {
                out.buf.push(b'\n');
                accepted += 1;
            }
            Err(e) => {
                out.buf.extend_from_slice(b"null\n");
                *rejected.entry(e.code()).or_default() += 1;
            }
        }
        out.maybe_flush()
    })?;
    out.flush()?;
    let total_rejected: u64 = rejected.values().sum();
    let reasons: Vec<String> = rejected.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    if reasons.is_empty() {
        eprintln!("accepted {accepted}, rejected 0");
    } else {
        eprintln!(
            "accepted {accepted}, rejected {total_rejected} ({})",
            reasons.join(", ")
        );
    }
    Ok(if total_rejected == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

fn derive_key(
    master: &MasterArgs,
    device: &str,
    key_version: u32,
    out: Option<&Path>,
    force: bool,
) -> anyhow::Result<Outcome> {
    let master = master_of(master)?;
    let device = DeviceId::new(device).with_context(|| format!("--device {device:?}"))?;
    let key = derive_device_key(&master, &Kid::new(device, key_version));
    match out {
        Some(path) => {
            keyfile::write(path, &key, overwrite(force))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote the device key to {} (mode 0600)", path.display());
        }
        None => {
            let hex: String = key.expose().iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_found_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                let mut s = vec![b'x'; len];
                if at < len {
                    s[at] = b'\n';
                    // a later newline must not hide the first one
                    s.push(b'\n');
                }
                let want = if at < len { Some(at) } else { None };
                assert_eq!(find_newline(&s), want, "len {len} at {at}");
            }
        }
        assert_eq!(find_newline(b"\x8a\x0b\n"), Some(2));
        assert_eq!(
            find_newline(b"\x8a\x8a\x0b\x0b\x8a\x09\x8a\x8a\n\n"),
            Some(8)
        );
    }

    #[test]
    fn hex_keys() {
        assert_eq!(unhex("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(unhex("0").is_err());
        assert!(unhex("zz").is_err());
    }
}
