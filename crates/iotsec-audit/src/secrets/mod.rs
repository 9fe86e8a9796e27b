//! The firmware and source secret scanner: walks trees (never following symbolic links, so
//! link loops cannot trap it; only regular files are read, so FIFOs and devices cannot block
//! it), caps file sizes, extracts printable strings from binaries like `strings(1)`, and runs
//! [`rules`] over text and strings on several threads.
//!
//! Besides findings it records what later checks need: markers of update code and of
//! signature verification (for the update-mechanism checks), ESP-IDF `sdkconfig` files (for
//! the physical-hardening checks), iotsec-ota bundles, and whether any init script was seen.

pub mod rules;
pub mod shadow;
pub mod strings;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::catalog::{self, Check};
use crate::error::{AuditError, Result};
use crate::finding::{Location, Severity};
use rules::{Kind, Matcher};

/// Limits of a tree scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Larger files are skipped (and listed in the report's notes).
    pub max_file_size: u64,
    /// Worker threads.
    pub threads: usize,
    /// Shortest string extracted from binaries.
    pub min_string: usize,
}

impl Default for ScanOptions {
    /// 128 MiB per file, one thread per core (at most 8), strings of 6 bytes or more.
    fn default() -> Self {
        ScanOptions {
            max_file_size: 128 * 1024 * 1024,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            min_string: 6,
        }
    }
}

/// A finding-worthy match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The check.
    pub check: &'static Check,
    /// Severity (a check's default, lowered for encrypted keys).
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// What (redacted).
    pub evidence: String,
}

/// Evidence of update code or signature checks in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Where.
    pub location: Location,
    /// What matched.
    pub evidence: String,
}

/// What an iotsec-ota bundle (or detached manifest) file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The file.
    pub path: PathBuf,
    /// `(version, security counter, hardware id)`, or why it does not parse.
    pub manifest: std::result::Result<(String, u32, String), String>,
}

/// Everything a tree scan saw.
#[derive(Debug, Default)]
pub struct TreeScan {
    /// Regular files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Text files among them.
    pub text_files: u64,
    /// Files over the size cap (not read).
    pub skipped_large: Vec<PathBuf>,
    /// Symbolic links not followed.
    pub skipped_links: u64,
    /// Entries that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Findings.
    pub hits: Vec<Hit>,
    /// First update-code marker per file.
    pub update_code: Vec<Marker>,
    /// First signature-check marker per file.
    pub signature_checks: Vec<Marker>,
    /// Init scripts seen.
    pub init_scripts: u64,
    /// `sdkconfig` files with their text.
    pub sdkconfigs: Vec<(PathBuf, String)>,
    /// iotsec-ota bundles and detached manifests.
    pub bundles: Vec<Bundle>,
}

impl TreeScan {
    fn merge(&mut self, o: TreeScan) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.text_files += o.text_files;
        self.skipped_large.extend(o.skipped_large);
        self.skipped_links += o.skipped_links;
        self.unreadable.extend(o.unreadable);
        self.hits.extend(o.hits);
        self.update_code.extend(o.update_code);
        self.signature_checks.extend(o.signature_checks);
        self.init_scripts += o.init_scripts;
        self.sdkconfigs.extend(o.sdkconfigs);
        self.bundles.extend(o.bundles);
    }

    fn sort(&mut self) {
        self.hits
            .sort_by(|a, b| a.location.cmp(&b.location).then(a.check.id.cmp(b.check.id)));
        self.update_code.sort_by(|a, b| a.location.cmp(&b.location));
        self.signature_checks
            .sort_by(|a, b| a.location.cmp(&b.location));
        self.sdkconfigs.sort();
        self.bundles.sort_by(|a, b| a.path.cmp(&b.path));
        self.skipped_large.sort();
        self.unreadable.sort();
    }
}

/// Scans files and trees. A root that cannot be read at all is an error; anything below it
/// that cannot be read is listed in [`TreeScan::unreadable`].
pub fn scan(roots: &[PathBuf], opts: &ScanOptions) -> Result<TreeScan> {
    let mut files = Vec::new();
    let mut out = TreeScan::default();
    for root in roots {
        let meta = fs::symlink_metadata(root).map_err(|e| AuditError::io(root, e))?;
        let meta = if meta.file_type().is_symlink() {
            // A root named on the command line is followed once, on purpose.
            fs::metadata(root).map_err(|e| AuditError::io(root, e))?
        } else {
            meta
        };
        if meta.is_dir() {
            walk(root, &mut files, &mut out);
        } else if meta.is_file() {
            files.push((root.clone(), meta.len()));
        } else {
            return Err(AuditError::Usage(format!(
                "{}: not a regular file or directory",
                root.display()
            )));
        }
    }
    // Big files first so the threads finish together.
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let matcher = Matcher::new();
    let next = AtomicUsize::new(0);
    let merged = Mutex::new(TreeScan::default());
    let threads = opts.threads.clamp(1, 64);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = TreeScan::default();
                let mut worker = Worker::new(&matcher, opts);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, len)) = files.get(i) else {
                        break;
                    };
                    worker.file(path, *len, &mut local);
                }
                merged
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .merge(local);
            });
        }
    });
    out.merge(
        merged
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    out.sort();
    Ok(out)
}

