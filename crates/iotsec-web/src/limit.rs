//! Rate limiting of failed authentications per client IP (no I/O, the caller passes `now`).
//!
//! Every request that presents a bearer token that does not verify counts as a failure. An
//! address with `max` failures within the last `window` is blocked until the oldest of them
//! leaves the window: its token requests then get 429 *without being checked*, so a blocked
//! client cannot learn whether a guess was right. Requests without credentials are not
//! counted (they guess nothing); client certificates are checked by TLS and are not limited.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond this the stalest are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failed-authentication counter.
#[derive(Debug)]
pub struct FailedAuth {
    max: u32,
    window: Duration,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl FailedAuth {
    /// `max` failures per `window` and address.
    pub fn new(max: u32, window: Duration) -> FailedAuth {
        FailedAuth {
            max: max.max(1),
            window,
            failures: HashMap::new(),
        }
    }

    fn prune(&mut self, ip: IpAddr, now: Instant) {
        if let Some(q) = self.failures.get_mut(&ip) {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(&ip);
            }
        }
    }

    /// `Some(wait)` when `ip` is blocked now: how long until it may try again.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.prune(ip, now);
        let q = self.failures.get(&ip)?;
        if q.len() < self.max as usize {
            return None;
        }
        let oldest = *q.front()?;
        Some(
            self.window
                .saturating_sub(now.saturating_duration_since(oldest)),
        )
    }

    /// Records a failed authentication from `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) {
        self.prune(ip, now);
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&ip) {
            let window = self.window;
            self.failures.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.failures.len() >= MAX_TRACKED {
                // Still full of active addresses: forget the one whose last failure is oldest.
                if let Some(stalest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(ip, _)| *ip)
                {
                    self.failures.remove(&stalest);
                }
            }
        }
        let q = self.failures.entry(ip).or_default();
        q.push_back(now);
        // Only the newest `max` matter.
        while q.len() > self.max as usize {
            q.pop_front();
        }
    }

    /// Number of addresses tracked (tests).
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let mut l = FailedAuth::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.blocked(ip, t0 + Duration::from_secs(i)).is_none());
            l.fail(ip, t0 + Duration::from_secs(i));
        }
        let wait = l.blocked(ip, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.blocked(other, t0 + Duration::from_secs(10)).is_none());
        // The first failure leaves the window at t0+60: one more try allowed.
        assert!(l.blocked(ip, t0 + Duration::from_secs(60)).is_none());
        l.fail(ip, t0 + Duration::from_secs(60));
        assert!(l.blocked(ip, t0 + Duration::from_secs(60)).is_some());
        assert!(l.blocked(ip, t0 + Duration::from_secs(200)).is_none());
        assert_eq!(l.tracked(), 0, "expired entries are dropped");
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = FailedAuth::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let ip = IpAddr::from(i.to_be_bytes());
            l.fail(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(l.tracked() <= MAX_TRACKED);
    }
}
