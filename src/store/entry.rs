//! The records kept in the index, and their serde encoding (postcard; see store-format/).
//!
//! - [`Manifest`]: under an invocation key, the candidates seen before, newest first.
//! - [`Entry`]: under a result key, the outputs (as blob references) and the captured output.

use serde::{Deserialize, Serialize};

use crate::hash::Key;
use crate::rustc::outputs::OutputKind;

/// One input file of a compile, as its dep-info named it, with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The path bytes exactly as in the dep-info (relative to the compile's cwd, or absolute).
    pub path: Vec<u8>,
    pub hash: Key,
}

/// One `# env-dep` variable and the value it had (`None`: unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub name: String,
    pub value: Option<String>,
}

/// A manifest candidate: the inputs of one earlier compile, and where its outputs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub inputs: Vec<InputRecord>,
    pub env_deps: Vec<EnvRecord>,
    /// Informational: a reader recomputes the result key and never trusts this one.
    pub result_key: Key,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub candidates: Vec<Candidate>,
}

/// One output file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// File name relative to the out dir.
    pub name: String,
    pub kind: OutputKind,
    pub blob: Key,
    pub size: u64,
    pub mode: u32,
}

impl OutputRecord {
    /// The blob this output references, if any (a directory of a run's tree has none).
    pub fn blob(&self) -> Option<Key> {
        (self.kind != OutputKind::RunDir).then_some(self.blob)
    }
}

/// A cached compile, or a cached build-script run (whose outputs are its `OUT_DIR` tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub outputs: Vec<OutputRecord>,
    pub stdout: Vec<u8>,
    /// Captured stderr, byte for byte; artifact notifications are rewritten on replay.
    pub stderr: Vec<u8>,
    /// The out dir of the compile that produced this entry, as passed to rustc; the `.d` file's
    /// target paths start with it and are rewritten for the restoring invocation.
    pub out_dir: Vec<u8>,
    pub compile_ms: u64,
    pub created_unix_ms: u64,
}

/// Encodes a record with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encoding of plain data does not fail")
}

/// Decodes a record; an error means a corrupt or foreign value.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entry = Entry {
            outputs: vec![OutputRecord {
                name: "libdemo.rlib".into(),
                kind: OutputKind::Rlib,
                blob: [7; 32],
                size: 42,
                mode: 0o644,
            }],
            stdout: vec![],
            stderr: b"warning".to_vec(),
            out_dir: b"/o".to_vec(),
            compile_ms: 5,
            created_unix_ms: 6,
        };
        let bytes = encode(&entry);
        assert_eq!(decode::<Entry>(&bytes).unwrap(), entry);
        assert!(decode::<Entry>(&bytes[..bytes.len() / 2]).is_err());
    }
}
