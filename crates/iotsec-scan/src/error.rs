//! The crate's error type.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

/// Everything that can stop a scan. Findings are not errors: they are results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    // --- the user's input ---
    /// A port specification does not parse.
    #[error("invalid port specification `{spec}`: {reason}")]
    PortSpec {
        /// What was given.
        spec: String,
        /// Why it is wrong.
        reason: String,
    },
    /// Nothing left to scan after exclusions.
    #[error("no ports to scan (the port list is empty after exclusions)")]
    NoPorts,
    /// The target is not an address or a host name.
    #[error("invalid target `{input}`: {reason}")]
    Target {
        /// What was given.
        input: String,
        /// Why it is wrong.
        reason: String,
    },
    /// The target is a broadcast, multicast or unspecified address.
    #[error("refusing to scan {addr}: it is a {kind} address, not a host")]
    ForbiddenTarget {
        /// The address.
        addr: IpAddr,
        /// `broadcast`, `multicast` or `unspecified`.
        kind: &'static str,
    },
    /// The host name did not resolve.
    #[error("cannot resolve `{host}`")]
    Resolve {
        /// The host name.
        host: String,
        /// Resolver error.
        #[source]
        source: io::Error,
    },
    /// The policy file cannot be read.
    #[error("cannot read policy file {}", path.display())]
    PolicyRead {
        /// Path given.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: io::Error,
    },
    /// The policy file is not valid.
    #[error("invalid policy file {}: {reason}", path.display())]
    Policy {
        /// Path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    // --- the environment ---
    /// Sockets could not be created even after backing off (file-descriptor or port exhaustion).
    #[error(
        "cannot open sockets to scan port {port} after backing off: the open-file or ephemeral-port limit is exhausted"
    )]
    NoSockets {
        /// The port being retried.
        port: u16,
        /// Last error.
        #[source]
        source: io::Error,
    },
    /// An operating-system call failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
