//! The certificate authority and the files it keeps in a PKI directory.
//!
//! Layout of a PKI directory (every path relative to it):
//!
//! | file | mode | what |
//! |---|---|---|
//! | `ca.crt`, `ca.key` | 0644, 0600 | self-signed root |
//! | `server.crt`, `server.key` | 0644, 0600 | TLS server: leaf then CA (full chain) |
//! | `devices/<id>.crt`, `devices/<id>.key` | 0644, 0600 | one client certificate per device |
//! | `crl.pem` | 0644 | CRL signed by the CA |
//! | `inventory.json` | 0644 | every issued certificate ([`crate::inventory`]) |

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::algorithm::KeyAlgorithm;
use crate::error::{PkiError, Result};
use crate::file::{self, Durability, Mode, Rollback};
use crate::id::DeviceId;
use crate::inventory::{Entry, Inventory, Role};
use crate::pem;

/// Default CA lifetime.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default server and device certificate lifetime.
pub const DEFAULT_LEAF_DAYS: u32 = 825;
/// Default CRL lifetime (`nextUpdate - thisUpdate`). Mosquitto refuses every client once the CRL
/// it loaded is past nextUpdate, so `iotsec up` re-signs it at every start and `pki list`
/// warns when fewer than [`CRL_WARN_DAYS`] remain.
pub const DEFAULT_CRL_DAYS: u32 = 30;
/// Days before the CRL's nextUpdate from which iotsec warns.
pub const CRL_WARN_DAYS: i64 = 7;
/// Backdating of notBefore, for devices whose clocks run a little behind.
const CLOCK_SKEW: Duration = Duration::minutes(5);
/// Above this many certificates in one call, files are flushed with one `syncfs` at the end
/// instead of one fsync per file.
const BULK_THRESHOLD: usize = 8;

/// Paths of a PKI directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Layout { dir: dir.into() }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ca.crt`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// `crl.pem`.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// `<stem>.crt` (the server's chain; stem defaults to `server`).
    pub fn server_cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.crt"))
    }
    /// `<stem>.key`.
    pub fn server_key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
    /// `devices/`.
    pub fn devices_dir(&self) -> PathBuf {
        self.dir.join("devices")
    }
    /// `devices/<id>.crt`.
    pub fn device_cert(&self, id: &DeviceId) -> PathBuf {
        self.devices_dir().join(format!("{id}.crt"))
    }
    /// `devices/<id>.key`.
    pub fn device_key(&self, id: &DeviceId) -> PathBuf {
        self.devices_dir().join(format!("{id}.key"))
    }
}

/// Options of `pki init`.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// CN of the CA.
    pub name: String,
    /// Key algorithm of the CA (and the default for everything it issues).
    pub key: KeyAlgorithm,
    /// Lifetime in days.
    pub days: u32,
    /// Lifetime of the initial CRL in days.
    pub crl_days: u32,
    /// Replace an existing CA.
    pub overwrite: Overwrite,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            name: "iotsec root CA".into(),
            key: KeyAlgorithm::default(),
            days: DEFAULT_CA_DAYS,
            crl_days: DEFAULT_CRL_DAYS,
            overwrite: Overwrite::Refuse,
        }
    }
}

/// Whether an existing CA / certificate may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse (the default).
    #[default]
    Refuse,
    /// Replace it (`--force`). For a device this revokes the old certificate first.
    Replace,
}

/// Options of `pki server`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Host name or IP address; becomes the CN and the first SAN.
    pub host: String,
    /// Further SANs (DNS names or IP addresses).
    pub sans: Vec<String>,
    /// Key algorithm; `None` = the PKI's default.
    pub key: Option<KeyAlgorithm>,
    /// Use this existing key instead of generating one (pre-pinned backup key rotation).
    pub key_file: Option<PathBuf>,
    /// File stem: `server` writes `server.crt` / `server.key`.
    pub stem: String,
    /// Lifetime in days.
    pub days: u32,
    /// Replace existing files.
    pub overwrite: Overwrite,
}

