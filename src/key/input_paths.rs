//! How candidate input paths are recorded: relative to the invocation's own directories.
//!
//! The key leaves out `--out-dir` and `-L` paths so that the same crate built into another target
//! dir can hit. But the files a crate reads from those directories (above all the transitive
//! rlibs and native archives the linker lists) belong to *this* target dir: checking a later
//! invocation against the first target dir's files would pass while its own files differ, and
//! serve a stale binary. So an input under the out dir or a `-L` dir is recorded as
//! `NUL <index> NUL <path relative to that dir>` (index 0 is the out dir, then the `-L` dirs in
//! argv order), and resolved against the looking-up invocation's own directories. No real path
//! contains a NUL byte, so the two forms cannot be confused.
//!
//! Any other absolute input under one of the unit's base dirs (a registry source under
//! `CARGO_HOME`, a file generated in an `OUT_DIR`, the standard library's rlibs in the sysroot)
//! is recorded as `NUL <role> NUL <rest>` (`super::base_dirs`) and resolved against the looking-up
//! unit's own dir of that role: a candidate is always checked against the content of *its* files
//! at the paths this unit would read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::base_dirs::BaseDirs;
use crate::rustc::Invocation;

/// The directories an invocation's inputs are recorded relative to.
#[derive(Debug, Clone)]
pub struct InputDirs {
    cwd: PathBuf,
    /// Index 0: the out dir; then each `-L [kind=]dir` in argv order; all absolute.
    anchors: Vec<PathBuf>,
    bases: BaseDirs,
}

impl InputDirs {
    pub fn of(invocation: &Invocation, cwd: &Path, bases: &BaseDirs) -> InputDirs {
        let mut anchors = vec![cwd.join(&invocation.out_dir)];
        for search in &invocation.library_paths {
            let dir = search
                .split_once('=')
                .map_or(search.as_str(), |(_, dir)| dir);
            anchors.push(cwd.join(dir));
        }
        InputDirs {
            cwd: cwd.to_path_buf(),
            anchors,
            bases: bases.clone(),
        }
    }

    /// Inputs relative to the cwd, or by role under a base dir: a C compile's include dirs are
    /// keyed as arguments (templated by the same base dirs), so no other directory needs
    /// following.
    pub fn cwd_only(cwd: &Path, bases: &BaseDirs) -> InputDirs {
        InputDirs {
            cwd: cwd.to_path_buf(),
            anchors: Vec::new(),
            bases: bases.clone(),
        }
    }

    /// The unit's base dirs, which also template its env-dep values.
    pub fn bases(&self) -> &BaseDirs {
        &self.bases
    }

    /// The recorded form of an input path as a dep-info or the linker wrote it.
    pub fn record(&self, path: &Path) -> Vec<u8> {
        let absolute = self.cwd.join(path);
        let anchor = self
            .anchors
            .iter()
            .enumerate()
            .filter_map(|(index, dir)| Some((index, absolute.strip_prefix(dir).ok()?)))
            .max_by_key(|(index, _)| self.anchors[*index].as_os_str().len());
        match anchor {
            Some((index, rest)) => {
                let mut recorded = format!("\0{index}\0").into_bytes();
                recorded.extend_from_slice(rest.as_os_str().as_bytes());
                recorded
            }
            None => self
                .bases
                .normalize(path.as_os_str().as_bytes())
                .into_owned(),
        }
    }

    /// The file a recorded path names for this invocation; `None` if it names a directory this
    /// invocation does not have.
    pub fn resolve(&self, recorded: &[u8]) -> Option<PathBuf> {
        let Some(rest) = recorded.strip_prefix(b"\0") else {
            return Some(self.cwd.join(OsStr::from_bytes(recorded)));
        };
        let separator = rest.iter().position(|&byte| byte == 0)?;
        if !rest[..separator].iter().all(u8::is_ascii_digit) {
            let expanded = self.bases.expand(recorded)?;
            return Some(PathBuf::from(OsStr::from_bytes(&expanded)));
        }
        let index: usize = std::str::from_utf8(&rest[..separator]).ok()?.parse().ok()?;
        let relative = OsStr::from_bytes(&rest[separator + 1..]);
        Some(self.anchors.get(index)?.join(relative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rustc::classify;
    use std::ffi::OsString;

    fn dirs(out_dir: &str, native: &str) -> InputDirs {
        let line = format!(
            "--crate-name app src/main.rs --crate-type bin --out-dir {out_dir} \
             -L dependency={out_dir} -L native={native}"
        );
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        InputDirs::of(
            &classify(&args).unwrap(),
            Path::new("/ws"),
            &BaseDirs::none(),
        )
    }

    #[test]
    fn inputs_in_target_dirs_follow_the_invocation() {
        let first = dirs("/t1/debug/deps", "/t1/debug/build/csys-1/out");
        let second = dirs("/t2/debug/deps", "/t2/debug/build/csys-1/out");
        let rlib = first.record(Path::new("/t1/debug/deps/libcsys-1.rlib"));
        assert_eq!(
            second.resolve(&rlib),
            Some(PathBuf::from("/t2/debug/deps/libcsys-1.rlib"))
        );
        let archive = first.record(Path::new("/t1/debug/build/csys-1/out/libfoo.a"));
        assert_eq!(
            second.resolve(&archive),
            Some(PathBuf::from("/t2/debug/build/csys-1/out/libfoo.a"))
        );
    }

    #[test]
    fn other_inputs_stay_as_written() {
        let dirs = dirs("/t1/debug/deps", "/t1/native");
        for path in ["src/main.rs", "/usr/lib/x86_64-linux-gnu/crti.o"] {
            let recorded = dirs.record(Path::new(path));
            assert_eq!(recorded, path.as_bytes());
            assert_eq!(dirs.resolve(&recorded), Some(Path::new("/ws").join(path)));
        }
    }

    #[test]
    fn inputs_under_base_dirs_follow_the_unit() {
        use crate::key::base_dirs::Role;
        let of = |home: &str| {
            let line = "--crate-name x src/lib.rs --crate-type lib --out-dir /t/debug/deps";
            let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
            let bases = BaseDirs::new(vec![(Role::CargoHome, home.into())]).unwrap();
            InputDirs::of(&classify(&args).unwrap(), Path::new("/ws"), &bases)
        };
        let recorded = of("/home/a/.cargo").record(Path::new("/home/a/.cargo/registry/x.rs"));
        assert_eq!(recorded, b"\0cargo-home\0/registry/x.rs");
        assert_eq!(
            of("/ci/.cargo").resolve(&recorded),
            Some(PathBuf::from("/ci/.cargo/registry/x.rs"))
        );
        assert_eq!(dirs("/t", "/n").resolve(&recorded), None);
    }

    #[test]
    fn a_missing_directory_resolves_to_nothing() {
        let dirs = dirs("/t1/debug/deps", "/t1/native");
        assert_eq!(dirs.resolve(b"\x009\x00libx.a"), None);
        assert_eq!(dirs.resolve(b"\x00x\x00libx.a"), None);
    }
}
