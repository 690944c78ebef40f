//! Who may call what: bearer keys, each with a role.
//!
//! Keys come from a key file (`--keys FILE`: one `ROLE KEY` per line, `#`
//! comments) or the environment (`REFSTORE_KEYS="admin:KEY,reader:KEY"`).
//! A presented key is compared with every known key in constant time (the
//! SHA-256 digests, with `subtle`), so neither its content nor which key
//! it nearly matched shows in the response time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do; each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read documents, search, follow jobs.
    Reader,
    /// Also add and import documents, audit and sync (reconcile modes that
    /// delete nothing), and dry runs of any mode.
    Writer,
    /// Also delete documents, rebuild, and reconcile with deletion
    /// (`clean`, `full`).
    Admin,
}

impl Role {
    /// Parses `reader`, `writer` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// The shortest key accepted: a key an attacker can guess is no key.
pub const MIN_KEY_LEN: usize = 16;

/// The known keys (only their digests are kept).
#[derive(Clone)]
pub struct Keys {
    keys: Vec<([u8; 32], Role)>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({} keys)", self.keys.len())
    }
}

impl Keys {
    /// Parses a key file: one `ROLE KEY` per line; blank lines and lines
    /// starting with `#` are ignored. Errors name the line.
    pub fn parse_file(text: &str) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(role), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!("line {}: expected `ROLE KEY`", number + 1));
            };
            keys.push(Self::entry(role, key).map_err(|e| format!("line {}: {e}", number + 1))?);
        }
        Self::from_entries(keys)
    }

    /// Parses `ROLE:KEY[,ROLE:KEY...]` (the `REFSTORE_KEYS` variable).
    pub fn parse_list(text: &str) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for (number, item) in text.split(',').map(str::trim).filter(|i| !i.is_empty()).enumerate() {
            let Some((role, key)) = item.split_once(':') else {
                return Err(format!("entry {}: expected `ROLE:KEY`", number + 1));
            };
            keys.push(Self::entry(role, key).map_err(|e| format!("entry {}: {e}", number + 1))?);
        }
        Self::from_entries(keys)
    }

    fn entry(role: &str, key: &str) -> Result<([u8; 32], Role), String> {
        let role = Role::parse(role).ok_or_else(|| format!("unknown role {role:?} (reader, writer or admin)"))?;
        if key.len() < MIN_KEY_LEN {
            return Err(format!("a key must be at least {MIN_KEY_LEN} characters"));
        }
        Ok((digest(key), role))
    }

    fn from_entries(keys: Vec<([u8; 32], Role)>) -> Result<Keys, String> {
        if keys.is_empty() {
            return Err("no keys".to_string());
        }
        Ok(Keys { keys })
    }

    /// The role of `presented`, if it is a known key. Every known key is
    /// compared, in constant time, whatever matched.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let presented = digest(presented);
        let mut found = None;
        for (key, role) in &self.keys {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(found.map_or(*role, |r: Role| r.max(*role)));
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_gives_each_key_its_role_and_nothing_else_one() {
        let keys = Keys::parse_file("# keys\nreader rrrrrrrrrrrrrrrr\n\nadmin aaaaaaaaaaaaaaaa\n").unwrap();
        assert_eq!(keys.role_of("rrrrrrrrrrrrrrrr"), Some(Role::Reader));
        assert_eq!(keys.role_of("aaaaaaaaaaaaaaaa"), Some(Role::Admin));
        assert_eq!(keys.role_of("aaaaaaaaaaaaaaa"), None);
        assert_eq!(keys.role_of(""), None);
    }

    #[test]
    fn bad_key_lists_are_refused_with_where() {
        assert_eq!(
            Keys::parse_list("writer:wwwwwwwwwwwwwwww,boss:bbbbbbbbbbbbbbbb").unwrap_err(),
            "entry 2: unknown role \"boss\" (reader, writer or admin)"
        );
        assert!(Keys::parse_list("admin:short").unwrap_err().contains("at least 16"));
        assert_eq!(Keys::parse_file("admin\n").unwrap_err(), "line 1: expected `ROLE KEY`");
        assert_eq!(Keys::parse_list(" , ").unwrap_err(), "no keys");
        let keys = Keys::parse_list("writer:wwwwwwwwwwwwwwww").unwrap();
        assert_eq!(keys.role_of("wwwwwwwwwwwwwwww"), Some(Role::Writer));
    }
}
