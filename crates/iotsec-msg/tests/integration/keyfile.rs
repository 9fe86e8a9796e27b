//! Key files: 32 random bytes, mode 0600, no overwrite by accident, bytes read back exactly.

use std::os::unix::fs::PermissionsExt as _;

use iotsec_msg::Error;
use iotsec_msg::keyfile::{self, Overwrite};

#[test]
fn keygen_writes_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.key");
    let key = keyfile::random_key().unwrap();
    assert_eq!(key.expose().len(), 32);
    keyfile::write(&path, &key, Overwrite::Refuse).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(keyfile::read(&path).unwrap().expose(), key.expose());
    let other = keyfile::random_key().unwrap();
    assert_ne!(other.expose(), key.expose());
    assert!(matches!(
        keyfile::write(&path, &other, Overwrite::Refuse),
        Err(Error::Io {
            kind: std::io::ErrorKind::AlreadyExists,
            ..
        })
    ));
    keyfile::write(&path, &other, Overwrite::Replace).unwrap();
    assert_eq!(keyfile::read(&path).unwrap().expose(), other.expose());
    // no temporary files left behind
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // a key file's bytes are the key, exactly (no trimming)
    std::fs::write(&path, b"your-32-byte-secret-key-here!!!!\n").unwrap();
    assert_eq!(keyfile::read(&path).unwrap().expose().len(), 33);
    std::fs::write(&path, b"").unwrap();
    assert_eq!(keyfile::read(&path).unwrap_err(), Error::InvalidKey);
}
