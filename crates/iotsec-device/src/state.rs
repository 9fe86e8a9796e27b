//! The device's small state files, and the persisted sequence counter.
//!
//! Every state file is replaced atomically: written to a temporary file in the same
//! directory, fsynced, renamed over the old one, and the directory fsynced. A reader (the
//! next boot) sees the old content or the new one, never a mix.
//!
//! The sequence counter is MSG's skip-ahead scheme ([`iotsec_msg::seq`], OSCORE RFC 8613
//! appendix B.1.1): `state/seq` holds a *bound* that every number handed out stays below. It
//! is rewritten once every [`SEQ_STEP`] numbers; a boot starts at the stored bound, so a crash
//! skips at most `SEQ_STEP` numbers and never repeats one.

use std::fs;
use std::io::Write as _;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use iotsec_msg::seq::{Next, SeqCounter};

use crate::error::{Error, Result};

/// How many sequence numbers one write of `state/seq` covers.
pub const SEQ_STEP: u64 = 1000;

/// Replaces `path` with `bytes` atomically (temp file, fsync, rename, fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory, so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Reads a state file holding one decimal `u64` (and a newline). `Ok(None)` when it does
/// not exist.
pub(crate) fn read_u64(path: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::StateCorrupt {
                path: path.to_path_buf(),
                reason: "expected one decimal number".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// An exclusive lock on a state directory (`state/lock`, `flock(2)`), held while an agent
/// runs: two agents appending to one queue would corrupt it. Released when dropped, and by
/// the kernel when the process dies.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

impl StateLock {
    /// Takes the lock on `dir` (creating `dir/lock`), or fails at once.
    ///
    /// # Errors
    /// [`Error::StateLocked`] when another agent holds it; [`Error::Io`].
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        let path = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StateLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::StateLocked { path }),
            Err((_, errno)) => Err(Error::Io {
                op: "lock",
                path,
                source: std::io::Error::from(errno),
            }),
        }
    }
}

/// The sequence counter with its bound persisted in `state/seq`.
#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    counter: SeqCounter,
}

impl SeqStore {
    /// Boots the counter from `dir/seq`. `floor` is a number the counter must not go below
    /// (one past the highest seq found in the queue): if the seq file was lost or restored
    /// from an old backup, the queue still prevents a repeat.
    ///
    /// # Errors
    /// [`Error::StateCorrupt`] if the file holds anything but a number (the agent refuses to
    /// guess: a wrong guess would repeat sequence numbers); [`Error::Io`].
    pub fn open(dir: &Path, floor: u64) -> Result<Self> {
        let path = dir.join("seq");
        let stored = read_u64(&path)?;
        let start = match stored {
            Some(bound) => Some(bound.max(floor)),
            None if floor > 0 => Some(floor),
            None => None,
        };
        // SEQ_STEP is a non-zero constant.
        let step = NonZeroU64::new(SEQ_STEP).unwrap_or(NonZeroU64::MIN);
        Ok(SeqStore {
            path,
            counter: SeqCounter::boot(start, step),
        })
    }

    /// The next sequence number, persisting a new bound first when the counter needs one.
    ///
    /// # Errors
    /// [`Error::SeqExhausted`], or the write of the bound failed (then no number is handed out).
    pub fn allocate(&mut self) -> Result<u64> {
        loop {
            match self.counter.next_seq().map_err(|_| Error::SeqExhausted)? {
                Next::Use(n) => return Ok(n),
                Next::Persist(bound) => {
                    write_atomic(&self.path, format!("{bound}\n").as_bytes())?;
                    self.counter.persisted(bound);
                }
            }
        }
    }

    /// The number `allocate` would hand out.
    pub fn peek(&self) -> u64 {
        self.counter.peek()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn never_repeats_across_reboots_and_skips_at_most_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for _boot in 0..3 {
            let mut s = SeqStore::open(dir.path(), 0).unwrap();
            for _ in 0..5 {
                seen.push(s.allocate().unwrap());
            }
        }
        assert_eq!(seen[..5], [0, 1, 2, 3, 4]);
        assert_eq!(seen[5], SEQ_STEP);
        assert_eq!(seen[10], 2 * SEQ_STEP);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            read_u64(&dir.path().join("seq")).unwrap(),
            Some(3 * SEQ_STEP)
        );
    }

    #[test]
    fn a_second_agent_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            StateLock::acquire(dir.path()),
            Err(Error::StateLocked { .. })
        ));
        drop(lock);
        StateLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn floor_from_the_queue_wins_over_a_lost_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeqStore::open(dir.path(), 4242).unwrap();
        assert_eq!(s.allocate().unwrap(), 4242);
        fs::write(dir.path().join("seq"), "garbage").unwrap();
        assert!(matches!(
            SeqStore::open(dir.path(), 0),
            Err(Error::StateCorrupt { .. })
        ));
    }
}
