//! HTTP/1.x probe: a `GET /` and a parser for the status line and the headers that matter
//! (RFC 9112 §4 status line, RFC 9110 §11.6.1 WWW-Authenticate).

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

/// Header block size after which we stop waiting for the blank line and parse what we have.
const MAX_HEAD: usize = 16 * 1024;

/// Builds `GET / HTTP/1.1` with `Host` and `Connection: close`.
pub fn request(host: &str) -> Vec<u8> {
    // A Host value must not carry CR/LF; the target string was validated, but keep it safe.
    let host: String = host.chars().filter(|c| !c.is_control()).collect();
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: iotsec-scan\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// What an HTTP server answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase (printable characters only).
    pub reason: String,
    /// `Server` header.
    pub server: Option<String>,
    /// Authentication scheme from `WWW-Authenticate` (e.g. `Basic`), when the server asks.
    pub auth_scheme: Option<String>,
    /// Realm from `WWW-Authenticate`, when given.
    pub realm: Option<String>,
    /// `Location` header of a redirect.
    pub location: Option<String>,
}

impl HttpResponse {
    /// True when the server answered 401 or named an authentication scheme.
    pub fn requires_auth(&self) -> bool {
        self.status == 401 || self.auth_scheme.is_some()
    }
}

/// Parses a response head. `eof` says the peer closed, so a head without the blank line is
/// complete anyway.
pub fn parse_response(bytes: &[u8], eof: bool) -> Parse<HttpResponse> {
    if bytes.len() < 5 {
        return if !eof && b"HTTP/".starts_with(bytes) {
            Parse::Incomplete
        } else {
            Parse::NotThis
        };
    }
    if !bytes.starts_with(b"HTTP/") {
        return Parse::NotThis;
    }
    let head_end = find(bytes, b"\r\n\r\n").or_else(|| find(bytes, b"\n\n"));
    let head = match head_end {
        Some(end) => &bytes[..end],
        None if eof || bytes.len() >= MAX_HEAD => &bytes[..bytes.len().min(MAX_HEAD)],
        None => return Parse::Incomplete,
    };
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let Some(status_line) = lines.next() else {
        return Parse::NotThis;
    };
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let Some(status) = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
    else {
        return Parse::NotThis;
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1" | "HTTP/2" | "HTTP/2.0") {
        return Parse::NotThis;
    }
    let mut response = HttpResponse {
        version: version.to_owned(),
        status,
        reason: printable(parts.next().unwrap_or_default().as_bytes(), 80),
        server: None,
        auth_scheme: None,
        realm: None,
        location: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "server" => response.server = Some(printable(value.as_bytes(), 120)),
            "location" => response.location = Some(printable(value.as_bytes(), 200)),
            "www-authenticate" if response.auth_scheme.is_none() => {
                let scheme = value.split([' ', ',']).next().unwrap_or_default();
                response.auth_scheme = Some(printable(scheme.as_bytes(), 40));
                response.realm = realm(value);
            }
            _ => {}
        }
    }
    Parse::Done(response)
}

fn realm(challenge: &str) -> Option<String> {
    let lower = challenge.to_ascii_lowercase();
    let at = lower.find("realm=")? + "realm=".len();
    let rest = challenge.get(at..)?;
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => rest.split([',', ' ']).next().unwrap_or_default(),
    };
    Some(printable(value.as_bytes(), 80))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_auth_challenge() {
        // In the form Python's http.server sends a Basic challenge.
        let bytes = b"HTTP/1.0 401 Unauthorized\r\nServer: BaseHTTP/0.6 Python/3.11.2\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nWWW-Authenticate: Basic realm=\"camera\"\r\nContent-Length: 0\r\n\r\n";
        let Parse::Done(r) = parse_response(bytes, false) else {
            panic!("not parsed")
        };
        assert_eq!(r.status, 401);
        assert_eq!(r.server.as_deref(), Some("BaseHTTP/0.6 Python/3.11.2"));
        assert_eq!(r.auth_scheme.as_deref(), Some("Basic"));
        assert_eq!(r.realm.as_deref(), Some("camera"));
        assert!(r.requires_auth());
    }

    #[test]
    fn parses_plain_ok_and_redirect() {
        let ok =
            b"HTTP/1.1 200 OK\r\nServer: lighttpd/1.4.69\r\nContent-Type: text/html\r\n\r\n<html>";
        let Parse::Done(r) = parse_response(ok, false) else {
            panic!()
        };
        assert_eq!(r.status, 200);
        assert!(!r.requires_auth());
        let redirect = b"HTTP/1.1 301 Moved Permanently\nLocation: https://x/\n\n";
        let Parse::Done(r) = parse_response(redirect, false) else {
            panic!()
        };
        assert_eq!(r.location.as_deref(), Some("https://x/"));
    }

    #[test]
    fn incomplete_until_blank_line_or_eof() {
        let head = b"HTTP/1.1 200 OK\r\nServer: x\r\n";
        assert_eq!(parse_response(head, false), Parse::Incomplete);
        assert!(matches!(parse_response(head, true), Parse::Done(_)));
        assert_eq!(parse_response(b"HTT", false), Parse::Incomplete);
        assert_eq!(parse_response(b"HTT", true), Parse::NotThis);
    }

    #[test]
    fn rejects_non_http() {
        assert_eq!(parse_response(b"SSH-2.0-x\r\n", false), Parse::NotThis);
        assert_eq!(
            parse_response(b"HTTP/1.1 abc\r\n\r\n", false),
            Parse::NotThis
        );
        assert_eq!(
            parse_response(b"HTTP/9 200 OK\r\n\r\n", false),
            Parse::NotThis
        );
    }

    #[test]
    fn request_strips_control_characters() {
        let r = request("a\r\nX-Evil: 1");
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("Host: aX-Evil: 1\r\n"));
    }
}
