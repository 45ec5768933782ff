//! The dev profile's incremental sessions (docs/design.md §6d, "The first edit after a
//! restore"): after a miss of an incremental compile, find the session rustc finalized for the
//! crate and keep it with the entry (`store::sessions`); after a hit into a crate dir that holds no
//! session, put the kept one back, so that the next edit of the crate compiles incrementally.
//!
//! Which session is this compile's: rustc names a crate's dir `<crate name>-<hash>` after
//! hashing things rcache does not reproduce, so the crate's dirs are read before and after the
//! run, and the session that appeared is the compile's. When two compiles of one crate name ran
//! at once (a lib and its test harness), the one whose `metadata.rmeta` is this compile's rmeta
//! (rustc hard-links it), or whose objects are the ones this compile linked, is taken. When that
//! leaves anything but one, nothing is kept: the next edit then compiles whole, as without.
//!
//! Putting back is all or nothing and never touches rustc's state: only into a crate dir with no
//! session at all, only at the same paths (incremental dir and base dirs) and with the same
//! outputs as when kept, only when every file is still the one kept; the files are linked into
//! a dir rustc ignores, the session's lock file is created, and the dir is renamed to the
//! session's name. rustc reads a session it did not lock only through that lock file, and it
//! never writes a session file in place.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::hash::Key;
use crate::store::Store;
use crate::store::entry::Entry;
use crate::store::sessions::{self, SessionRecord};
use crate::store::state::StateUpdate;

/// The finalized sessions of a crate's dirs (`<crate name>-*`) in an incremental dir.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sessions(BTreeSet<(String, String)>);

/// A rustc compile with `-C incremental`, as far as its session is concerned.
pub struct IncrementalCompile {
    /// The incremental dir, absolute.
    pub dir: PathBuf,
    pub crate_name: String,
    /// The crate's sessions before rustc ran (only on a miss).
    pub before: Option<Sessions>,
}

/// What the compile wrote that tells its session apart from another of the same crate name.
pub struct Evidence<'a> {
    /// The `.rmeta` it wrote.
    pub rmeta: Option<&'a Path>,
    /// The linker's dep file, which names the codegen-unit objects it linked.
    pub linker_dep_info: Option<&'a Path>,
}

impl IncrementalCompile {
    /// Where the store keeps this crate's sessions.
    fn group(&self) -> sessions::Crate {
        sessions::Crate::new(&self.dir, &self.crate_name)
    }

    /// Reads the crate's sessions before the run.
    pub fn note_before(&mut self) {
        self.before = Some(finalized_sessions(&self.dir, &self.crate_name));
    }

    /// After a stored miss: keeps the session rustc finalized for it with the entry
    /// `result_key` whose blobs are `outputs`; `layout` names the unit's real dirs (its cwd and
    /// base dirs). Counted: kept, or why not.
    pub fn keep(
        &self,
        store: &Store,
        result_key: &Key,
        outputs: Vec<Key>,
        layout: Vec<u8>,
        evidence: &Evidence,
        update: &mut StateUpdate,
    ) {
        let Some(before) = &self.before else { return };
        let Some(boot_id) = crate::store::state::boot_id() else {
            update.count(counter("not_kept.no_boot_id"), 1);
            return;
        };
        let after = finalized_sessions(&self.dir, &self.crate_name);
        let new: Vec<&(String, String)> = after.0.difference(&before.0).collect();
        let Some((crate_dir, session)) = self.this_compiles(&new, evidence) else {
            update.count(counter("not_kept.ambiguous"), 1);
            return;
        };
        let record = SessionRecord {
            incremental_dir: self.dir.clone(),
            base_dirs: layout,
            crate_dir: crate_dir.clone(),
            session: session.clone(),
            outputs,
            boot_id,
            files: Vec::new(),
        };
        let source = self.dir.join(crate_dir).join(session);
        match sessions::keep(&store.layout, &self.group(), result_key, record, &source) {
            Ok(()) => update.count(counter("kept"), 1),
            Err(err) => {
                tracing::debug!("incremental session {} not kept: {err}", source.display());
                update.count(counter("not_kept.io"), 1);
            }
        }
    }

