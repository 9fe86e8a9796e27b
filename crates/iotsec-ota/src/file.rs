//! Files (feature `std`): atomic writes and streaming verification / installation of bundle
//! files with bounded memory (one [`CHUNK`] buffer, whatever the image size).

use std::boxed::Box;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec;
use std::vec::Vec;

use crate::bundle::SignedManifest;
use crate::engine::Engine;
use crate::error::Error;
use crate::image::ImageHasher;
use crate::keyset::KeySet;
use crate::manifest::Manifest;
use crate::slot::SlotStore;

/// Read buffer for streaming images (1 MiB: large reads keep the hash at full speed).
pub const CHUNK: usize = 1 << 20;

/// Writes `bytes` to `path` atomically: a new temporary file in the same directory with
/// `mode`, fsync, rename over `path`, fsync the directory. Readers see the old or the new
/// contents, never a mix, also across a power cut.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_atomic_with(path, mode, |file, tmp| {
        file.write_all(bytes)
            .map_err(|e| Error::io("write", tmp, e))
    })
}

/// Like [`write_atomic`], with the contents written by `fill` into the temporary file.
///
/// # Errors
/// [`Error::Io`], or what `fill` returns (the temporary file is removed).
pub fn write_atomic_with<T>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File, &Path) -> Result<T, Error>,
) -> Result<T, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let name = path.file_name().map_or_else(
        || std::string::String::from("file"),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(std::format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        let value = fill(&mut file, &tmp)?;
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
        sync_dir(&dir)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so that renames and creations in it are durable.
///
/// # Errors
/// [`Error::Io`].
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync", dir, e))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads the signed manifest at the start of a bundle or detached manifest file, leaving
/// the reader positioned at the image.
///
/// # Errors
/// [`Error::Io`], malformed input.
pub fn read_signed_manifest(reader: &mut impl Read, path: &Path) -> Result<SignedManifest, Error> {
    let mut buf = vec![0u8; SignedManifest::PREAMBLE_LEN];
    read_full(reader, &mut buf, path)?;
    let len = SignedManifest::len_from_preamble(&buf)?;
    buf.resize(len, 0);
    read_full(reader, &mut buf[SignedManifest::PREAMBLE_LEN..], path)?;
    SignedManifest::parse(&buf)
}

fn read_full(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), Error> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                what: "signed manifest",
                needed: buf.len(),
            }
        } else {
            Error::io("read", path, e)
        }
    })
}

fn read_some(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, Error> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
}

/// Where the image of a signed manifest file is.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// Right after the signed manifest (a bundle).
    Bundled,
    /// In another file (a detached manifest).
    Detached(&'a Path),
}

/// Opens `path`, reads its signed manifest, and returns a reader over the image.
fn open_parts(
    path: &Path,
    image: ImageSource<'_>,
) -> Result<(SignedManifest, Box<dyn Read>, PathBuf), Error> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let signed = read_signed_manifest(&mut file, path)?;
    match image {
        ImageSource::Bundled => Ok((signed, Box::new(file), path.to_path_buf())),
        ImageSource::Detached(image) => {
            let mut rest = [0u8; 1];
            if read_some(&mut file, &mut rest, path)? != 0 {
                return Err(Error::malformed(
                    "detached manifest",
                    "the file holds an image too (it is a bundle)",
                ));
            }
            let reader = File::open(image).map_err(|e| Error::io("open", image, e))?;
            Ok((signed, Box::new(reader), image.to_path_buf()))
        }
    }
}

/// Verifies a bundle (or detached manifest + image) file as it streams: signature by a key
/// trusted for firmware, then exact length and SHA-256. Memory stays at one [`CHUNK`].
///
/// # Errors
/// The rejection, or [`Error::Io`].
pub fn verify_file(
    path: &Path,
    image: ImageSource<'_>,
    keys: &KeySet,
) -> Result<SignedManifest, Error> {
    let (signed, mut reader, image_path) = open_parts(path, image)?;
    let mut hasher = ImageHasher::new(signed.verify(keys)?);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut reader, &mut buf, &image_path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n])?;
    }
    hasher.finish()?;
    Ok(signed)
}

