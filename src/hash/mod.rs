//! The low-level hashing every layer above builds on: blake3 [`Key`]s, the tagged field
//! encoding of [`KeyHasher`], and [`file_hash`] (file contents and the stat stamp that memoizes
//! them). Imports no other module of the crate, so the store can hash without knowing keys.
//!
//! Tagged, length-prefixed key hashing is the stable encoding every cache key is built from.
//! Deliberately not `std::hash::Hash`: a key must be identical across releases, platforms and
//! processes. Every field is written as `tag_len:u32le, tag, value_len:u64le, value`, so no two
//! different field sequences can produce the same byte stream.

pub mod file_hash;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// A 32-byte blake3 key.
pub type Key = [u8; 32];

/// Builds a key from tagged fields.
pub struct KeyHasher {
    hasher: blake3::Hasher,
}

impl KeyHasher {
    /// Starts a key of the given kind (`"invocation"`, `"result"`, ...) under `version`.
    pub fn new(kind: &str, version: u32) -> Self {
        let mut key = KeyHasher {
            hasher: blake3::Hasher::new(),
        };
        key.field("kind", kind.as_bytes());
        key.field("version", &version.to_le_bytes());
        key
    }

    /// Adds one tagged field.
    pub fn field(&mut self, tag: &str, value: &[u8]) -> &mut Self {
        self.hasher.update(&(tag.len() as u32).to_le_bytes());
        self.hasher.update(tag.as_bytes());
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self
    }

    pub fn str_field(&mut self, tag: &str, value: &str) -> &mut Self {
        self.field(tag, value.as_bytes())
    }

    pub fn os_field(&mut self, tag: &str, value: &OsStr) -> &mut Self {
        self.field(tag, value.as_bytes())
    }

    /// An optional value: absent and empty are different fields.
    pub fn opt_field(&mut self, tag: &str, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(value) => self.field(tag, value),
            None => self.field(&format!("{tag}:unset"), b""),
        }
    }

    pub fn finish(&self) -> Key {
        *self.hasher.finalize().as_bytes()
    }
}

/// Lowercase hex of a key, for logs and events.
pub fn hex(key: &Key) -> String {
    blake3::Hash::from_bytes(*key).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_matter() {
        let a = KeyHasher::new("t", 1).field("a", b"bc").finish();
        let b = KeyHasher::new("t", 1).field("ab", b"c").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn unset_differs_from_empty() {
        let a = KeyHasher::new("t", 1).opt_field("v", None).finish();
        let b = KeyHasher::new("t", 1).opt_field("v", Some(b"")).finish();
        assert_ne!(a, b);
    }
}