    /// The one new session that is this compile's, if the evidence says which.
    fn this_compiles<'n>(
        &self,
        new: &[&'n (String, String)],
        evidence: &Evidence,
    ) -> Option<&'n (String, String)> {
        if let [only] = new {
            return Some(only);
        }
        let rmeta_ino = evidence
            .rmeta
            .and_then(|path| fs::metadata(path).ok())
            .map(|meta| (meta.dev(), meta.ino()));
        let linked = evidence
            .linker_dep_info
            .map(linked_codegen_units)
            .unwrap_or_default();
        let matching: Vec<_> = new
            .iter()
            .filter(|(crate_dir, session)| {
                let dir = self.dir.join(crate_dir).join(session);
                match rmeta_ino {
                    Some(ino) => fs::metadata(dir.join("metadata.rmeta"))
                        .is_ok_and(|meta| (meta.dev(), meta.ino()) == ino),
                    None => objects_all_linked(&dir, &linked),
                }
            })
            .collect();
        match matching[..] {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// On a hit: puts back the session kept with `entry` when the crate has none here and
    /// `layout` is the one it was kept in. Counted: restored, or why not (nothing is counted
    /// when none was kept).
    pub fn put_back(
        &self,
        store: &Store,
        result_key: &Key,
        entry: &Entry,
        layout: &[u8],
        update: &mut StateUpdate,
    ) {
        let Some(kept) = sessions::find(&store.layout, &self.group(), result_key) else {
            return;
        };
        let record = &kept.record;
        let outputs: Vec<Key> = entry.outputs.iter().filter_map(|o| o.blob()).collect();
        let reason = if record.incremental_dir != self.dir || record.base_dirs != layout {
            Some("elsewhere")
        } else if record.outputs != outputs {
            Some("other_outputs")
        } else if !plain_name(&record.crate_dir)
            || !record
                .crate_dir
                .starts_with(&format!("{}-", self.crate_name))
            || lock_file_name(&record.session).is_none()
        {
            Some("malformed")
        } else if crate_has_session(&self.dir.join(&record.crate_dir)) {
            Some("state_present")
        } else if !kept.intact() {
            let _ = sessions::remove(&store.layout, &self.group(), result_key);
            Some("changed")
        } else {
            None
        };
        let name = match reason {
            Some(reason) => format!("not_restored.{reason}"),
            None => match self.link_back(&kept) {
                Ok(()) => "restored".to_string(),
                Err(err) => {
                    tracing::debug!("incremental session not restored: {err}");
                    "not_restored.io".to_string()
                }
            },
        };
        update.count(counter(&name), 1);
    }

    /// Links the kept files into a dir rustc ignores, checking each link is the file kept (a
    /// concurrent keep of the same entry may have replaced the session since it was checked),
    /// creates the session's lock file, and renames the dir to the session's name: rustc sees
    /// the whole session or none.
    fn link_back(&self, kept: &sessions::KeptSession) -> io::Result<()> {
        let record = &kept.record;
        let crate_dir = self.dir.join(&record.crate_dir);
        fs::create_dir_all(&crate_dir)?;
        remove_stale_restoring_dirs(&crate_dir);
        let temp = tempfile::Builder::new()
            .prefix(RESTORING_PREFIX)
            .tempdir_in(&crate_dir)?;
        for file in &record.files {
            if !plain_name(&file.name) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a file name"));
            }
            let link = temp.path().join(&file.name);
            fs::hard_link(kept.files_dir.join(&file.name), &link)?;
            if !file.is(&fs::symlink_metadata(&link)?) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the kept session changed while it was put back",
                ));
            }
        }
        let lock_name = lock_file_name(&record.session).expect("checked by the caller");
        let lock = crate_dir.join(lock_name);
        // A lock file already there is another session's: no session of rcache's goes beside it.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)?;
        let session = crate_dir.join(&record.session);
        if let Err(err) = fs::rename(temp.path(), &session) {
            let _ = fs::remove_file(&lock);
            return Err(err);
        }
        let _ = temp.keep();
        Ok(())
    }
}

/// Names of the dirs a session is put back in before it is renamed (rustc ignores them).
const RESTORING_PREFIX: &str = "rcache-restoring-";

