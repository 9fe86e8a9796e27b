//! `iotsec fw`: firmware signing keys, signing, verification, key-set updates, A/B slot
//! updates in a state directory (install, boot, confirm, roll back, supervise), and
//! distribution through the server (publish, releases, rollout; see `distribution`).
//!
//! Exit codes: 0 ok; 1 rejected (bad signature, downgrade, ...), nothing to confirm or boot,
//! or the supervised program failed; 2 usage or runtime error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use iotsec_ota::dir::DirStore;
use iotsec_ota::file::{
    ImageSource, SignRequest, install_file, read_small, sign_image_file, verify_file,
};
use iotsec_ota::record::{Outcome as UpdateOutcome, SlotState, TrialPhase};
use iotsec_ota::supervisor::{Event, Supervisor, exit_code, now_ms};
use iotsec_ota::{
    Algorithm, Config, Engine, Error as OtaError, Fault, HardwareId, KeySet, PublicKey, Roles,
    SignedManifest, TrustedKey, UpdateState, Version, keyfile,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Outcome;

mod distribution;

/// Arguments of `iotsec fw`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a signing key pair: NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub (SPKI PEM).
    Keygen {
        /// Output name (NAME.key and NAME.pub are written).
        #[arg(long)]
        out: PathBuf,
        /// Algorithm: ed25519 (default) or p256 (ECDSA P-256).
        #[arg(long, default_value = "ed25519", value_parser = parse_algorithm)]
        alg: Algorithm,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a firmware image into a bundle (manifest + signature + image) or, with
    /// --detached, a manifest file alone.
    #[command(disable_version_flag = true)]
    Sign {
        /// Private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Release version (SemVer, e.g. 1.4.0 or 1.4.0-rc.1).
        #[arg(long)]
        version: String,
        /// Security counter for anti-rollback: devices refuse anything below theirs.
        #[arg(long)]
        security_counter: u32,
        /// Hardware id the image is for.
        #[arg(long)]
        hw: String,
        /// Expiry: RFC 3339 time or Unix seconds; devices refuse the manifest from then on.
        #[arg(long)]
        expires: Option<String>,
        /// Creation time (default: SOURCE_DATE_EPOCH if set, else now).
        #[arg(long)]
        created: Option<String>,
        /// Write only the signed manifest; the image is shipped separately.
        #[arg(long)]
        detached: bool,
        /// The image.
        image: PathBuf,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Verify a bundle (or detached manifest + --image): trusted signature, size, SHA-256.
    Verify {
        /// Trusted public key (repeatable).
        #[arg(long = "trust")]
        trust: Vec<PathBuf>,
        /// Also require this hardware id.
        #[arg(long)]
        hw: Option<String>,
        /// Image file of a detached manifest.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Bundle or detached manifest.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a bundle, detached manifest or key-set update contains (without verifying).
    Inspect {
        /// The file.
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install an update into the inactive slot: verify while writing, re-read, mark trial.
    Install {
        /// Bundle or detached manifest.
        file: PathBuf,
        /// Image file of a detached manifest.
        #[arg(long)]
        image: Option<PathBuf>,
        /// State directory (created if missing).
        #[arg(long)]
        slots: PathBuf,
        /// Factory trust: public key(s), stored in the state directory on first use.
        #[arg(long = "trust")]
        trust: Vec<PathBuf>,
        /// This device's hardware id (stored on first use; default: adopted from the first
        /// install).
        #[arg(long)]
        hw: Option<String>,
    },
    /// Show slots, trial, versions, security counter and the last update result.
    Status {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Confirm the running trial (run by the new firmware once it works).
    Confirm {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
    },
    /// What a bootloader does: pick the slot to run, start a pending trial, roll back a
    /// trial that was booted and never confirmed. Prints the image to run.
    Boot {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Trusted public key(s) if none are stored yet.
        #[arg(long = "trust")]
        trust: Vec<PathBuf>,
        /// Confirm deadline for a trial started now.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        confirm_timeout: Duration,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Abandon the current trial (pending or running) and go back to the previous slot.
    Rollback {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
    },
    /// Print the last update result for the server; --ack marks it reported.
    Report {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Mark the result as reported.
        #[arg(long)]
        ack: bool,
    },
    /// Run the active slot's program; hold a trial to its confirm deadline and roll back a
    /// trial that exits, hangs or does not confirm. The program confirms with `iotsec fw
    /// confirm --slots "$IOTSEC_OTA_SLOTS"` or by creating the file "$IOTSEC_OTA_CONFIRM".
    Supervise {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Trusted public key(s) if none are stored yet.
        #[arg(long = "trust")]
        trust: Vec<PathBuf>,
        /// How long a trial has to confirm.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        confirm_timeout: Duration,
        /// Time between SIGTERM and SIGKILL.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        kill_grace: Duration,
        /// Arguments for the program.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Trusted key sets: sign, inspect, apply updates (add / revoke keys).
    #[command(subcommand)]
    Keyset(KeysetCommand),
    /// Publish a bundle as a release on the server: verified against [ota] trust and
    /// hardware, stored in the releases directory, indexed.
    Publish {
        /// The bundle (iotsec fw sign without --detached).
        file: PathBuf,
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the published releases.
    Releases {
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Staged rollouts of published releases (start, status).
    #[command(subcommand)]
    Rollout(distribution::RolloutCommand),
}

#[derive(Debug, Subcommand)]
enum KeysetCommand {
    /// Sign a key-set update: the complete new set of trusted keys, with a higher version.
    Sign {
        /// Signing key; must have the keyset role in the devices' current set.
        #[arg(long)]
        key: PathBuf,
        /// Start from this set: a public key (factory trust) or a key-set update (repeatable).
        #[arg(long = "from")]
        from: Vec<PathBuf>,
        /// Add a key for firmware and key sets (repeatable).
        #[arg(long = "add")]
        add: Vec<PathBuf>,
        /// Add a key that may sign firmware only (repeatable).
        #[arg(long = "add-firmware-key")]
        add_firmware: Vec<PathBuf>,
        /// Revoke a key (repeatable).
        #[arg(long = "revoke")]
        revoke: Vec<PathBuf>,
        /// Version of the new set (default: the base version + 1).
        #[arg(long)]
        set_version: Option<u32>,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Verify a key-set update against the device's keys and store the new set.
    Apply {
        /// The key-set update.
        file: PathBuf,
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Factory trust if the device has no stored key set yet.
        #[arg(long = "trust")]
        trust: Vec<PathBuf>,
    },
    /// Show the device's trusted keys.
    Show {
        /// State directory.
        #[arg(long)]
        slots: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `iotsec fw`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Keygen { out, alg, force } => keygen(&out, alg, force),
        Command::Sign {
            key,
            version,
            security_counter,
            hw,
            expires,
            created,
            detached,
            image,
            out,
        } => {
            let request = SignRequest {
                version: Version::parse(&version).context("--version")?,
                security_counter,
                hardware_id: HardwareId::new(&hw).context("--hw")?,
                created_s: match created {
                    Some(t) => parse_time(&t).context("--created")?,
                    None => default_created()?,
                },
                expires_s: expires
                    .map(|t| parse_time(&t))
                    .transpose()
                    .context("--expires")?,
            };
            sign(&key, &request, &image, &out, detached)
        }
        Command::Verify {
            trust,
            hw,
            image,
            file,
            json,
        } => verify(&trust, hw.as_deref(), image.as_deref(), &file, json),
        Command::Inspect { file, json } => inspect(&file, json),
        Command::Install {
            file,
            image,
            slots,
            trust,
            hw,
        } => install(&file, image.as_deref(), &slots, &trust, hw.as_deref()),
        Command::Status { slots, json } => status(&slots, json),
        Command::Confirm { slots } => confirm(&slots),
        Command::Boot {
            slots,
            trust,
            confirm_timeout,
            json,
        } => boot(&slots, &trust, confirm_timeout, json),
        Command::Rollback { slots } => rollback(&slots),
        Command::Report { slots, ack } => report(&slots, ack),
        Command::Supervise {
            slots,
            trust,
            confirm_timeout,
            kill_grace,
            args,
        } => supervise(&slots, &trust, confirm_timeout, kill_grace, args),
        Command::Keyset(cmd) => keyset(cmd),
        Command::Publish { file, config, json } => distribution::publish(&file, &config, json),
        Command::Releases { config, json } => distribution::releases(&config, json),
        Command::Rollout(cmd) => distribution::rollout(cmd),
    }
}

// --- helpers -------------------------------------------------------------------------------

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    match text {
        "ed25519" => Ok(Algorithm::Ed25519),
        "p256" | "ecdsa-p256" => Ok(Algorithm::EcdsaP256),
        _ => Err("expected ed25519 or p256".into()),
    }
}

/// `30s`, `1500ms`, `2m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration `{text}`"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration `{text}` (use ms, s or m)")),
    }
}

/// RFC 3339 or Unix seconds.
fn parse_time(text: &str) -> anyhow::Result<u64> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .with_context(|| format!("`{text}` is neither RFC 3339 nor Unix seconds"))?;
    u64::try_from(t.unix_timestamp()).context("time before 1970")
}

fn default_created() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch.trim().parse().context("SOURCE_DATE_EPOCH"),
        Err(_) => Ok(now_ms() / 1000),
    }
}

fn format_time(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits library errors: the peer's or the request's fault is a verdict (exit 1), the
/// environment's is a runtime error (exit 2).
fn verdict<T>(result: Result<T, OtaError>) -> anyhow::Result<Result<T, OtaError>> {
    match result {
        Err(e) if e.fault() == Fault::Environment => Err(e.into()),
        other => Ok(other),
    }
}

fn rejected(err: &OtaError) -> Outcome {
    println!("rejected: {err}");
    Outcome::Failed
}

/// A detached manifest given without its image reads as "0 bytes of image": say so.
fn hint_detached(err: OtaError, image: Option<&Path>) -> OtaError {
    match err {
        OtaError::ImageTruncated { actual: 0, .. } if image.is_none() => OtaError::Invalid {
            what: "input",
            reason: "this is a detached manifest: pass its image with --image IMG",
        },
        other => other,
    }
}

fn read_trust(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|p| keyfile::read_public_key(p).map_err(anyhow::Error::from))
        .collect()
}

/// The device's trusted keys: the stored key set, else the factory keys given with
/// `--trust` (stored for next time when `persist`).
fn device_keys(store: &DirStore, trust: &[PathBuf], persist: bool) -> anyhow::Result<KeySet> {
    let given = read_trust(trust)?;
    if let Some(stored) = store.keyset()? {
        for key in &given {
            if stored.get(key.id()).is_none() {
                eprintln!(
                    "note: --trust key {} is not in the device's key set (version {}); the stored \
                     set is used (change it with `iotsec fw keyset apply`)",
                    key.id(),
                    stored.version()
                );
            }
        }
        return Ok(stored);
    }
    if given.is_empty() {
        bail!("the state directory has no trusted keys yet: pass --trust PUB");
    }
    let keys = KeySet::factory(given)?;
    if persist {
        store.store_keyset(&keys)?;
    }
    Ok(keys)
}

/// The stored hardware id, or a placeholder on a fresh device (nothing installed, so no
/// check uses it).
fn stored_hw(store: &DirStore) -> anyhow::Result<HardwareId> {
    Ok(match store.hardware_id()? {
        Some(hw) => hw,
        None => HardwareId::new("unset")?,
    })
}

fn open_engine(slots: &Path) -> anyhow::Result<Engine<DirStore>> {
    open_engine_with(slots, None)
}

fn open_engine_with(slots: &Path, timeout: Option<Duration>) -> anyhow::Result<Engine<DirStore>> {
    let store = DirStore::open(slots)?;
    let mut config = Config::new(stored_hw(&store)?);
    if let Some(timeout) = timeout {
        config.confirm_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    }
    Ok(Engine::open(store, config)?)
}

fn manifest_json(signed: &SignedManifest) -> Value {
    let m = signed.manifest();
    json!({
        "version": m.version.to_string(),
        "security_counter": m.security_counter,
        "hardware_id": m.hardware_id.as_str(),
        "image_size": m.image_size,
        "image_sha256": hex(&m.image_sha256),
        "created": format_time(m.created_s),
        "expires": m.expires_s.map(format_time),
        "signature": {
            "algorithm": signed.signature().algorithm.name(),
            "key_id": signed.signature().key_id.to_string(),
        },
    })
}

fn print_manifest(signed: &SignedManifest) {
    let m = signed.manifest();
    println!("version:          {}", m.version);
    println!("hardware id:      {}", m.hardware_id);
    println!("security counter: {}", m.security_counter);
    println!("image size:       {} bytes", m.image_size);
    println!("image sha256:     {}", hex(&m.image_sha256));
    println!("created:          {}", format_time(m.created_s));
    if let Some(expires) = m.expires_s {
        println!("expires:          {}", format_time(expires));
    }
    println!(
        "signature:        {} by key {}",
        signed.signature().algorithm,
        signed.signature().key_id
    );
}

// --- keys and signing ----------------------------------------------------------------------

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut os = name.as_os_str().to_owned();
    os.push(suffix);
    PathBuf::from(os)
}

fn keygen(out: &Path, alg: Algorithm, force: bool) -> anyhow::Result<Outcome> {
    let (secret, public) = (with_suffix(out, ".key"), with_suffix(out, ".pub"));
    if !force && (secret.exists() || public.exists()) {
        bail!(
            "{} or {} exists (use --force to replace)",
            secret.display(),
            public.display()
        );
    }
    let key = keyfile::generate(alg)?;
    keyfile::write_secret_key(&secret, &key)?;
    keyfile::write_public_key(&public, &key.public_key())?;
    println!(
        "wrote {} (mode 0600) and {}",
        secret.display(),
        public.display()
    );
    println!("key id: {} ({alg})", key.public_key().id());
    Ok(Outcome::Ok)
}

fn sign(
    key: &Path,
    request: &SignRequest,
    image: &Path,
    out: &Path,
    detached: bool,
) -> anyhow::Result<Outcome> {
    let key = keyfile::read_secret_key(key)?;
    let signed = sign_image_file(image, request, &key, out, detached)?;
    println!(
        "wrote {} ({}, {} bytes of image)",
        out.display(),
        if detached {
            "detached manifest"
        } else {
            "bundle"
        },
        signed.manifest().image_size
    );
    print_manifest(&signed);
    Ok(Outcome::Ok)
}

fn verify(
    trust: &[PathBuf],
    hw: Option<&str>,
    image: Option<&Path>,
    file: &Path,
    json: bool,
) -> anyhow::Result<Outcome> {
    if trust.is_empty() {
        bail!("pass at least one --trust PUB");
    }
    let keys = KeySet::factory(read_trust(trust)?)?;
    let hw = hw.map(HardwareId::new).transpose().context("--hw")?;
    let source = image.map_or(ImageSource::Bundled, ImageSource::Detached);
    let result = verify_file(file, source, &keys)
        .map_err(|e| hint_detached(e, image))
        .and_then(|signed| match &hw {
            Some(hw) if *hw != signed.manifest().hardware_id => Err(OtaError::WrongHardware {
                device: hw.to_string(),
                offered: signed.manifest().hardware_id.to_string(),
            }),
            _ => Ok(signed),
        });
    match verdict(result)? {
        Ok(signed) => {
            if json {
                println!(
                    "{}",
                    json!({"verified": true, "manifest": manifest_json(&signed)})
                );
            } else {
                println!("verified: {}", file.display());
                print_manifest(&signed);
            }
            Ok(Outcome::Ok)
        }
        Err(err) => {
            if json {
                println!("{}", json!({"verified": false, "reason": err.to_string()}));
                Ok(Outcome::Failed)
            } else {
                Ok(rejected(&err))
            }
        }
    }
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<Outcome> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let mut reader = std::fs::File::open(file)?;
    match iotsec_ota::file::read_signed_manifest(&mut reader, file) {
        Ok(signed) => {
            let header = signed.as_bytes().len() as u64;
            let kind = match len - header {
                0 => "detached manifest".to_string(),
                n if n == signed.manifest().image_size => "bundle".to_string(),
                n => format!("bundle with a wrong image length ({n} bytes follow)"),
            };
            if json {
                let mut value = manifest_json(&signed);
                value["kind"] = json!(kind);
                value["verified"] = json!(false);
                println!("{value}");
            } else {
                println!(
                    "{}: {kind} (signature NOT verified; use `iotsec fw verify`)",
                    file.display()
                );
                print_manifest(&signed);
            }
            Ok(Outcome::Ok)
        }
        Err(manifest_err) => {
            // Maybe a key-set update.
            let bytes = read_small(file, 64 * 1024).map_err(|_| manifest_err)?;
            let (set, sig) = KeySet::parse_update(&bytes).with_context(|| {
                format!(
                    "{} is neither a firmware file nor a key-set update",
                    file.display()
                )
            })?;
            if json {
                println!(
                    "{}",
                    json!({"kind": "key-set update", "verified": false, "signed_by": sig.key_id.to_string(),
                           "keyset": keyset_json(&set)})
                );
            } else {
                println!(
                    "{}: key-set update (signature NOT verified)",
                    file.display()
                );
                println!("signed by key {} ({})", sig.key_id, sig.algorithm);
                print_keyset(&set);
            }
            Ok(Outcome::Ok)
        }
    }
}

// --- the device's state directory ----------------------------------------------------------

fn install(
    file: &Path,
    image: Option<&Path>,
    slots: &Path,
    trust: &[PathBuf],
    hw: Option<&str>,
) -> anyhow::Result<Outcome> {
    let store = DirStore::open(slots)?;
    let keys = device_keys(&store, trust, true)?;
    let flag = hw.map(HardwareId::new).transpose().context("--hw")?;
    let hardware_id = match (store.hardware_id()?, flag) {
        (Some(stored), Some(flag)) if stored != flag => {
            bail!(
                "{} belongs to hardware `{stored}`, not `{flag}`",
                slots.display()
            )
        }
        (Some(stored), _) => stored,
        (None, Some(flag)) => {
            store.store_hardware_id(&flag)?;
            flag
        }
        (None, None) => {
            // Factory-fresh device without a configured id: adopt the id of the first
            // validly signed release (trust on first install), and keep it.
            let mut reader = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let signed = match verdict(
                iotsec_ota::file::read_signed_manifest(&mut reader, file)
                    .and_then(|s| s.verify(&keys).map(|m| m.hardware_id.clone())),
            )? {
                Ok(hw) => hw,
                Err(err) => return Ok(rejected(&err)),
            };
            println!("hardware id adopted from the first install: {signed} (pass --hw to pin it)");
            store.store_hardware_id(&signed)?;
            signed
        }
    };
    let mut engine = Engine::open(store, Config::new(hardware_id))?;
    let source = image.map_or(ImageSource::Bundled, ImageSource::Detached);
    let result = install_file(&mut engine, file, source, &keys, now_ms());
    match verdict(result.map_err(|e| hint_detached(e, image)))? {
        Ok(manifest) => {
            let slot = match engine.state() {
                UpdateState::TrialPending { slot } => slot.to_string(),
                _ => "?".into(),
            };
            println!(
                "installed {} into slot {slot}: verified, trial pending (boots next; must confirm \
                 within the deadline)",
                manifest.version
            );
            Ok(Outcome::Ok)
        }
        Err(err) => Ok(rejected(&err)),
    }
}

fn slot_json(engine: &Engine<DirStore>) -> Vec<Value> {
    engine
        .slots()
        .into_iter()
        .map(|s| {
            let state = match s.state {
                SlotState::Empty => "empty",
                SlotState::Writing(_) => "writing",
                SlotState::Verified(_) => "verified",
            };
            json!({
                "slot": s.slot.to_string(),
                "state": state,
                "version": s.manifest.as_ref().map(|m| m.version.to_string()),
                "security_counter": s.manifest.as_ref().map(|m| m.security_counter),
                "image_size": s.manifest.as_ref().map(|m| m.image_size),
            })
        })
        .collect()
}

fn status_json(engine: &mut Engine<DirStore>) -> anyhow::Result<Value> {
    let record = engine.record().clone();
    let now = now_ms();
    let trial = record.trial.map(|t| match t.phase {
        TrialPhase::Pending => json!({"slot": t.slot.to_string(), "phase": "pending"}),
        TrialPhase::Booted { deadline_ms } => json!({
            "slot": t.slot.to_string(),
            "phase": "booted",
            "deadline_ms": deadline_ms,
            "remaining_ms": deadline_ms.saturating_sub(now),
        }),
    });
    let state = match engine.state() {
        UpdateState::Idle => "idle",
        UpdateState::Downloading { .. } => "downloading",
        UpdateState::TrialPending { .. } => "trial_pending",
        UpdateState::BootedInTrial { .. } => "booted_in_trial",
    };
    let store = engine.store_mut();
    let keyset_version = store.keyset()?.map(|k| k.version());
    let hardware_id = store.hardware_id()?.map(|h| h.to_string());
    Ok(json!({
        "state": state,
        "active": record.active.map(|s| s.to_string()),
        "active_version": engine.installed().map(|m| m.version.to_string()),
        "trial": trial,
        "slots": slot_json(engine),
        "security_counter": record.security_counter,
        "hardware_id": hardware_id,
        "keyset_version": keyset_version,
        "last_result": last_json(&record),
        "report_pending": record.report_pending,
    }))
}

fn last_json(record: &iotsec_ota::BootRecord) -> Value {
    match &record.last {
        None => Value::Null,
        Some(last) => {
            let (outcome, reason) = match last.outcome {
                UpdateOutcome::Confirmed => ("confirmed", None),
                UpdateOutcome::RolledBack(r) => ("rolled_back", Some(r)),
            };
            json!({
                "version": last.version.as_ref().map(ToString::to_string),
                "outcome": outcome,
                "reason": reason.map(|r| r.name()),
                "detail": reason.map(|r| r.to_string()),
            })
        }
    }
}

fn status(slots: &Path, json: bool) -> anyhow::Result<Outcome> {
    let mut engine = open_engine(slots)?;
    let value = status_json(&mut engine)?;
    if json {
        println!("{value}");
        return Ok(Outcome::Ok);
    }
    let record = engine.record().clone();
    let text = |v: &Value| v.as_str().map_or("-".to_string(), str::to_string);
    println!("state directory:  {}", slots.display());
    println!("hardware id:      {}", text(&value["hardware_id"]));
    println!(
        "key set:          {}",
        value["keyset_version"]
            .as_u64()
            .map_or("none stored".into(), |v| format!("version {v}"))
    );
    match (record.active, engine.installed()) {
        (Some(slot), Some(m)) => println!("active:           slot {slot}, {}", m.version),
        (Some(slot), None) => println!("active:           slot {slot} (manifest unreadable)"),
        (None, _) => println!("active:           none (nothing installed yet)"),
    }
    println!("state:            {}", text(&value["state"]));
    for s in engine.slots() {
        let what = match (s.state, &s.manifest) {
            (SlotState::Empty, _) => "empty".to_string(),
            (SlotState::Writing(_), Some(m)) => format!("being written: {}", m.version),
            (SlotState::Writing(_), None) => "being written".to_string(),
            (SlotState::Verified(_), Some(m)) => format!(
                "{} (security counter {}, {} bytes)",
                m.version, m.security_counter, m.image_size
            ),
            (SlotState::Verified(_), None) => "verified, manifest unreadable".to_string(),
        };
        println!("slot {}:           {what}", s.slot);
    }
    match record.trial {
        None => println!("trial:            none"),
        Some(t) => match t.phase {
            TrialPhase::Pending => {
                println!("trial:            slot {} pending (boots next)", t.slot)
            }
            TrialPhase::Booted { deadline_ms } => {
                let left = deadline_ms.saturating_sub(now_ms());
                println!(
                    "trial:            slot {} running, {:.1} s left to confirm",
                    t.slot,
                    left as f64 / 1000.0
                );
            }
        },
    }
    println!("security counter: {}", record.security_counter);
    match &record.last {
        None => println!("last result:      none"),
        Some(last) => {
            let version = last
                .version
                .as_ref()
                .map_or("?".into(), ToString::to_string);
            let outcome = match last.outcome {
                UpdateOutcome::Confirmed => "confirmed".to_string(),
                UpdateOutcome::RolledBack(r) => format!("rolled back: {r}"),
            };
            let pending = if record.report_pending {
                " (not yet reported)"
            } else {
                ""
            };
            println!("last result:      {version} {outcome}{pending}");
        }
    }
    Ok(Outcome::Ok)
}

fn confirm(slots: &Path) -> anyhow::Result<Outcome> {
    let mut engine = open_engine(slots)?;
    match verdict(engine.confirm(now_ms()))? {
        Ok(version) => {
            println!(
                "confirmed {version}; security counter now {}",
                engine.record().security_counter
            );
            Ok(Outcome::Ok)
        }
        Err(err) => Ok(rejected(&err)),
    }
}

fn boot(slots: &Path, trust: &[PathBuf], timeout: Duration, json: bool) -> anyhow::Result<Outcome> {
    let mut engine = open_engine_with(slots, Some(timeout))?;
    let keys = device_keys(engine.store_mut(), trust, true)?;
    let Some(boot) = engine.boot(&keys, now_ms())? else {
        if json {
            println!("{}", json!({"slot": null}));
        } else {
            println!("nothing to boot: no firmware installed");
        }
        return Ok(Outcome::Failed);
    };
    let image = engine.store_mut().image_path(boot.slot);
    let version = engine
        .slot_manifest(boot.slot)
        .map(|s| s.manifest().version.to_string());
    if json {
        println!(
            "{}",
            json!({
                "slot": boot.slot.to_string(),
                "image": image,
                "version": version,
                "trial": boot.trial,
                "rolled_back": boot.rolled_back.map(|r| r.name()),
            })
        );
        return Ok(Outcome::Ok);
    }
    if let Some(reason) = boot.rolled_back {
        println!("rolled back the trial: {reason}");
    }
    let trial = if boot.trial {
        format!(", trial: confirm within {} s", timeout.as_secs_f64())
    } else {
        String::new()
    };
    println!(
        "boot slot {} {} ({}{trial})",
        boot.slot,
        image.display(),
        version.unwrap_or_default()
    );
    Ok(Outcome::Ok)
}

fn rollback(slots: &Path) -> anyhow::Result<Outcome> {
    let mut engine = open_engine(slots)?;
    match verdict(engine.roll_back(iotsec_ota::RollbackReason::Requested))? {
        Ok(()) => {
            println!("trial abandoned; the previous slot boots");
            Ok(Outcome::Ok)
        }
        Err(err) => Ok(rejected(&err)),
    }
}

fn report(slots: &Path, ack: bool) -> anyhow::Result<Outcome> {
    let mut engine = open_engine(slots)?;
    let record = engine.record().clone();
    println!(
        "{}",
        json!({"last_result": last_json(&record), "report_pending": record.report_pending})
    );
    if ack {
        engine.ack_report()?;
    }
    Ok(Outcome::Ok)
}

fn supervise(
    slots: &Path,
    trust: &[PathBuf],
    timeout: Duration,
    kill_grace: Duration,
    args: Vec<OsString>,
) -> anyhow::Result<Outcome> {
    let (keys, hw) = {
        let store = DirStore::open(slots)?;
        (device_keys(&store, trust, true)?, stored_hw(&store)?)
    };
    let mut config = Config::new(hw);
    config.confirm_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut supervisor = Supervisor::new(slots.to_path_buf(), config, keys);
    supervisor.args = args;
    supervisor.kill_grace = kill_grace;
    let status = supervisor.run(|event| match event {
        Event::Started {
            slot,
            version,
            trial,
            pid,
        } => {
            let version = version.as_ref().map_or("?".into(), ToString::to_string);
            let trial = if *trial {
                format!(" on trial (confirm within {} s)", timeout.as_secs_f64())
            } else {
                String::new()
            };
            println!("supervise: started slot {slot} ({version}) as pid {pid}{trial}");
        }
        Event::Confirmed { version } => println!("supervise: {version} confirmed"),
        Event::RolledBack { slot, reason } => {
            println!("supervise: slot {slot} rolled back: {reason}; starting the previous slot");
        }
        Event::Exited { slot, status } => println!("supervise: slot {slot} exited ({status})"),
        _ => {}
    });
    let status = match status {
        Err(OtaError::NoBootableSlot) => {
            println!("supervise: nothing to run: no firmware installed");
            return Ok(Outcome::Failed);
        }
        other => other?,
    };
    Ok(if exit_code(status) == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

// --- key sets ------------------------------------------------------------------------------

fn keyset_json(set: &KeySet) -> Value {
    json!({
        "version": set.version(),
        "keys": set.keys().iter().map(|k| json!({
            "key_id": k.key.id().to_string(),
            "algorithm": k.key.algorithm().name(),
            "roles": k.roles.to_string(),
        })).collect::<Vec<_>>(),
    })
}

fn print_keyset(set: &KeySet) {
    println!("key set version {}:", set.version());
    for k in set.keys() {
        println!(
            "  {} {:8} {}",
            k.key.id(),
            k.key.algorithm().name(),
            k.roles
        );
    }
}

/// A base set from `--from` files: public keys (factory trust, version 0) or key-set updates.
fn base_keys(from: &[PathBuf]) -> anyhow::Result<(u32, Vec<TrustedKey>)> {
    let mut version = 0;
    let mut keys: Vec<TrustedKey> = Vec::new();
    for path in from {
        let found = match keyfile::read_public_key(path) {
            Ok(key) => vec![TrustedKey {
                key,
                roles: Roles::ALL,
            }],
            Err(_) => {
                let bytes = read_small(path, 64 * 1024)?;
                let (set, _) = KeySet::parse_update(&bytes).with_context(|| {
                    format!(
                        "{} is neither a public key nor a key-set update",
                        path.display()
                    )
                })?;
                version = version.max(set.version());
                set.keys().to_vec()
            }
        };
        for k in found {
            if !keys.iter().any(|have| have.key.id() == k.key.id()) {
                keys.push(k);
            }
        }
    }
    Ok((version, keys))
}

fn keyset(cmd: KeysetCommand) -> anyhow::Result<Outcome> {
    match cmd {
        KeysetCommand::Sign {
            key,
            from,
            add,
            add_firmware,
            revoke,
            set_version,
            out,
        } => {
            let signer = keyfile::read_secret_key(&key)?;
            let (base_version, mut keys) = base_keys(&from)?;
            for (paths, roles) in [(&add, Roles::ALL), (&add_firmware, Roles::FIRMWARE)] {
                for key in read_trust(paths)? {
                    keys.retain(|k| k.key.id() != key.id());
                    keys.push(TrustedKey { key, roles });
                }
            }
            for key in read_trust(&revoke)? {
                let before = keys.len();
                keys.retain(|k| k.key.id() != key.id());
                if keys.len() == before {
                    bail!("--revoke {}: key is not in the set", key.id());
                }
            }
            let version = match set_version {
                Some(v) => v,
                None if from.is_empty() => bail!("pass --from (the current set) or --set-version"),
                None => base_version + 1,
            };
            let set = KeySet::new(version, keys)?;
            let bytes = set.sign_update(&signer)?;
            iotsec_ota::file::write_atomic(&out, &bytes, 0o644)?;
            println!(
                "wrote {} signed by key {}",
                out.display(),
                signer.public_key().id()
            );
            print_keyset(&set);
            Ok(Outcome::Ok)
        }
        KeysetCommand::Apply { file, slots, trust } => {
            let store = DirStore::open(&slots)?;
            let current = device_keys(&store, &trust, false)?;
            let bytes = read_small(&file, 64 * 1024)?;
            match verdict(current.apply_update(&bytes))? {
                Ok(next) => {
                    store.store_keyset(&next)?;
                    println!(
                        "key set updated from version {} to {}",
                        current.version(),
                        next.version()
                    );
                    print_keyset(&next);
                    Ok(Outcome::Ok)
                }
                Err(err) => Ok(rejected(&err)),
            }
        }
        KeysetCommand::Show { slots, json } => {
            let store = DirStore::open(&slots)?;
            match store.keyset()? {
                Some(set) if json => println!("{}", keyset_json(&set)),
                Some(set) => print_keyset(&set),
                None if json => println!("null"),
                None => println!("no key set stored yet (the first --trust keys are stored)"),
            }
            Ok(Outcome::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser};

    /// The same shape as the real binary (`propagate_version` adds `--version` everywhere).
    #[derive(Debug, Parser)]
    #[command(name = "iotsec", version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Fw(Args),
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "iotsec",
            "fw",
            "sign",
            "--key",
            "k",
            "--version",
            "1.2.3",
            "--security-counter",
            "4",
            "--hw",
            "acme",
            "img",
            "-o",
            "out",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Top::Fw(Args {
                command: Command::Sign { .. }
            })
        ));
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_time("2030-01-01T00:00:00Z").unwrap(), 1_893_456_000);
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        assert!(parse_time("tomorrow").is_err());
    }
}
