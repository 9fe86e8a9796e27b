//! `iotsec pki`: CA, server and device certificates, revocation, CRLs, fingerprints, inspection.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Subcommand;
use iotsec_pki::authority::{CRL_WARN_DAYS, DEFAULT_CA_DAYS, DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS};
use iotsec_pki::{
    Authority, CaOptions, DeviceId, DeviceOptions, Fingerprint, KeyAlgorithm, Overwrite, Role,
    ServerOptions, SpkiPin, Status, inspect,
};
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::Outcome;

/// Arguments of `iotsec pki`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a self-signed root CA (ca.crt, ca.key mode 0600) and an empty CRL.
    Init {
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = "iotsec root CA")]
        name: String,
        /// Key type of the CA, and the default for everything it issues
        /// (p256, p384, ed25519, rsa2048, rsa3072). ESP32's mbedTLS cannot verify ed25519.
        #[arg(long, default_value = "p256")]
        key: KeyAlgorithm,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
        /// Validity of the initial CRL in days.
        #[arg(long, default_value_t = DEFAULT_CRL_DAYS)]
        crl_days: u32,
        /// Replace an existing CA (everything it issued stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a TLS server certificate (server.crt = leaf + CA, server.key).
    Server {
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Host name or IP address clients connect to (CN and first SAN).
        #[arg(long)]
        name: String,
        /// Additional DNS name or IP address (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Key type (default: the CA's).
        #[arg(long)]
        key: Option<KeyAlgorithm>,
        /// Certify this existing private key instead of generating one (to switch to a backup
        /// key that devices already pin).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// File stem: writes STEM.crt and STEM.key.
        #[arg(long = "out", default_value = "server")]
        stem: String,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue device (mutual TLS client) certificates: devices/ID.crt + devices/ID.key.
    Device {
        /// Device id: letters, digits, '.', '_' and '-' (it becomes the MQTT username and a
        /// topic segment).
        #[arg(required_unless_present = "count", conflicts_with = "count")]
        id: Option<String>,
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Issue this many certificates at once, named PREFIX00001, PREFIX00002, ...
        #[arg(long, requires = "prefix")]
        count: Option<u32>,
        /// Id prefix for --count.
        #[arg(long)]
        prefix: Option<String>,
        /// What the certificate identifies.
        #[arg(long, value_enum, default_value = "device")]
        role: ClientRole,
        /// Key type (default: the CA's).
        #[arg(long)]
        key: Option<KeyAlgorithm>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Revoke the current certificate of this id and issue a new one.
        #[arg(long)]
        force: bool,
    },
    /// Revoke every certificate of an id and re-sign the CRL.
    Revoke {
        /// Device id or server name.
        id: String,
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Validity of the new CRL in days.
        #[arg(long, default_value_t = DEFAULT_CRL_DAYS)]
        crl_days: u32,
    },
    /// Re-sign the CRL (crl.pem), e.g. before its nextUpdate passes.
    Crl {
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_CRL_DAYS)]
        days: u32,
    },
    /// List every issued certificate with its status.
    List {
        /// PKI directory.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a certificate's SHA-256 fingerprint exactly as openssl does, or its SPKI pin.
    Fingerprint {
        /// PEM certificate (the first one is used); with --spki also a private key.
        file: PathBuf,
        /// Print the public-key pin `sha256/BASE64` instead.
        #[arg(long)]
        spki: bool,
    },
    /// Show a certificate's (or CRL's) contents and warnings.
    Inspect {
        /// PEM certificate(s) or CRL.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Generate a private key without a certificate (e.g. a backup server key to pin first).
    Keygen {
        /// Output file (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Key type.
        #[arg(long, default_value = "p256")]
        key: KeyAlgorithm,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClientRole {
    Device,
    Service,
}

/// Runs `iotsec pki`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Init {
            dir,
            name,
            key,
            days,
            crl_days,
            force,
        } => {
            let ca = Authority::init(
                &dir,
                &CaOptions {
                    name,
                    key,
                    days,
                    crl_days,
                    overwrite: overwrite(force),
                },
            )?;
            let layout = ca.layout();
            println!(
                "created CA {} ({key}) valid {days} days",
                layout.ca_cert().display()
            );
            println!("private key {} (mode 0600)", layout.ca_key().display());
            println!("empty CRL {}", layout.crl().display());
        }
        Command::Server {
            dir,
            name,
            sans,
            key,
            key_file,
            stem,
            days,
            force,
        } => {
            let mut ca = Authority::open(&dir)?;
            let issued = ca.issue_server(&ServerOptions {
                host: name,
                sans,
                key,
                key_file,
                stem,
                days,
                overwrite: overwrite(force),
            })?;
            print_issued(&issued);
        }
        Command::Device {
            id,
            dir,
            count,
            prefix,
            role,
            key,
            days,
            force,
        } => {
            let ids = match (id, count, prefix) {
                (Some(id), _, _) => vec![DeviceId::new(&id)?],
                (None, Some(count), Some(prefix)) => bulk_ids(&prefix, count)?,
                _ => bail!("give a device ID, or --count N --prefix P"),
            };
            let mut ca = Authority::open(&dir)?;
            let started = Instant::now();
            let issued = ca.issue_devices(
                &ids,
                &DeviceOptions {
                    key,
                    days,
                    role: match role {
                        ClientRole::Device => Role::Device,
                        ClientRole::Service => Role::Service,
                    },
                    overwrite: overwrite(force),
                },
            )?;
            let elapsed = started.elapsed();
            if issued.len() <= 20 {
                for i in &issued {
                    print_issued(i);
                }
            } else {
                println!(
                    "issued {} {} certificates in {} ({:.3} s, {:.1} us per certificate)",
                    issued.len(),
                    role_name(role),
                    ca.layout().devices_dir().display(),
                    elapsed.as_secs_f64(),
                    elapsed.as_secs_f64() * 1e6 / issued.len() as f64
                );
            }
        }
        Command::Revoke { id, dir, crl_days } => {
            let mut ca = Authority::open(&dir)?;
            let revoked = ca.revoke(&id, crl_days)?;
            for e in &revoked {
                println!("revoked {} {} serial {}", e.role.name(), e.id, e.serial);
            }
            println!(
                "CRL re-signed: {} (reload the broker: `iotsec broker reload --config DIR`)",
                ca.layout().crl().display()
            );
        }
        Command::Crl { dir, days } => {
            let mut ca = Authority::open(&dir)?;
            let info = ca.write_crl(days)?;
            println!(
                "CRL #{} written to {}: {} revoked, next update {}",
                info.number,
                info.path.display(),
                info.revoked,
                info.next_update
            );
        }
        Command::List { dir, json } => list(&dir, json)?,
        Command::Fingerprint { file, spki } => fingerprint(&file, spki)?,
        Command::Inspect { file, json } => inspect_file(&file, json)?,
        Command::Keygen { out, key } => {
            if out.exists() {
                bail!("{} already exists", out.display());
            }
            let pair = key.generate()?;
            iotsec_pki::file::write_atomic(
                &out,
                iotsec_pki::algorithm::private_key_pem(&pair).as_bytes(),
                iotsec_pki::file::Mode::Private,
                iotsec_pki::file::Durability::Sync,
            )?;
            use rcgen::PublicKeyData;
            let pin = SpkiPin::of_spki_der(&pair.subject_public_key_info());
            println!("wrote {} ({key}, mode 0600)", out.display());
            println!("SPKI pin: {pin}");
        }
    }
    Ok(Outcome::Ok)
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

fn role_name(role: ClientRole) -> &'static str {
    match role {
        ClientRole::Device => "device",
        ClientRole::Service => "service",
    }
}

