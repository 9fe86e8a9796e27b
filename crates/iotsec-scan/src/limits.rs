//! File-descriptor budget. Every socket in flight is a descriptor, so the open-file limit bounds
//! the sweep's concurrency. The soft limit is raised to the hard limit when allowed.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept free for the runtime, stdio, files and the resolver.
pub const RESERVE: usize = 24;

/// Highest soft limit we ask for (enough for any sweep window).
const WANT: u64 = 1 << 16;

/// The open-file budget after trying to raise the soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FdBudget {
    /// Soft limit in force.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// Descriptors already open in this process.
    pub in_use: usize,
    /// Descriptors the scan may use (soft - in use - reserve, at least 8).
    pub available: usize,
}

/// Raises `RLIMIT_NOFILE`'s soft limit towards the hard limit (never above 65536) and
/// returns the budget. Failure to raise is not an error: the budget is just smaller.
pub fn raise_nofile() -> FdBudget {
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let target = hard.min(WANT);
    if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        soft = target;
    }
    let in_use = open_descriptors();
    let free = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_use + RESERVE);
    FdBudget {
        soft,
        hard,
        in_use,
        available: free.max(8),
    }
}

/// Number of open descriptors (entries of `/proc/self/fd`; a generous guess elsewhere).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_below_soft_limit() {
        let b = raise_nofile();
        assert!(b.soft <= b.hard);
        assert!(b.available as u64 <= b.soft);
        assert!(b.in_use >= 3);
    }
}