/// Collects regular files under `root` without following symbolic links; a directory reached
/// twice (bind mounts) is walked once.
fn walk(root: &Path, files: &mut Vec<(PathBuf, u64)>, out: &mut TreeScan) {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        match fs::metadata(&dir) {
            Ok(m) if !seen.insert((m.dev(), m.ino())) => continue,
            Ok(_) => {}
            Err(e) => {
                out.unreadable.push((dir, e.to_string()));
                continue;
            }
        }
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.unreadable.push((dir, e.to_string()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.unreadable.push((dir.clone(), e.to_string()));
                    continue;
                }
            };
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                out.unreadable.push((path, "cannot stat".into()));
                continue;
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                out.skipped_links += 1;
            } else if ft.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(path);
                }
            } else if ft.is_file() {
                files.push((path, meta.len()));
            }
        }
    }
}

/// True for files that start services at boot.
fn is_init_script(path: &Path) -> bool {
    let s = path.to_string_lossy();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    s.contains("/init.d/")
        || s.contains("/rc.d/")
        || s.contains("/etc/init/")
        || matches!(name.as_ref(), "inittab" | "rc.local" | "rcS" | "rc.sysinit")
        || name.ends_with(".service")
}

fn is_password_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    matches!(
        name.as_ref(),
        "shadow" | "shadow-" | "passwd" | "passwd-" | "master.passwd"
    )
}

struct Worker<'a> {
    matcher: &'a Matcher,
    opts: &'a ScanOptions,
    buf: Vec<u8>,
    joined: Vec<u8>,
    index: Vec<(usize, u64)>,
}

impl<'a> Worker<'a> {
    fn new(matcher: &'a Matcher, opts: &'a ScanOptions) -> Self {
        Worker {
            matcher,
            opts,
            buf: Vec::with_capacity(1 << 20),
            joined: Vec::new(),
            index: Vec::new(),
        }
    }

    fn file(&mut self, path: &Path, len: u64, out: &mut TreeScan) {
        if len > self.opts.max_file_size {
            out.skipped_large.push(path.to_path_buf());
            return;
        }
        self.buf.clear();
        let read = File::open(path).and_then(|f| {
            f.take(self.opts.max_file_size + 1)
                .read_to_end(&mut self.buf)
        });
        if let Err(e) = read {
            out.unreadable.push((path.to_path_buf(), e.to_string()));
            return;
        }
        if self.buf.len() as u64 > self.opts.max_file_size {
            out.skipped_large.push(path.to_path_buf());
            return;
        }
        out.files += 1;
        out.bytes += self.buf.len() as u64;
        let buf = std::mem::take(&mut self.buf);
        self.content(path, &buf, out);
        self.buf = buf;
    }

    fn content(&mut self, path: &Path, buf: &[u8], out: &mut TreeScan) {
        if buf.starts_with(b"IOTSSIG1") {
            out.bundles.push(Bundle {
                path: path.to_path_buf(),
                manifest: bundle_manifest(buf),
            });
        }
        let init = is_init_script(path);
        if init {
            out.init_scripts += 1;
        }
        let head = &buf[..buf.len().min(8192)];
        let binary = memchr::memchr(0, head).is_some();
        if !binary {
            out.text_files += 1;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if name == "sdkconfig" {
                out.sdkconfigs.push((
                    path.to_path_buf(),
                    String::from_utf8_lossy(buf).into_owned(),
                ));
            }
            if is_password_file(path) {
                password_file(path, buf, out);
            }
            let mut lines = LineCounter::default();
            let mut first_update = false;
            let mut first_sig = false;
            self.matcher.scan(buf, init, |start, _line, matches| {
                let line_no = lines.line_of(buf, start);
                for m in matches {
                    record(
                        self.matcher,
                        m,
                        Location::line(path, line_no),
                        out,
                        &mut first_update,
                        &mut first_sig,
                    );
                }
            });
        } else {
            self.joined.clear();
            self.index.clear();
            strings::extract_joined(buf, self.opts.min_string, &mut self.joined, &mut self.index);
            let (joined, index) = (&self.joined, &self.index);
            let mut first_update = false;
            let mut first_sig = false;
            self.matcher.scan(joined, init, |start, _line, matches| {
                for m in matches {
                    let offset = strings::file_offset(index, start + m.start);
                    let location = Location::File {
                        path: path.to_path_buf(),
                        line: None,
                        offset,
                    };
                    record(
                        self.matcher,
                        m,
                        location,
                        out,
                        &mut first_update,
                        &mut first_sig,
                    );
                }
            });
        }
    }
}