/// Installs a bundle (or detached manifest + image) file into the engine's inactive slot:
/// admission checks, streaming write with size cap and hash, re-read, trial pending.
///
/// # Errors
/// The rejection (the old firmware stays active), [`Error::Io`], store failures.
pub fn install_file<S: SlotStore>(
    engine: &mut Engine<S>,
    path: &Path,
    image: ImageSource<'_>,
    keys: &KeySet,
    now_ms: u64,
) -> Result<Manifest, Error> {
    let (signed, mut reader, image_path) = open_parts(path, image)?;
    let mut download = engine.begin_download(signed.as_bytes(), keys, now_ms)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut reader, &mut buf, &image_path)?;
        if n == 0 {
            break;
        }
        download.write(&buf[..n])?;
    }
    download.finish()?;
    Ok(signed.manifest().clone())
}

/// Reads a whole small file (keys, key sets, manifests), refusing anything over `limit`.
///
/// # Errors
/// [`Error::Io`]; a file over the limit is [`Error::Malformed`].
pub fn read_small(path: &Path, limit: usize) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() > limit {
        return Err(Error::malformed("file", "larger than expected"));
    }
    Ok(bytes)
}

/// What to sign: every manifest field except size and hash, which come from the image.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// Release version.
    pub version: crate::version::Version,
    /// Security counter.
    pub security_counter: u32,
    /// Hardware id.
    pub hardware_id: crate::manifest::HardwareId,
    /// Creation time, Unix seconds.
    pub created_s: u64,
    /// Expiry, Unix seconds.
    pub expires_s: Option<u64>,
}

/// Signs an image file in one read: writes a bundle to `out` (or, `detached`, only the
/// signed manifest), atomically. For a bundle, the image is copied and hashed in the same
/// pass and the signed manifest is written in front of it last, so the signature always
/// covers exactly the bytes in the bundle even if the source changes meanwhile.
///
/// # Errors
/// [`Error::Io`]; [`Error::Malformed`] for an empty image or invalid fields.
pub fn sign_image_file(
    image: &Path,
    request: &SignRequest,
    key: &crate::key::SecretKey,
    out: &Path,
    detached: bool,
) -> Result<SignedManifest, Error> {
    use sha2::Digest as _;
    use std::io::{Seek as _, SeekFrom};
    use std::os::unix::fs::FileExt as _;

    let mut manifest = Manifest {
        version: request.version.clone(),
        security_counter: request.security_counter,
        hardware_id: request.hardware_id.clone(),
        image_size: 1,
        image_sha256: [0; 32],
        created_s: request.created_s,
        expires_s: request.expires_s,
    };
    // The header length does not depend on size or hash (fixed-width fields).
    let header_len = SignedManifest::sign(&manifest, key)?.as_bytes().len();
    let mut source = File::open(image).map_err(|e| Error::io("open", image, e))?;
    let mut hash_and_copy =
        |sink: Option<&mut File>, tmp: &Path| -> Result<(u64, [u8; 32]), Error> {
            let mut sha = sha2::Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; CHUNK];
            let mut sink = sink;
            loop {
                let n = read_some(&mut source, &mut buf, image)?;
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                sha.update(chunk);
                size += n as u64;
                if let Some(file) = sink.as_deref_mut() {
                    file.write_all(chunk)
                        .map_err(|e| Error::io("write", tmp, e))?;
                }
            }
            Ok((size, sha.finalize().into()))
        };
    let finish = |manifest: &mut Manifest, (size, sha): (u64, [u8; 32])| {
        manifest.image_size = size;
        manifest.image_sha256 = sha;
        SignedManifest::sign(manifest, key)
    };
    if detached {
        let signed = finish(&mut manifest, hash_and_copy(None, image)?)?;
        write_atomic(out, signed.as_bytes(), 0o644)?;
        return Ok(signed);
    }
    write_atomic_with(out, 0o644, |file, tmp| {
        file.seek(SeekFrom::Start(header_len as u64))
            .map_err(|e| Error::io("seek", tmp, e))?;
        let signed = finish(&mut manifest, hash_and_copy(Some(file), tmp)?)?;
        debug_assert_eq!(signed.as_bytes().len(), header_len);
        file.write_all_at(signed.as_bytes(), 0)
            .map_err(|e| Error::io("write", tmp, e))?;
        Ok(signed)
    })
}
