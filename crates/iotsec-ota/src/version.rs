//! Semantic versions (SemVer 2.0.0) as firmware releases use them: `MAJOR.MINOR.PATCH` with an
//! optional pre-release (`1.4.0-rc.1`). Build metadata (`+...`) is refused: it does not order
//! releases (SemVer §10), so two releases differing only in it could not be told apart by the
//! downgrade check.

use alloc::string::String;
use core::cmp::Ordering;
use core::fmt;

use crate::error::Error;

/// Longest accepted version text, in bytes.
pub const MAX_VERSION_LEN: usize = 64;

/// A parsed, validated semantic version. Equality is precedence equality (no build metadata).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    /// Pre-release identifiers joined by `.`, empty for a release.
    pre: String,
}

impl Version {
    /// A release version without pre-release.
    #[must_use]
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: String::new(),
        }
    }

    /// Parses `MAJOR.MINOR.PATCH[-PRE]` strictly (no leading zeros, no `v` prefix, ASCII).
    ///
    /// # Errors
    /// [`Error::Malformed`] with the reason.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const WHAT: &str = "version";
        if text.is_empty() || text.len() > MAX_VERSION_LEN {
            return Err(Error::malformed(WHAT, "must be 1 to 64 bytes"));
        }
        if text.contains('+') {
            return Err(Error::malformed(
                WHAT,
                "build metadata (+...) is not allowed",
            ));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = core.split('.');
        let mut number = || -> Result<u64, Error> {
            let part = parts
                .next()
                .ok_or(Error::malformed(WHAT, "needs MAJOR.MINOR.PATCH"))?;
            numeric(part).ok_or(Error::malformed(
                WHAT,
                "MAJOR, MINOR and PATCH must be numbers without leading zeros",
            ))
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if parts.next().is_some() {
            return Err(Error::malformed(WHAT, "needs exactly MAJOR.MINOR.PATCH"));
        }
        let pre = match pre {
            None => String::new(),
            Some(pre) => {
                for ident in pre.split('.') {
                    let valid = !ident.is_empty()
                        && ident
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && (ident.bytes().any(|b| !b.is_ascii_digit()) || numeric(ident).is_some());
                    if !valid {
                        return Err(Error::malformed(
                            WHAT,
                            "pre-release identifiers are [0-9A-Za-z-], non-empty, numeric ones without leading zeros",
                        ));
                    }
                }
                String::from(pre)
            }
        };
        Ok(Self {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// The major version.
    #[must_use]
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The pre-release part, if any.
    #[must_use]
    pub fn pre_release(&self) -> Option<&str> {
        (!self.pre.is_empty()).then_some(self.pre.as_str())
    }
}

/// A numeric identifier: ASCII digits, no leading zero unless it is `0`, fits in u64.
fn numeric(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

impl core::str::FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Ord for Version {
    /// SemVer §11 precedence.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release has lower precedence than the release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let x_num = x.bytes().all(|c| c.is_ascii_digit());
                let y_num = y.bytes().all(|c| c.is_ascii_digit());
                let order = match (x_num, y_num) {
                    // No leading zeros, so a longer number is larger.
                    (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    #[test]
    fn semver_spec_order() {
        // SemVer §11.4 example chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
            "10.0.0",
        ];
        let parsed: Vec<Version> = chain.iter().map(|v| Version::parse(v).unwrap()).collect();
        for pair in parsed.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        for (text, v) in chain.iter().zip(&parsed) {
            assert_eq!(&v.to_string(), text);
        }
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3+build",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3-ä",
            " 1.2.3",
            "1.2.-3",
            "99999999999999999999.0.0",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
