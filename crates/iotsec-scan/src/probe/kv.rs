//! Unauthenticated data stores: Redis (RESP, inline commands) and memcached (text protocol).
//!
//! One probe serves both: `PING\r\nversion\r\n`. Redis answers `+PONG` (open), `-NOAUTH`
//! (password set) or `-DENIED` (protected mode); memcached answers `ERROR` to `PING` and
//! `VERSION x.y.z` to `version`.

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

/// The shared probe.
pub const PROBE: &[u8] = b"PING\r\nversion\r\n";

/// Whether a Redis server let us in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisAccess {
    /// Commands run without authentication.
    Open,
    /// `-NOAUTH`: a password is set.
    AuthRequired,
    /// `-DENIED`: protected mode refused a non-loopback client.
    ProtectedMode,
}

/// What answered the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "snake_case")]
pub enum KvReply {
    /// Redis.
    Redis {
        /// Access level.
        access: RedisAccess,
    },
    /// memcached.
    Memcached {
        /// Version string, when `version` was answered.
        version: Option<String>,
        /// True when the text protocol answered `CLIENT_ERROR unauthenticated` (SASL on).
        auth_required: bool,
    },
}

/// Parses the reply to [`PROBE`]. `eof` says the peer closed.
pub fn parse_reply(bytes: &[u8], eof: bool) -> Parse<KvReply> {
    let Some(first_end) = bytes.iter().position(|&b| b == b'\n') else {
        return if !eof && bytes.len() < 64 && could_be(bytes) {
            Parse::Incomplete
        } else {
            Parse::NotThis
        };
    };
    let first = bytes[..first_end]
        .strip_suffix(b"\r")
        .unwrap_or(&bytes[..first_end]);
    if first == b"+PONG" {
        return Parse::Done(KvReply::Redis {
            access: RedisAccess::Open,
        });
    }
    if first.starts_with(b"-NOAUTH") || first.starts_with(b"-WRONGPASS") {
        return Parse::Done(KvReply::Redis {
            access: RedisAccess::AuthRequired,
        });
    }
    if first.starts_with(b"-DENIED") {
        return Parse::Done(KvReply::Redis {
            access: RedisAccess::ProtectedMode,
        });
    }
    if first.starts_with(b"CLIENT_ERROR") && contains(first, b"unauthenticated") {
        return Parse::Done(KvReply::Memcached {
            version: None,
            auth_required: true,
        });
    }
    if first == b"ERROR" {
        // memcached: the second line answers `version`.
        let rest = &bytes[first_end + 1..];
        let Some(second_end) = rest.iter().position(|&b| b == b'\n') else {
            return if eof {
                Parse::NotThis
            } else {
                Parse::Incomplete
            };
        };
        let second = rest[..second_end]
            .strip_suffix(b"\r")
            .unwrap_or(&rest[..second_end]);
        if let Some(v) = second.strip_prefix(b"VERSION ") {
            return Parse::Done(KvReply::Memcached {
                version: Some(printable(v, 40)),
                auth_required: false,
            });
        }
        return Parse::NotThis;
    }
    Parse::NotThis
}

fn could_be(prefix: &[u8]) -> bool {
    const STARTS: [&[u8]; 6] = [
        b"+PONG",
        b"-NOAUTH",
        b"-WRONGPASS",
        b"-DENIED",
        b"ERROR",
        b"CLIENT_ERROR",
    ];
    STARTS.iter().any(|s| {
        let n = prefix.len().min(s.len());
        prefix[..n] == s[..n]
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_answers() {
        // Replies in the form redis-server 7 sends them (no password, then requirepass set).
        let open = b"+PONG\r\n-ERR unknown command 'version', with args beginning with: \r\n";
        assert_eq!(
            parse_reply(open, false),
            Parse::Done(KvReply::Redis {
                access: RedisAccess::Open
            })
        );
        let auth = b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n";
        assert_eq!(
            parse_reply(auth, false),
            Parse::Done(KvReply::Redis {
                access: RedisAccess::AuthRequired
            })
        );
        let denied =
            b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n";
        assert!(matches!(
            parse_reply(denied, true),
            Parse::Done(KvReply::Redis {
                access: RedisAccess::ProtectedMode
            })
        ));
    }

    #[test]
    fn memcached_answers() {
        // Reply in the form memcached 1.6 sends it.
        let b = b"ERROR\r\nVERSION 1.6.18\r\n";
        assert_eq!(
            parse_reply(b, false),
            Parse::Done(KvReply::Memcached {
                version: Some("1.6.18".into()),
                auth_required: false
            })
        );
        assert_eq!(parse_reply(b"ERROR\r\n", false), Parse::Incomplete);
        assert_eq!(parse_reply(b"ERROR\r\n", true), Parse::NotThis);
    }

    #[test]
    fn others() {
        assert_eq!(parse_reply(b"+PO", false), Parse::Incomplete);
        assert_eq!(parse_reply(b"HTTP/1.1 400\r\n", false), Parse::NotThis);
        assert_eq!(parse_reply(b"", true), Parse::NotThis);
    }
}