/// Options of `pki device`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOptions {
    /// Key algorithm; `None` = the PKI's default.
    pub key: Option<KeyAlgorithm>,
    /// Lifetime in days.
    pub days: u32,
    /// Device or back-end service.
    pub role: Role,
    /// Re-issue (revoking the current certificate) instead of refusing.
    pub overwrite: Overwrite,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            key: None,
            days: DEFAULT_LEAF_DAYS,
            role: Role::Device,
            overwrite: Overwrite::Refuse,
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Its inventory entry.
    pub entry: Entry,
    /// Where the certificate (chain) was written.
    pub cert_path: PathBuf,
    /// Where the private key was written.
    pub key_path: PathBuf,
}

/// A CRL just signed.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    /// Where it was written.
    pub path: PathBuf,
    /// Its CRL number.
    pub number: u64,
    /// Its nextUpdate.
    pub next_update: OffsetDateTime,
    /// How many certificates it lists.
    pub revoked: usize,
}

/// An open PKI directory with its CA loaded.
pub struct Authority {
    layout: Layout,
    ca_der: Vec<u8>,
    ca_pem: String,
    ca_key: KeyPair,
    inventory: Inventory,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CA key never reaches Debug output.
        f.debug_struct("Authority")
            .field("dir", &self.layout.dir)
            .field("ca_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    // Certificates carry whole seconds (UTCTime / GeneralizedTime without fractions).
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
}

fn check_days(what: &'static str, days: u32) -> Result<Duration> {
    if days == 0 || days > 36_500 {
        return Err(PkiError::InvalidArgument {
            what,
            reason: format!("{days} days is outside 1..=36500"),
        });
    }
    Ok(Duration::days(i64::from(days)))
}

/// A random serial: 16 bytes (128 bits) from the OS CSPRNG, top bit cleared so the DER INTEGER
/// stays positive and 16 octets long (RFC 5280 section 4.1.2.2: at most 20 octets; CA/B Forum:
/// at least 64 bits of randomness).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Generation(format!("OS RNG: {e}")))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // keep the leading octet non-zero: fixed length, never a redundant 0x00
    Ok(SerialNumber::from_slice(&bytes))
}

fn serial_hex(serial: &SerialNumber) -> String {
    let s = hex::encode(serial.as_ref());
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

fn validity(params: &mut CertificateParams, days: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = now();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + days;
    (params.not_before, params.not_after)
}

/// Parses a SAN: an IP address literal or a DNS name (letters, digits, '-', '.', optional
/// leading "*." wildcard label).
fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |reason: &str| PkiError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() || host.len() > 253 {
        return Err(bad("a DNS name has 1 to 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every DNS label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "not an IP address, and a DNS name has only letters, digits, '-' and '.'",
            ));
        }
    }
    let ia5 = name.to_owned().try_into().map_err(|_| bad("not ASCII"))?;
    Ok(SanType::DnsName(ia5))
}

