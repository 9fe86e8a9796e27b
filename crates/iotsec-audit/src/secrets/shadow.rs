//! Password hashes in `shadow` / `passwd` files (crypt(3) formats).

/// What the second field of a shadow/passwd line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// No password at all: anyone can log in.
    Empty,
    /// Traditional DES crypt (13 characters, 8-character passwords, brute-forced in hours).
    Des,
    /// MD5 crypt (`$1$`).
    Md5,
    /// Locked, disabled or stored elsewhere (`x`, `*`, `!…`).
    Locked,
    /// A current scheme (SHA-256/512 crypt, bcrypt, scrypt, yescrypt) or one we do not know.
    Acceptable,
}

impl HashScheme {
    /// Name for evidence.
    pub fn name(self) -> &'static str {
        match self {
            HashScheme::Empty => "empty password field",
            HashScheme::Des => "DES crypt",
            HashScheme::Md5 => "MD5 crypt ($1$)",
            HashScheme::Locked => "locked",
            HashScheme::Acceptable => "acceptable",
        }
    }
}

/// Classifies a crypt(3) hash field.
pub fn classify(hash: &str) -> HashScheme {
    if hash.is_empty() {
        return HashScheme::Empty;
    }
    if hash == "x" || hash.starts_with('*') || hash.starts_with('!') {
        return HashScheme::Locked;
    }
    if hash.starts_with("$1$") {
        return HashScheme::Md5;
    }
    if hash.len() == 13
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return HashScheme::Des;
    }
    HashScheme::Acceptable
}

/// `(line number, user, scheme)` for every weak or empty entry of a shadow or passwd file.
pub fn weak_entries(text: &str) -> Vec<(u64, String, HashScheme)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(user), Some(hash)) = (fields.next(), fields.next()) else {
            continue;
        };
        let scheme = classify(hash);
        if matches!(
            scheme,
            HashScheme::Empty | HashScheme::Des | HashScheme::Md5
        ) {
            out.push((i as u64 + 1, user.to_owned(), scheme));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_schemes() {
        let text = "root:$1$abc$xyz:19000:0:99999:7:::\n\
                    admin::19000::::::\n\
                    daemon:*:19000::::::\n\
                    user:$6$salt$hash:19000::::::\n\
                    old:abJnggxhB/yWI:1:::\n\
                    y:$y$j9T$abc:1:::\n";
        let weak = weak_entries(text);
        let got: Vec<(u64, &str, HashScheme)> =
            weak.iter().map(|(l, u, s)| (*l, u.as_str(), *s)).collect();
        assert_eq!(
            got,
            vec![
                (1, "root", HashScheme::Md5),
                (2, "admin", HashScheme::Empty),
                (5, "old", HashScheme::Des)
            ]
        );
    }
}
