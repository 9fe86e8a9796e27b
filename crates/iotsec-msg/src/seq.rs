//! The device-side sequence counter: never repeats a number across reboots, without a write to
//! persistent storage per message (OSCORE, RFC 8613 appendix B.1.1).
//!
//! Storage holds a *bound*: every number handed out is below the persisted bound. At boot the
//! counter starts at the stored bound (skipping whatever was unused before the reset) and, before
//! the first number, asks for the bound to move `step` further. When the numbers reach the
//! bound it asks again. So storage is written once every `step` messages, a reset loses at most
//! `step` numbers, and a number is never handed out before a bound above it is durable.
//!
//! The counter is a pure state machine: [`SeqCounter::next_seq`] returns either a number to use or
//! the bound to persist; the caller writes it, then confirms with [`SeqCounter::persisted`].
//!
//! ```
//! use core::num::NonZeroU64;
//! use iotsec_msg::seq::{Next, SeqCounter};
//! let mut stored: Option<u64> = None; // what the flash holds
//! let mut c = SeqCounter::boot(stored, NonZeroU64::new(100).unwrap());
//! let seq = loop {
//!     match c.next_seq().unwrap() {
//!         Next::Use(n) => break n,
//!         Next::Persist(bound) => { stored = Some(bound); c.persisted(bound); }
//!     }
//! };
//! assert_eq!((seq, stored), (0, Some(100)));
//! ```

use core::num::NonZeroU64;

use crate::error::Error;

/// What the counter needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Use this sequence number (already counted: it will not be handed out again).
    Use(u64),
    /// Write this bound to persistent storage, then call [`SeqCounter::persisted`] with it.
    Persist(u64),
}

/// A persist-every-N, skip-ahead-at-boot sequence counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqCounter {
    next: u64,
    bound: u64,
    step: u64,
}

impl SeqCounter {
    /// Starts from the stored bound (`None` on first boot: start at 0).
    pub fn boot(stored: Option<u64>, step: NonZeroU64) -> Self {
        let start = stored.unwrap_or(0);
        SeqCounter {
            next: start,
            bound: start,
            step: step.get(),
        }
    }

    /// The next sequence number, or the bound that must be persisted first.
    pub fn next_seq(&mut self) -> Result<Next, Error> {
        if self.next < self.bound {
            let n = self.next;
            self.next += 1;
            return Ok(Next::Use(n));
        }
        let wanted = self.bound.saturating_add(self.step);
        if wanted == self.bound {
            return Err(Error::SeqExhausted);
        }
        Ok(Next::Persist(wanted))
    }

    /// Confirms that `bound` is durably stored. A bound not above the current one is ignored.
    pub fn persisted(&mut self, bound: u64) {
        if bound > self.bound {
            self.bound = bound;
        }
    }

    /// The number `next_seq` would hand out (if the bound allows).
    pub fn peek(&self) -> u64 {
        self.next
    }
}