impl Authority {
    /// Creates a new CA in `dir` (`pki init`): `ca.crt`, `ca.key`, an empty `crl.pem` and the
    /// inventory.
    pub fn init(dir: &Path, opts: &CaOptions) -> Result<Authority> {
        let layout = Layout::new(dir);
        let days = check_days("CA validity", opts.days)?;
        check_days("CRL validity", opts.crl_days)?;
        if opts.name.trim().is_empty() || opts.name.len() > 64 {
            return Err(PkiError::InvalidName {
                name: opts.name.clone(),
                reason: "a CA name has 1 to 64 characters".into(),
            });
        }
        if opts.overwrite == Overwrite::Refuse {
            for path in [layout.ca_cert(), layout.ca_key()] {
                if path.exists() {
                    return Err(PkiError::AlreadyExists { path });
                }
            }
        }
        fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;

        let key = opts.key.generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, opts.name.as_str());
        dn.push(DnType::OrganizationName, "iotsec");
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial()?);
        // pathlen 0: this CA signs end-entity certificates only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let (not_before, not_after) = validity(&mut params, days);
        let cert = params.self_signed(&key)?;

        let mut inventory = Inventory::new(opts.key);
        inventory.certificates.push(Entry {
            id: opts.name.clone(),
            role: Role::Ca,
            serial: serial_hex(
                params
                    .serial_number
                    .as_ref()
                    .unwrap_or(&SerialNumber::from(0)),
            ),
            key: opts.key,
            not_before,
            not_after,
            file: PathBuf::from("ca.crt"),
            revoked_at: None,
        });

        // Key first, then the certificate, the CRL and the inventory; the key file is replaced
        // atomically, so a failure leaves either the old CA or the complete new one... except
        // for a crash between files, where `open` then reports the key/cert mismatch.
        file::write_atomic(
            &layout.ca_key(),
            crate::algorithm::private_key_pem(&key).as_bytes(),
            Mode::Private,
            Durability::Sync,
        )?;
        file::write_atomic(
            &layout.ca_cert(),
            cert.pem().as_bytes(),
            Mode::Public,
            Durability::Sync,
        )?;
        let mut authority = Authority {
            layout,
            ca_der: cert.der().to_vec(),
            ca_pem: cert.pem(),
            ca_key: key,
            inventory,
        };
        authority.write_crl(opts.crl_days)?;
        Ok(authority)
    }

    /// Opens an existing PKI directory, checking that the CA key matches the CA certificate.
    pub fn open(dir: &Path) -> Result<Authority> {
        let layout = Layout::new(dir);
        let (cert_path, key_path) = (layout.ca_cert(), layout.ca_key());
        if !cert_path.exists() || !key_path.exists() {
            return Err(PkiError::CaMissing {
                dir: dir.to_path_buf(),
            });
        }
        let ca = pem::certificate(&cert_path)?;
        let key = pem::key_pair(&key_path)?;
        pem::ensure_key_matches(&cert_path, &ca, &key_path, &key)?;
        let inventory = Inventory::load(dir)?;
        let ca_pem = String::from_utf8_lossy(&file::read(&cert_path)?).into_owned();
        Ok(Authority {
            layout,
            ca_der: ca.to_vec(),
            ca_pem,
            ca_key: key,
            inventory,
        })
    }

    /// The directory layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Ok(Issuer::from_ca_cert_der(
            &self.ca_der.as_slice().into(),
            &self.ca_key,
        )?)
    }

    fn leaf_params(cn: &str, days: Duration) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        validity(&mut params, days);
        Ok(params)
    }

    /// Issues a TLS server certificate (`pki server`): SAN always includes the host, EKU
    /// serverAuth, CA:FALSE; the file holds the leaf then the CA.
    pub fn issue_server(&mut self, opts: &ServerOptions) -> Result<Issued> {
        let days = check_days("server validity", opts.days)?;
        if opts.stem.is_empty()
            || !opts
                .stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PkiError::InvalidArgument {
                what: "file stem",
                reason: format!("{:?} must be letters, digits, '-' or '_'", opts.stem),
            });
        }
        let mut sans = vec![san(&opts.host)?];
        for name in &opts.sans {
            let s = san(name)?;
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
        let cert_path = self.layout.server_cert(&opts.stem);
        let key_path = self.layout.server_key(&opts.stem);
        if opts.overwrite == Overwrite::Refuse {
            for path in [&cert_path, &key_path] {
                if path.exists() && opts.key_file.as_deref() != Some(path.as_path()) {
                    return Err(PkiError::AlreadyExists { path: path.clone() });
                }
            }
        }
        let key = match &opts.key_file {
            Some(path) => pem::key_pair(path)?,
            None => opts.key.unwrap_or(self.inventory.default_key).generate()?,
        };
        let alg = KeyAlgorithm::of(&key).unwrap_or(self.inventory.default_key);
        let mut params = Self::leaf_params(&opts.host, days)?;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if matches!(alg, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072) {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let cert = params.signed_by(&key, &self.issuer()?)?;
        let chain = format!("{}{}", cert.pem(), self.ca_pem);

        let entry = Entry {
            id: opts.host.clone(),
            role: Role::Server,
            serial: serial_hex(
                params
                    .serial_number
                    .as_ref()
                    .unwrap_or(&SerialNumber::from(0)),
            ),
            key: alg,
            not_before: params.not_before,
            not_after: params.not_after,
            file: PathBuf::from(format!("{}.crt", opts.stem)),
            revoked_at: None,
        };
        if opts.key_file.as_deref() != Some(key_path.as_path()) {
            file::write_atomic(
                &key_path,
                crate::algorithm::private_key_pem(&key).as_bytes(),
                Mode::Private,
                Durability::Sync,
            )?;
        }
        file::write_atomic(&cert_path, chain.as_bytes(), Mode::Public, Durability::Sync)?;
        self.inventory.certificates.push(entry.clone());
        self.inventory.save(self.layout.dir())?;
        Ok(Issued {
            entry,
            cert_path,
            key_path,
        })
    }

    /// Issues one client certificate per id (`pki device`, `--count`): CN = id, EKU clientAuth.
    ///
    /// All ids are checked before anything is written; if anything fails midway, every file
    /// written by this call is removed and the inventory is unchanged.
    pub fn issue_devices(&mut self, ids: &[DeviceId], opts: &DeviceOptions) -> Result<Vec<Issued>> {
        let days = check_days("device validity", opts.days)?;
        if !matches!(opts.role, Role::Device | Role::Service) {
            return Err(PkiError::InvalidArgument {
                what: "role",
                reason: "a client certificate is for a device or a service".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            if !seen.insert(id.as_str()) {
                return Err(PkiError::InvalidArgument {
                    what: "device ids",
                    reason: format!("{id} appears twice"),
                });
            }
            if opts.overwrite == Overwrite::Refuse {
                if let Some(e) =
                    self.inventory.certificates.iter().rev().find(|e| {
                        e.id == id.as_str() && e.role != Role::Ca && e.revoked_at.is_none()
                    })
                {
                    return Err(PkiError::AlreadyIssued {
                        id: id.to_string(),
                        serial: e.serial.clone(),
                    });
                }
                for path in [self.layout.device_cert(id), self.layout.device_key(id)] {
                    if path.exists() {
                        return Err(PkiError::AlreadyExists { path });
                    }
                }
            }
        }
        let devices_dir = self.layout.devices_dir();
        fs::create_dir_all(&devices_dir).map_err(|e| PkiError::io(&devices_dir, e))?;

        let bulk = ids.len() > BULK_THRESHOLD;
        let durability = if bulk {
            Durability::Deferred
        } else {
            Durability::Sync
        };
        let issuer = self.issuer()?;
        let default_key = self.inventory.default_key;
        let mut rollback = Rollback::new();
        let mut issued = Vec::with_capacity(ids.len());
        let revoke_time = now();
        let mut replaced = Vec::new();
        for id in ids {
            let alg = opts.key.unwrap_or(default_key);
            let key = alg.generate()?;
            let mut params = Self::leaf_params(id.as_str(), days)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if matches!(alg, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072) {
                params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            }
            let cert = params.signed_by(&key, &issuer)?;
            let cert_path = self.layout.device_cert(id);
            let key_path = self.layout.device_key(id);
            if opts.overwrite == Overwrite::Replace {
                // Re-issue: the files are replaced atomically; the old certificate is revoked
                // below, in the same inventory update.
                replaced.push(id.as_str().to_owned());
                file::write_atomic(
                    &key_path,
                    crate::algorithm::private_key_pem(&key).as_bytes(),
                    Mode::Private,
                    durability,
                )?;
                file::write_atomic(&cert_path, cert.pem().as_bytes(), Mode::Public, durability)?;
            } else {
                rollback.create(
                    &key_path,
                    crate::algorithm::private_key_pem(&key).as_bytes(),
                    Mode::Private,
                    durability,
                )?;
                rollback.create(&cert_path, cert.pem().as_bytes(), Mode::Public, durability)?;
            }
            issued.push(Issued {
                entry: Entry {
                    id: id.to_string(),
                    role: opts.role,
                    serial: serial_hex(
                        params
                            .serial_number
                            .as_ref()
                            .unwrap_or(&SerialNumber::from(0)),
                    ),
                    key: alg,
                    not_before: params.not_before,
                    not_after: params.not_after,
                    file: PathBuf::from("devices").join(format!("{id}.crt")),
                    revoked_at: None,
                },
                cert_path,
                key_path,
            });
        }
        if bulk {
            file::sync_filesystem(&devices_dir)?;
        }
        let mut inventory = self.inventory.clone();
        let mut any_revoked = false;
        for id in &replaced {
            for e in inventory.active_mut(id) {
                e.revoked_at = Some(revoke_time);
                any_revoked = true;
            }
        }
        inventory
            .certificates
            .extend(issued.iter().map(|i| i.entry.clone()));
        inventory.save(self.layout.dir())?;
        rollback.commit();
        self.inventory = inventory;
        if any_revoked {
            self.write_crl(DEFAULT_CRL_DAYS)?;
        }
        Ok(issued)
    }

    /// Revokes every active certificate of `id` and re-signs the CRL (`pki revoke`).
    pub fn revoke(&mut self, id: &str, crl_days: u32) -> Result<Vec<Entry>> {
        check_days("CRL validity", crl_days)?;
        let when = now();
        let mut inventory = self.inventory.clone();
        let revoked: Vec<Entry> = inventory
            .active_mut(id)
            .map(|e| {
                e.revoked_at = Some(when);
                e.clone()
            })
            .collect();
        if revoked.is_empty() {
            return Err(PkiError::UnknownId { id: id.to_owned() });
        }
        let crl = self.sign_crl(&inventory, crl_days)?;
        // CRL first: if writing the inventory fails, the certificate is revoked anyway (fail
        // closed), and the next `crl` run lists it again from the inventory.
        file::write_atomic(
            &self.layout.crl(),
            crl.0.as_bytes(),
            Mode::Public,
            Durability::Sync,
        )?;
        inventory.crl_number = crl.1;
        inventory.save(self.layout.dir())?;
        self.inventory = inventory;
        Ok(revoked)
    }

    /// Signs a fresh CRL listing every revoked certificate (`pki crl`).
    pub fn write_crl(&mut self, days: u32) -> Result<CrlInfo> {
        check_days("CRL validity", days)?;
        let (pem, number, next_update) = self.sign_crl(&self.inventory, days)?;
        file::write_atomic(
            &self.layout.crl(),
            pem.as_bytes(),
            Mode::Public,
            Durability::Sync,
        )?;
        let mut inventory = self.inventory.clone();
        inventory.crl_number = number;
        inventory.save(self.layout.dir())?;
        self.inventory = inventory;
        Ok(CrlInfo {
            path: self.layout.crl(),
            number,
            next_update,
            revoked: self.inventory.revoked().count(),
        })
    }

    fn sign_crl(&self, inventory: &Inventory, days: u32) -> Result<(String, u64, OffsetDateTime)> {
        let lifetime = check_days("CRL validity", days)?;
        let number = inventory.crl_number + 1;
        let this_update = now() - CLOCK_SKEW;
        let next_update = this_update + CLOCK_SKEW + lifetime;
        let revoked_certs = inventory
            .revoked()
            .map(|e| {
                let bytes = hex::decode(if e.serial.len() % 2 == 1 {
                    format!("0{}", e.serial)
                } else {
                    e.serial.clone()
                })
                .map_err(|err| PkiError::BadInventory {
                    path: self.layout.dir().join(crate::inventory::FILE_NAME),
                    reason: format!("serial of {}: {err}", e.id),
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: e.revoked_at.unwrap_or(this_update),
                    reason_code: None::<RevocationReason>,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        Ok((crl.pem()?, number, next_update))
    }
}