fn record(
    matcher: &Matcher,
    m: rules::LineMatch,
    location: Location,
    out: &mut TreeScan,
    first_update: &mut bool,
    first_sig: &mut bool,
) {
    let Some(rule) = matcher.rules().get(m.rule) else {
        return;
    };
    match rule.kind {
        Kind::Finding(check) => {
            let severity =
                if check.id == catalog::FW_PRIVATE_KEY.id && m.evidence.contains("ENCRYPTED") {
                    Severity::Medium
                } else {
                    check.severity
                };
            out.hits.push(Hit {
                check,
                severity,
                location,
                evidence: m.evidence,
            });
        }
        Kind::UpdateCode if !*first_update => {
            *first_update = true;
            out.update_code.push(Marker {
                location,
                evidence: m.evidence,
            });
        }
        Kind::SignatureCheck if !*first_sig => {
            *first_sig = true;
            out.signature_checks.push(Marker {
                location,
                evidence: m.evidence,
            });
        }
        _ => {}
    }
}

fn password_file(path: &Path, buf: &[u8], out: &mut TreeScan) {
    let text = String::from_utf8_lossy(buf);
    for (line, user, scheme) in shadow::weak_entries(&text) {
        let check = if scheme == shadow::HashScheme::Empty {
            &catalog::FW_EMPTY_PASSWORD
        } else {
            &catalog::FW_WEAK_PASSWORD_HASH
        };
        out.hits.push(Hit {
            check,
            severity: check.severity,
            location: Location::line(path, line),
            evidence: format!("user {user:?}: {}", scheme.name()),
        });
    }
}

fn bundle_manifest(buf: &[u8]) -> std::result::Result<(String, u32, String), String> {
    let (signed, _) = iotsec_ota::parse_bundle(buf).map_err(|e| e.to_string())?;
    let m = signed.manifest();
    Ok((
        m.version.to_string(),
        m.security_counter,
        m.hardware_id.as_str().to_owned(),
    ))
}

/// Turns byte positions (increasing) into 1-based line numbers, counting newlines once.
#[derive(Debug, Default)]
struct LineCounter {
    pos: usize,
    line: u64,
}

impl LineCounter {
    fn line_of(&mut self, buf: &[u8], at: usize) -> u64 {
        if at >= self.pos {
            let end = at.min(buf.len());
            self.line += memchr::memchr_iter(b'\n', &buf[self.pos..end]).count() as u64;
            self.pos = end;
        }
        self.line + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_text_binary_and_special_files_without_looping() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::create_dir_all(root.join("etc/init.d")).unwrap();
        fs::write(
            root.join("src/device.py"),
            "import ssl\n\nSECRET_KEY = b\"0123456789abcdef0123\"\nc.tls_insecure_set(True)\n",
        )
        .unwrap();
        let mut bin = vec![0u8, 1, 2, 3];
        bin.extend_from_slice(b"mqtt_password=\"hunter22\"");
        bin.extend_from_slice(&[0, 0xff, 0xfe]);
        fs::write(root.join("fw.bin"), &bin).unwrap();
        fs::write(
            root.join("etc/init.d/S50telnet"),
            "#!/bin/sh\ntelnetd -l /bin/sh\n",
        )
        .unwrap();
        fs::write(root.join("etc/shadow"), "root:$1$x$y:1:::\n").unwrap();
        std::os::unix::fs::symlink(root, root.join("src/loop")).unwrap();
        nix_mkfifo(&root.join("fifo"));
        fs::write(root.join("big.bin"), vec![b'a'; 4096]).unwrap();

        let opts = ScanOptions {
            max_file_size: 2048,
            threads: 2,
            min_string: 6,
        };
        let scan = scan(&[root.to_path_buf()], &opts).unwrap();
        let ids: Vec<(&str, String)> = scan
            .hits
            .iter()
            .map(|h| (h.check.id, h.location.to_string()))
            .collect();
        let has = |id: &str, loc: &str| ids.iter().any(|(i, l)| *i == id && l.ends_with(loc));
        assert!(has("FW-HARDCODED-KEY", "src/device.py:3"), "{ids:?}");
        assert!(has("FW-TLS-VERIFY-OFF", "src/device.py:4"), "{ids:?}");
        assert!(has("FW-HARDCODED-PASSWORD", "fw.bin @ 0x4"), "{ids:?}");
        assert!(has("FW-TELNETD", "etc/init.d/S50telnet:2"), "{ids:?}");
        assert!(has("FW-WEAK-PASSWORD-HASH", "etc/shadow:1"), "{ids:?}");
        assert_eq!(scan.skipped_links, 1);
        assert_eq!(scan.skipped_large.len(), 1);
        assert_eq!(scan.init_scripts, 1);
        assert_eq!(scan.files, 4);
    }

    fn nix_mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn line_counter_counts_each_newline_once() {
        let buf = b"a\nb\nc\nd";
        let mut c = LineCounter::default();
        assert_eq!(c.line_of(buf, 0), 1);
        assert_eq!(c.line_of(buf, 4), 3);
        assert_eq!(c.line_of(buf, 6), 4);
    }
}
