//! A C hit: check every blob, then write the object, the caller's dep file (its target
//! rewritten for this compile) and the `.dwo`, each under a temp name renamed into place.
//!
//! All are copies (reflinks where the filesystem has them), never hard links: build tools
//! edit objects in place (`strip`, `objcopy`), and each restored file needs a fresh mtime for
//! make-style freshness checks.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::cc::args::CcInvocation;
use crate::cc::depfile;
use crate::hash::Key;
use crate::key::BaseDirs;
use crate::store::entry::Entry;
use crate::store::entry::OutputKind;
use crate::store::state::StateUpdate;
use crate::store::{Store, blob};
use crate::wrapper::restore::{copy_blob, temp_name, write_with_mode};

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Materializes every output of `entry` for `invocation`; returns the files written with their
/// content hashes (the dep file only when it was not rewritten). Nothing is printed.
pub fn materialize(
    store: &Store,
    entry: &Entry,
    invocation: &CcInvocation,
    cwd: &Path,
    bases: &BaseDirs,
    update: &mut StateUpdate,
) -> io::Result<Vec<(PathBuf, Key)>> {
    let mut opened = Vec::with_capacity(entry.outputs.len());
    for output in &entry.outputs {
        let hash = blake3::Hash::from_bytes(output.blob);
        opened.push(blob::open_verified(store, &hash, output.size, update)?);
    }
    let wants_dep_file = invocation.dep_file.is_some();
    let has_dep_file = entry
        .outputs
        .iter()
        .any(|o| o.kind == OutputKind::CcDepFile);
    if wants_dep_file != has_dep_file
        || !entry.outputs.iter().any(|o| o.kind == OutputKind::CcObject)
    {
        return Err(invalid("a C entry whose outputs do not fit this compile"));
    }
    let mut restored = Vec::with_capacity(entry.outputs.len());
    for (output, mut file) in entry.outputs.iter().zip(opened) {
        let (destination, known_hash) = match output.kind {
            OutputKind::CcObject => (cwd.join(&invocation.object), Some(output.blob)),
            OutputKind::CcSplitDwarf => (cwd.join(invocation.dwo_path()), Some(output.blob)),
            OutputKind::CcDepFile => {
                let dep_file = invocation.dep_file.as_ref().expect("checked above");
                (cwd.join(&dep_file.path), None)
            }
            _ => return Err(invalid("an entry that is not a C compile's")),
        };
        let temp = temp_name(&destination);
        let _ = std::fs::remove_file(&temp);
        if output.kind == OutputKind::CcDepFile {
            let dep_file = invocation.dep_file.as_ref().expect("checked above");
            let mut text = Vec::with_capacity(output.size as usize);
            file.read_to_end(&mut text)?;
            let target = depfile::target_text(invocation, dep_file);
            let unfillable = || invalid("a stored dep file naming a base dir this compile lacks");
            let text = bases.expand(&text).ok_or_else(unfillable)?;
            let recorded_target = bases.expand(&entry.out_dir).ok_or_else(unfillable)?;
            let rewritten = depfile::retarget(&text, &recorded_target, target.as_bytes())
                .ok_or_else(|| invalid("a stored dep file without its recorded target"))?;
            write_with_mode(&temp, &rewritten, output.mode)?;
        } else {
            copy_blob(&file, &temp, output.mode)?;
        }
        if let Err(err) = fs_err::rename(&temp, &destination) {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        if let Some(hash) = known_hash {
            restored.push((destination, hash));
        }
    }
    Ok(restored)
}
