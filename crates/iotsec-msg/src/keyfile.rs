//! Key files (`std` only): a key file's bytes are the key, exactly. New keys are 32 random
//! bytes, written with mode 0600 through a temporary file in the same directory and a rename,
//! so a reader never sees a partial key and the key is never world-readable, even briefly.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::vec::Vec;

use crate::error::Error;
use crate::key::{KEY_LEN, KeyMaterial};

fn io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Io { op, kind: e.kind() }
}

/// Reads a key file (its bytes, exactly; empty files are refused).
pub fn read(path: &Path) -> Result<KeyMaterial, Error> {
    let bytes = fs::read(path).map_err(io("read key file"))?;
    KeyMaterial::new(bytes)
}

/// 32 bytes from the operating system's random source.
pub fn random_key() -> Result<KeyMaterial, Error> {
    let mut bytes = std::vec![0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|_| Error::Io {
        op: "random source",
        kind: std::io::ErrorKind::Other,
    })?;
    KeyMaterial::new(bytes)
}

/// Whether an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse when the file exists (the default: a key is not replaced by accident).
    Refuse,
    /// Replace it atomically.
    Replace,
}

/// Writes `key` to `path` with mode 0600, atomically (temporary file + fsync + rename + fsync
/// of the directory).
pub fn write(path: &Path, key: &KeyMaterial, overwrite: Overwrite) -> Result<(), Error> {
    if overwrite == Overwrite::Refuse && fs::symlink_metadata(path).is_ok() {
        return Err(Error::Io {
            op: "write key file",
            kind: std::io::ErrorKind::AlreadyExists,
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or(Error::Io {
        op: "write key file",
        kind: std::io::ErrorKind::InvalidInput,
    })?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|_| Error::Io {
        op: "random source",
        kind: std::io::ErrorKind::Other,
    })?;
    let mut tmp_name: Vec<u8> = Vec::new();
    tmp_name.push(b'.');
    tmp_name.extend_from_slice(name.as_encoded_bytes());
    tmp_name.extend_from_slice(b".tmp-");
    for b in suffix {
        tmp_name.extend_from_slice(std::format!("{b:02x}").as_bytes());
    }
    // The name is the original file name (valid for this OS) plus ASCII.
    let tmp = dir.join(tmp_os_string(tmp_name, name));
    let result = write_tmp(&tmp, key).and_then(|()| {
        fs::rename(&tmp, path).map_err(io("rename key file"))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_os_string(bytes: Vec<u8>, name: &std::ffi::OsStr) -> std::ffi::OsString {
    #[cfg(unix)]
    {
        let _ = name;
        use std::os::unix::ffi::OsStringExt as _;
        std::ffi::OsString::from_vec(bytes)
    }
    #[cfg(not(unix))]
    {
        let _ = bytes;
        let mut s = std::ffi::OsString::from(".");
        s.push(name);
        s.push(".tmp");
        s
    }
}

fn write_tmp(tmp: &Path, key: &KeyMaterial) -> Result<(), Error> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(tmp).map_err(io("create key file"))?;
    f.write_all(key.expose()).map_err(io("write key file"))?;
    f.sync_all().map_err(io("sync key file"))?;
    Ok(())
}
