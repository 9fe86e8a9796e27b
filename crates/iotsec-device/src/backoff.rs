//! Reconnect delays: exponential backoff with jitter ("equal jitter": half the exponential
//! delay, plus a random part of the other half), capped. No clock, no randomness source of
//! its own: the shell passes a random number, so the delays are testable.
//!
//! Jitter keeps a fleet from reconnecting in lockstep after a broker restart; the floor of
//! half the delay keeps a single device from hammering a broker that refuses it (a revoked
//! certificate is refused on every attempt, and the device keeps trying at the cap).

use std::time::Duration;

/// Backoff state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    /// 500 ms doubling to a 30 s cap.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The delay before the next attempt after one more failure; `random` is any random
    /// number (uniform over `u64`).
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let half = exp / 2;
        let span = u64::try_from((exp - half).as_micros()).unwrap_or(u64::MAX);
        let jitter = span.checked_add(1).map_or(random, |m| random % m);
        half + Duration::from_micros(jitter)
    }

    /// A connection succeeded: start over from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_grow_stay_jittered_and_capped(randoms in proptest::collection::vec(any::<u64>(), 1..40)) {
            let mut b = Backoff::default();
            for (i, r) in randoms.iter().enumerate() {
                let exp = Duration::from_millis(500)
                    .saturating_mul(1 << i.min(20))
                    .min(Duration::from_secs(30));
                let d = b.next_delay(*r);
                prop_assert!(d >= exp / 2 && d <= exp, "attempt {}: {:?} vs {:?}", i, d, exp);
                prop_assert!(d <= Duration::from_secs(30));
            }
            b.reset();
            prop_assert!(b.next_delay(u64::MAX) <= Duration::from_millis(500));
        }
    }

    #[test]
    fn reaches_the_cap() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay(0)).collect();
        assert_eq!(d[0], Duration::from_millis(250));
        assert_eq!(d[9], Duration::from_secs(15));
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
    }
}
