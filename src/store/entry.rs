//! The records kept in the index, and their serde encoding (postcard; see store-format/).
//!
//! - [`Manifest`]: under an invocation key, the candidates seen before, newest first.
//! - [`Entry`]: under a result key, the outputs (as blob references) and the captured output.
//! - [`OutputKind`]: what each output is (rustc, C/C++ or build-script), which decides its restore.

use serde::{Deserialize, Serialize};

use crate::hash::Key;

/// What an output file is, which decides how it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputKind {
    /// `.rlib`: written by rename, immutable: hard-linked from the store.
    Rlib,
    /// `.rmeta`: written by rename, but restored by copy so that it carries a fresh mtime.
    Rmeta,
    /// `.d`: rewritten in place by rustc, and its target paths name the out dir: copied, rewritten.
    DepInfo,
    /// A linked executable or shared object, or a staticlib archive: copied, keeping its mode,
    /// with a fresh mtime (cargo compares the newest output of each unit with its dependencies').
    Linked,
    /// A regular file a build-script run left in its `OUT_DIR` (the name is its path relative to
    /// `OUT_DIR`): copied back with its mode.
    RunFile,
    /// A directory in a run's `OUT_DIR`: recreated with its mode; it references no blob.
    RunDir,
    /// A symlink in a run's `OUT_DIR`: its blob holds the link target's bytes.
    RunSymlink,
    /// A C or C++ compile's object file (`-o`): copied, keeping its mode, with a fresh mtime.
    /// The name is the `-o` path the storing compile was given; a restore writes to its own.
    CcObject,
    /// The dep file a C compile's caller asked for (`-MD`/`-MMD`): copied, with the target of
    /// its rule rewritten from the entry's `out_dir` field to the restoring compile's target.
    CcDepFile,
    /// The `.dwo` file of a `-gsplit-dwarf` C compile: copied beside the object.
    CcSplitDwarf,
    /// A text file a build-script run left in its `OUT_DIR` that names the run's base dirs (an
    /// `include_str!` of an absolute `OUT_DIR` path): its blob is the template, and a restore
    /// writes it with the restoring run's dirs (docs/design.md §6e).
    RunFileTemplate,
}

/// One input file of a compile, as its dep-info named it, with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The path bytes exactly as in the dep-info (relative to the compile's cwd, or absolute).
    pub path: Vec<u8>,
    pub hash: Key,
}

/// One `# env-dep` variable and the value it had (`None`: unset), base dirs templated
/// (store-format/README.md §5.3).
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
    /// Why the outputs hold the storing unit's own paths (`key::base_dirs::PathBound`): the
    /// result key then adds the looking-up unit's real base dirs. `None`: shared by every layout.
    pub path_bound: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub candidates: Vec<Candidate>,
}

/// One output file of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// File name relative to the out dir (a build-script run: the path relative to `OUT_DIR`; a
    /// C compile: the path the storing compile wrote, informational).
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

/// A cached rustc or C compile, or a cached build-script run (whose outputs are its `OUT_DIR`
/// tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub outputs: Vec<OutputRecord>,
    pub stdout: Vec<u8>,
    /// Captured stderr, byte for byte; artifact notifications are rewritten on replay.
    pub stderr: Vec<u8>,
    /// The out dir of the compile that produced this entry, as passed to rustc; the `.d` file's
    /// target paths start with it and are rewritten for the restoring invocation. A build-script
    /// run: its `OUT_DIR`. A C compile: the target text of the caller's dep file, empty without
    /// one (store-format/README.md §2).
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