/// Removes what a put-back killed before its rename left in a crate dir (its temp dir holds
/// links to a whole session). Cargo's build lock keeps two builds out of one crate dir, so any
/// such dir older than a minute is a leftover.
fn remove_stale_restoring_dirs(crate_dir: &Path) {
    let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for name in read_names(crate_dir) {
        let path = crate_dir.join(&name);
        let stale = name.starts_with(RESTORING_PREFIX)
            && fs::symlink_metadata(&path)
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified < minute_ago);
        if stale {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The state counter of an incremental-session figure (`rcache stats`).
fn counter(name: &str) -> String {
    format!("{}{name}", crate::stats::INCREMENTAL_PREFIX)
}

/// The finalized sessions of every `<crate name>-*` dir in `dir`.
fn finalized_sessions(dir: &Path, crate_name: &str) -> Sessions {
    let prefix = format!("{crate_name}-");
    let mut found = BTreeSet::new();
    for crate_dir in read_names(dir) {
        let Some(hash) = crate_dir.strip_prefix(&prefix) else {
            continue;
        };
        // `<crate>-<hash>`: not another crate whose name extends this one (`a-b` for `a`).
        if hash.contains('-') {
            continue;
        }
        for session in read_names(&dir.join(&crate_dir)) {
            if lock_file_name(&session).is_some() {
                found.insert((crate_dir.clone(), session));
            }
        }
    }
    Sessions(found)
}

fn read_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|item| item.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The lock file of a finalized session dir `s-<time>-<random>-<svh>`: `s-<time>-<random>.lock`;
/// `None` for any other name (a session being written ends in `-working`).
fn lock_file_name(session: &str) -> Option<String> {
    let parts: Vec<&str> = session.split('-').collect();
    let plain = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric());
    match parts[..] {
        ["s", time, random, svh] if [time, random, svh].iter().all(plain) && svh != "working" => {
            Some(format!("s-{time}-{random}.lock"))
        }
        _ => None,
    }
}

fn crate_has_session(crate_dir: &Path) -> bool {
    read_names(crate_dir)
        .iter()
        .any(|name| name.starts_with("s-"))
}

/// One path component, not `.` or `..`.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The codegen units a link read: `<crate>-<hash>.<unit>.<n>.rcgu.o` gives `<unit>`.
fn linked_codegen_units(linker_dep_info: &Path) -> BTreeSet<String> {
    let Ok(text) = fs::read(linker_dep_info) else {
        return BTreeSet::new();
    };
    crate::depinfo::parse(&text)
        .inputs
        .iter()
        .filter_map(|input| input.file_name()?.to_str())
        .filter(|name| name.ends_with(".rcgu.o"))
        .filter_map(|name| name.split('.').nth(1).map(str::to_string))
        .collect()
}

/// Whether the session holds objects and every one is a codegen unit the link read.
fn objects_all_linked(session: &Path, linked: &BTreeSet<String>) -> bool {
    let objects: Vec<String> = read_names(session)
        .into_iter()
        .filter_map(|name| name.strip_suffix(".o").map(str::to_string))
        .collect();
    !objects.is_empty() && objects.iter().all(|object| linked.contains(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_of_finalized_sessions_only() {
        assert_eq!(
            lock_file_name("s-hoqe6xqiz6-1xtgy2z-0iw7fa786o5e6eovfgd1rgx17").as_deref(),
            Some("s-hoqe6xqiz6-1xtgy2z.lock")
        );
        assert_eq!(lock_file_name("s-hoqe6xqiz6-1xtgy2z-working"), None);
        assert_eq!(lock_file_name("s-hoqe6xqiz6-1xtgy2z.lock"), None);
        assert_eq!(lock_file_name("s-a-b-c-d"), None);
        assert_eq!(lock_file_name("s-a-../x-c"), None);
        assert_eq!(lock_file_name("rcache-restoring-x"), None);
    }

    #[test]
    fn sessions_of_this_crate_name_only() {
        let dir = tempfile::tempdir().unwrap();
        for path in [
            "demo-0abc/s-t1-r1-svh1",
            "demo-0abc/s-t2-r2-working",
            "demo-0def/s-t3-r3-svh3",
            "demo-extra-0ghi/s-t4-r4-svh4",
            "other-0jkl/s-t5-r5-svh5",
        ] {
            fs::create_dir_all(dir.path().join(path)).unwrap();
        }
        fs::write(dir.path().join("demo-0abc/s-t1-r1.lock"), "").unwrap();
        let found = finalized_sessions(dir.path(), "demo");
        let names: Vec<_> = found.0.iter().map(|(c, s)| format!("{c}/{s}")).collect();
        assert_eq!(names, ["demo-0abc/s-t1-r1-svh1", "demo-0def/s-t3-r3-svh3"]);
    }

    #[test]
    fn objects_match_the_units_a_link_read() {
        let dir = tempfile::tempdir().unwrap();
        let deps = dir.path().join("link.d");
        fs::write(
            &deps,
            "out: /t/deps/demo-95.aaa.1ex.rcgu.o /t/deps/demo-95.bbb.1ex.rcgu.o /usr/lib/libc.so\n",
        )
        .unwrap();
        let linked = linked_codegen_units(&deps);
        assert_eq!(linked.iter().collect::<Vec<_>>(), ["aaa", "bbb"]);
        let session = dir.path().join("s");
        fs::create_dir(&session).unwrap();
        fs::write(session.join("dep-graph.bin"), "").unwrap();
        fs::write(session.join("aaa.o"), "").unwrap();
        assert!(objects_all_linked(&session, &linked));
        fs::write(session.join("ccc.o"), "").unwrap();
        assert!(!objects_all_linked(&session, &linked));
    }
}
