//! The per-device anti-replay window (RFC 6347 section 4.1.2.6, as DTLS and IPsec use it).
//!
//! The right edge is the newest sequence number accepted; bit `i` of the bitmap says whether
//! `newest - i` was accepted. A number above the edge is new and slides the window; one inside
//! the window is new unless its bit is set (reordering within 64 messages is fine); one below
//! the window is too old to tell and is refused as [`Error::Stale`]. Only authenticated
//! messages may move the window: call [`ReplayWindow::check`] before and
//! [`ReplayWindow::accept`] after the signature check.

use crate::error::Error;

/// Number of sequence numbers the window remembers.
pub const WINDOW: u64 = 64;

/// A 64-entry sliding replay window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    newest: Option<u64>,
    bits: u64,
}

impl ReplayWindow {
    /// An empty window (no message accepted yet: any sequence number is new).
    pub const fn new() -> Self {
        ReplayWindow {
            newest: None,
            bits: 0,
        }
    }

    /// Restores a window from its persisted parts (`newest`, `bitmap`).
    pub const fn from_parts(newest: Option<u64>, bitmap: u64) -> Self {
        ReplayWindow {
            newest,
            bits: bitmap,
        }
    }

    /// The newest accepted sequence number.
    pub const fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// The bitmap (bit `i` = `newest - i` accepted), for persistence.
    pub const fn bitmap(&self) -> u64 {
        self.bits
    }

    /// Would `seq` be new? Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), Error> {
        let Some(newest) = self.newest else {
            return Ok(());
        };
        if seq > newest {
            return Ok(());
        }
        let age = newest - seq;
        if age >= WINDOW {
            return Err(Error::Stale { seq, newest });
        }
        if self.bits >> age & 1 == 1 {
            return Err(Error::Replayed { seq });
        }
        Ok(())
    }

    /// Records `seq` as accepted (after `check` passed and the message was authenticated).
    pub fn accept(&mut self, seq: u64) {
        match self.newest {
            None => {
                self.newest = Some(seq);
                self.bits = 1;
            }
            Some(newest) if seq > newest => {
                let shift = seq - newest;
                self.bits = if shift >= WINDOW {
                    0
                } else {
                    self.bits << shift
                };
                self.bits |= 1;
                self.newest = Some(seq);
            }
            Some(newest) => {
                let age = newest - seq;
                if age < WINDOW {
                    self.bits |= 1 << age;
                }
            }
        }
    }

    /// `check` then `accept`.
    pub fn check_and_accept(&mut self, seq: u64) -> Result<(), Error> {
        self.check(seq)?;
        self.accept(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_duplicate_and_old() {
        let mut w = ReplayWindow::new();
        w.check_and_accept(100).unwrap();
        w.check_and_accept(98).unwrap();
        w.check_and_accept(101).unwrap();
        assert_eq!(w.check(98), Err(Error::Replayed { seq: 98 }));
        assert_eq!(w.check(101), Err(Error::Replayed { seq: 101 }));
        w.check_and_accept(38).unwrap(); // age 63: inside
        assert_eq!(
            w.check(37),
            Err(Error::Stale {
                seq: 37,
                newest: 101
            })
        );
        w.check_and_accept(u64::MAX).unwrap();
        assert_eq!(
            w.check(101),
            Err(Error::Stale {
                seq: 101,
                newest: u64::MAX
            })
        );
        w.check_and_accept(0).unwrap_err();
    }
}