fn bulk_ids(prefix: &str, count: u32) -> anyhow::Result<Vec<DeviceId>> {
    if count == 0 || count > 1_000_000 {
        bail!("--count must be between 1 and 1000000");
    }
    let width = count.to_string().len().max(5);
    (1..=count)
        .map(|n| DeviceId::new(&format!("{prefix}{n:0width$}")).map_err(Into::into))
        .collect()
}

fn print_issued(issued: &iotsec_pki::Issued) {
    let e = &issued.entry;
    println!(
        "issued {} {} ({}, serial {}, valid until {})",
        e.role.name(),
        e.id,
        e.key,
        e.serial,
        e.not_after.date()
    );
    println!("  certificate {}", issued.cert_path.display());
    println!("  private key {} (mode 0600)", issued.key_path.display());
}

fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let ca = Authority::open(dir)?;
    let now = OffsetDateTime::now_utc();
    let crl = std::fs::read(ca.layout().crl())
        .ok()
        .and_then(|pem| rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&pem).ok())
        .and_then(|der| inspect::crl(&der, now, CRL_WARN_DAYS).ok());
    if json {
        let certs: Vec<_> = ca
            .inventory()
            .certificates
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("status".into(), Status::of(e, now).name().into());
                }
                v
            })
            .collect();
        let out = serde_json::json!({ "certificates": certs, "crl": crl });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<24} {:<8} {:<34} {:<12} STATUS",
            "ID", "ROLE", "SERIAL", "NOT-AFTER"
        );
        for e in &ca.inventory().certificates {
            println!(
                "{:<24} {:<8} {:<34} {:<12} {}",
                e.id,
                e.role.name(),
                e.serial,
                e.not_after.date().to_string(),
                Status::of(e, now).name()
            );
        }
    }
    match crl {
        Some(report) => {
            for w in &report.warnings {
                eprintln!("WARNING {}: {}", w.code, w.message);
            }
        }
        None => eprintln!(
            "WARNING: {} is missing or unreadable; run `iotsec pki crl`",
            ca.layout().crl().display()
        ),
    }
    Ok(())
}

