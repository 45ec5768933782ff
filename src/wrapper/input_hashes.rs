//! The content hashes of a compile's inputs (rustc and C) and of the files of the upstream
//! `OUT_DIR` trees a build-script run keys: memoized by [`MemoHasher`], and, for a generated file
//! in the target dir that names the unit's base dirs, the hash of its template (docs/design.md
//! §6e), so that the same generated file in another checkout matches.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::keying::{KeyError, MemoHasher};
use crate::hash::file_hash::FileStamp;
use crate::hash::{Key, KeyHasher};
use crate::key::BaseDirs;
use crate::key::base_dirs::Role;
use crate::store::layout::KEY_VERSION;
use crate::store::state::StateUpdate;

/// Inputs that a generated file may name by absolute path: text in the target dir (an
/// `OUT_DIR`'s `include_str!("<OUT_DIR>/x")`), at most this large. Others are hashed as they are.
const TEMPLATED_INPUT_MAX: u64 = 16 << 20;

/// The content hashes of a compile's inputs. A file in the target dir that names one of the
/// unit's base dirs is hashed as its template (docs/design.md §6e): the same generated source in
/// another checkout, naming that checkout's `OUT_DIR`, matches. Sound because an output that
/// still held such a path would have made the candidate path-bound; leaving a file out of this
/// only costs hits. Those hashes are memoized too, per file stamp and base dirs, so a warm build
/// does not read its generated files again.
pub fn hash_inputs(
    hasher: &mut MemoHasher,
    paths: &[PathBuf],
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> Result<Vec<Key>, KeyError> {
    let may_name_dirs = |path: &PathBuf| {
        let bytes = path.as_os_str().as_bytes();
        let binary = [".rlib", ".rmeta", ".a", ".so", ".o"]
            .iter()
            .any(|ext| bytes.ends_with(ext.as_bytes()));
        !binary && bases.role_of(bytes) == Some(Role::Target)
    };
    let (generated, plain): (Vec<usize>, Vec<usize>) =
        (0..paths.len()).partition(|&position| may_name_dirs(&paths[position]));
    let mut hashes: Vec<Key> = vec![[0; 32]; paths.len()];
    let plain_paths: Vec<PathBuf> = plain.iter().map(|&at| paths[at].clone()).collect();
    for (at, hash) in plain.iter().zip(hasher.hash_all(&plain_paths, update)?) {
        hashes[*at] = hash;
    }
    if generated.is_empty() {
        return Ok(hashes);
    }
    let verbatim = bases.verbatim();
    let store = hasher.store();
    let rtxn = store.state.read_txn()?;
    for at in generated {
        let path = &paths[at];
        let file_error = |source| KeyError::File {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(file_error)?;
        if !meta.is_file() || meta.len() > TEMPLATED_INPUT_MAX {
            hashes[at] = hasher.hash(path, update)?;
            continue;
        }
        let stamp = FileStamp::of(&meta);
        let mut memo = KeyHasher::new("templated-input-memo", 1);
        memo.field("file", &stamp.memo_key(path));
        memo.field("base-dirs", &verbatim);
        let memo_key = memo.finish();
        if let Some(hash) = store.state.file_hash(&rtxn, &memo_key)? {
            hashes[at] = hash;
            continue;
        }
        let started = SystemTime::now();
        let content = std::fs::read(path).map_err(file_error)?;
        let hash = if bases.found_in(&content) {
            let mut key = KeyHasher::new("templated-input", KEY_VERSION);
            key.field("template", &bases.template(&content));
            key.finish()
        } else {
            *blake3::hash(&content).as_bytes()
        };
        if !stamp.is_racy(started) {
            update.file_hashes.push((memo_key, hash));
        }
        hashes[at] = hash;
    }
    Ok(hashes)
}
