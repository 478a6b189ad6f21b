//! Newtypes for the identifiers that appear in stored records and object
//! names, so a host id can never be passed where a stream id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Identifiers become path and object-name components, so they are limited
/// to characters that are safe in every store and shell.
fn check_name(what: &'static str, value: &str) -> Result<(), IdError> {
    let err = |why| IdError {
        what,
        value: value.to_string(),
        why,
    };
    if value.is_empty() || value.len() > 128 {
        return Err(err("must be 1 to 128 characters"));
    }
    if value.starts_with('.') || value.starts_with('-') {
        return Err(err("must not start with '.' or '-'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(err("may contain only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_name($what, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_id!(
    /// The host that produced a record: the first component of every object
    /// name, so one host's records can be kept apart from another's.
    HostId,
    "host id"
);
name_id!(
    /// One hash chain of segments within a host: a source of one category.
    StreamId,
    "stream id"
);
name_id!(
    /// One run of an agent (a UUID v4, new at each start), so that a restart
    /// shows in the records as a change of instance rather than as a gap.
    InstanceId,
    "instance id"
);

impl InstanceId {
    /// A fresh random instance id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom_fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }
}

fn getrandom_fill(buf: &mut [u8]) {
    use ssh_key::rand_core::{OsRng, RngCore};
    OsRng.fill_bytes(buf);
}

/// Position of a segment in its stream, from 0 without gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SegmentSeq(pub u64);

impl fmt::Display for SegmentSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SHA-256 value; written everywhere as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn digest(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }
    pub fn from_hasher(h: sha2::Sha256) -> Self {
        Self(h.finalize().into())
    }
    /// Lowercase hex, two digits a byte. Written by table, not through
    /// `hex::encode`'s char iterator: reports hex one hash per cited line.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}
impl FromStr for Sha256 {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = |why| IdError {
            what: "sha256",
            value: s.to_string(),
            why,
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("must be 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| err("not hex"))?;
        Ok(Self(out))
    }
}
impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The four kinds of log the regulations name (REQUIREMENTS.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Os,
    Web,
    App,
    Logon,
}

impl Category {
    pub const ALL: [Category; 4] = [Category::Os, Category::Web, Category::App, Category::Logon];
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Os => "os",
            Category::Web => "web",
            Category::App => "app",
            Category::Logon => "logon",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(IdError {
                what: "category",
                value: s.to_string(),
                why: "must be one of os, web, app, logon",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;

    #[test]
    fn to_hex_is_lowercase_hex_of_every_byte() {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37).wrapping_add(0xa5);
        }
        assert_eq!(Sha256(b).to_hex(), hex::encode(b));
        assert_eq!(Sha256([0xff; 32]).to_hex(), "f".repeat(64));
    }
}
