//! The content hashes of a compile's inputs (rustc and C) and of the files of the upstream
//! `OUT_DIR` trees a build-script run keys: memoized by [`MemoHasher`], and, for a generated file
//! in the target dir that names the unit's base dirs, the hash of its template (docs/design.md
//! §6e), so that the same generated file in another checkout matches.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::keying::{KeyError, MemoHasher};
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
/// only costs hits.
pub fn hash_inputs(
    hasher: &mut MemoHasher,
    paths: &[PathBuf],
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> Result<Vec<Key>, KeyError> {
    let mut hashes = hasher.hash_all(paths, update)?;
    for (path, hash) in paths.iter().zip(hashes.iter_mut()) {
        let bytes = path.as_os_str().as_bytes();
        let binary = [".rlib", ".rmeta", ".a", ".so", ".o"]
            .iter()
            .any(|ext| bytes.ends_with(ext.as_bytes()));
        if binary || bases.role_of(bytes) != Some(Role::Target) {
            continue;
        }
        let read = |path: &PathBuf| -> std::io::Result<Option<Vec<u8>>> {
            let meta = std::fs::metadata(path)?;
            if !meta.is_file() || meta.len() > TEMPLATED_INPUT_MAX {
                return Ok(None);
            }
            Ok(Some(std::fs::read(path)?))
        };
        let content = read(path).map_err(|source| KeyError::File {
            path: path.clone(),
            source,
        })?;
        if let Some(content) = content.filter(|content| bases.found_in(content)) {
            let mut key = KeyHasher::new("templated-input", KEY_VERSION);
            key.field("template", &bases.template(&content));
            *hash = key.finish();
        }
    }
    Ok(hashes)
}