fn fingerprint(file: &Path, spki: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    if spki {
        if let Ok(cert) = iotsec_pki::pem::certificates_from_slice(file, &bytes) {
            let spki = iotsec_pki::pem::spki_of_cert(file, &cert[0])?;
            println!("{}", SpkiPin::of_spki_der(&spki));
            return Ok(());
        }
        if rustls_pki_types::PrivateKeyDer::from_pem_slice(&bytes).is_ok() {
            let key = iotsec_pki::pem::key_pair(file)?;
            use rcgen::PublicKeyData;
            println!("{}", SpkiPin::of_spki_der(&key.subject_public_key_info()));
            return Ok(());
        }
        if let Ok(spki) = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&bytes) {
            println!("{}", SpkiPin::of_spki_der(&spki));
            return Ok(());
        }
        bail!(
            "{}: no certificate, private key or public key found",
            file.display()
        );
    }
    let cert = iotsec_pki::pem::certificates_from_slice(file, &bytes)?;
    println!("{}", Fingerprint::of_der(&cert[0]).openssl_line());
    Ok(())
}

fn inspect_file(file: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    let now = OffsetDateTime::now_utc();
    if let Ok(crl) = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&bytes) {
        let report = inspect::crl(&crl, now, CRL_WARN_DAYS)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("CRL issuer:  {}", report.issuer);
            println!("this update: {}", report.this_update);
            match report.next_update {
                Some(t) => println!("next update: {t}"),
                None => println!("next update: (none)"),
            }
            println!(
                "number:      {}",
                report.number.as_deref().unwrap_or("(none)")
            );
            println!("revoked:     {}", report.revoked.len());
            for s in &report.revoked {
                println!("  {s}");
            }
            print_warnings(&report.warnings);
        }
        return Ok(());
    }
    let certs = iotsec_pki::pem::certificates_from_slice(file, &bytes)?;
    let reports = certs
        .iter()
        .map(|c| inspect::certificate(c, now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for (i, r) in reports.iter().enumerate() {
        if reports.len() > 1 {
            println!("--- certificate {} of {}", i + 1, reports.len());
        }
        println!("subject:       {}", r.subject);
        println!("issuer:        {}", r.issuer);
        println!("serial:        {}", r.serial);
        println!("not before:    {}", r.not_before);
        println!("not after:     {}", r.not_after);
        println!(
            "SANs:          {}",
            if r.sans.is_empty() {
                "(none)".to_string()
            } else {
                r.sans.join(", ")
            }
        );
        let curve = r
            .key
            .curve
            .as_deref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        println!(
            "key:           {}{} ({} bits)",
            r.key.kind, curve, r.key.bits
        );
        println!("signature:     {}", r.signature_algorithm);
        println!(
            "EKU:           {}",
            if r.extended_key_usage.is_empty() {
                "(none)".to_string()
            } else {
                r.extended_key_usage.join(", ")
            }
        );
        println!(
            "CA:            {}",
            match r.ca {
                Some(true) => "TRUE",
                Some(false) => "FALSE",
                None => "(no basicConstraints)",
            }
        );
        println!(
            "self-signed:   {}",
            if r.self_signed { "yes" } else { "no" }
        );
        println!("fingerprint:   SHA256 {}", r.fingerprint);
        println!("SPKI pin:      {}", r.spki_pin);
        print_warnings(&r.warnings);
    }
    Ok(())
}

fn print_warnings(warnings: &[inspect::Warning]) {
    if warnings.is_empty() {
        println!("warnings:      none");
    }
    for w in warnings {
        println!("WARNING {}: {}", w.code, w.message);
    }
}
