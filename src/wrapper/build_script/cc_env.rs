//! Zero-config C/C++ for build scripts: the environment of a script rcache runs, prepared so
//! that the compiles it starts through the `cc` crate (or `cmake`, `make`, a bare `cc`) go
//! through rcache, as sccache's do when it is the `RUSTC_WRAPPER`.
//!
//! ccache's masquerade style: a directory of links named like the compilers on `PATH` (`cc`,
//! `c++`, `gcc`, `g++`, `clang`, `clang++`, and target-prefixed ones such as
//! `aarch64-linux-gnu-gcc`, which the `cc` crate picks for cross builds), each pointing at this
//! rcache, is put first on the script's `PATH`. Nothing else of the script's environment
//! changes, so what it sees is what a plain run sees:
//! - the compiler names are the same (`cc` is still `cc`), so the `cc` crate's family detection
//!   and flag probes (`flag_if_supported`) answer as for the real compiler: rcache passes `-E`
//!   through, and a probe compile is the real compiler's compile;
//! - `PATH` is not in the run key ([`crate::key::build_script`]), the `cc` crate never prints
//!   `rerun-if-env-changed=PATH`, and cargo checks its own environment, not the script's;
//! - started through a link, rcache finds the real compiler further along `PATH`, skipping every
//!   entry that is rcache itself (`crate::cc::driver`), so nothing loops. A name whose next
//!   program is another compiler wrapper (a ccache masquerade dir later on `PATH`) gets no link:
//!   that wrapper would find the link again.
//!
//! Left alone: a script whose environment names its compiler (`CC`, `CXX`, `HOST_CC`,
//! `TARGET_CXX`, `CC_<target>`, ...: the user's choice stands), a run with `RCACHE_DISABLE`, and
//! every run with `RCACHE_BUILD_SCRIPT_CC=off`. Any fault (no store dir, a link that cannot be
//! made) leaves the script's environment as it was.
//!
//! The links live in `<RCACHE_DIR>/cc-links/<id>/`, where `<id>` names this rcache's path and the
//! set of names, so a stable directory serves every run; it is created once, atomically (a
//! temp dir renamed into place).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cc::driver::{DRIVER_NAMES, driver_name};
use crate::config::Config;
use crate::stats::BUILD_SCRIPTS_CC_ROUTED;
use crate::store::state::StateUpdate;
use crate::wrapper::run::CompilerChain;

/// The directory under `RCACHE_DIR` holding the link directories.
pub const LINKS_DIR: &str = "cc-links";

/// Compiler wrappers that look for the real compiler on `PATH` themselves: a name whose next
/// program is one of them gets no link (it could find the link and call rcache again).
const OTHER_WRAPPERS: [&str; 7] = [
    "ccache",
    "sccache",
    "distcc",
    "icecc",
    "buildcache",
    "cachepot",
    "kache",
];

/// True if cargo's runs of build scripts should come to rcache (the launcher installed): to be
/// cached, or only to have their C/C++ compiles routed (`RCACHE_BUILD_SCRIPTS=off` with
/// `RCACHE_BUILD_SCRIPT_CC` on: rcache then runs each script at once, recording nothing).
pub fn launcher_wanted(config: &Config) -> bool {
    config.build_scripts.value || config.build_script_cc.value
}

/// The `PATH` for a script rcache is about to run (or exec) so that its C/C++ compiles go
/// through rcache: a directory of compiler links first, then the process's `PATH`. `None` when
/// the run is left alone (the caller then changes nothing); the caller counts a routed run
/// under [`BUILD_SCRIPTS_CC_ROUTED`].
pub fn routed_path(config: &Config) -> Option<OsString> {
    let env = |name: &str| std::env::var_os(name);
    let dir = links_dir_for(config, &env)?;
    let path = env("PATH")?;
    let mut entries = vec![dir.clone()];
    // A script started from a script (cargo run by a build script) has the links first already.
    entries.extend(std::env::split_paths(&path).filter(|entry| *entry != dir));
    std::env::join_paths(entries).ok()
}

/// Routes the C/C++ compiles of the script `chain` runs: its `PATH` set by [`routed_path`],
/// counted in `update`. Returns whether it did.
pub fn route(chain: &mut CompilerChain, config: &Config, update: &mut StateUpdate) -> bool {
    let Some(path) = routed_path(config) else {
        return false;
    };
    chain.env.push(("PATH".into(), path));
    update.count(BUILD_SCRIPTS_CC_ROUTED, 1);
    true
}

/// The link directory for this run, created if needed; `None` when the run is left alone.
fn links_dir_for(config: &Config, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if config.disable.value || !config.build_script_cc.value || user_chose_compiler(env) {
        return None;
    }
    let own = std::env::current_exe().ok()?.canonicalize().ok()?;
    let names = link_names(&env("PATH")?, &own);
    if names.is_empty() {
        return None;
    }
    let root = owned_dir(&config.dir.value)?;
    match ensure_links(&root.join(LINKS_DIR), &own, &names) {
        Ok(dir) => Some(dir),
        Err(err) => {
            tracing::debug!("compiler links for build scripts not made ({err})");
            None
        }
    }
}

/// True if the environment names the script's C or C++ compiler, in any of the forms the `cc`
/// crate reads (`CC`, `HOST_CC`, `TARGET_CC`, `CC_<target>`, `CC_<target_with_underscores>`,
/// and the same for `CXX`), for `TARGET` and `HOST`.
pub fn user_chose_compiler(env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    let mut names: Vec<String> = Vec::new();
    for tool in ["CC", "CXX"] {
        names.push(tool.to_string());
        names.push(format!("HOST_{tool}"));
        names.push(format!("TARGET_{tool}"));
        for triple in ["TARGET", "HOST"].iter().filter_map(|name| env(name)) {
            let triple = triple.to_string_lossy().into_owned();
            names.push(format!("{tool}_{triple}"));
            names.push(format!("{tool}_{}", triple.replace('-', "_")));
        }
    }
    names
        .iter()
        .any(|name| env(name).is_some_and(|value| !value.to_string_lossy().trim().is_empty()))
}

/// The compiler names to link: the plain driver names and the target-prefixed ones
/// (`x86_64-linux-gnu-gcc`; no versioned ones such as `gcc-12`, which only a `CC` setting
/// selects) found on `path`, each only when the program it would stand for is a real
/// compiler (not rcache, not another wrapper). Sorted.
pub fn link_names(path: &OsStr, own: &Path) -> Vec<String> {
    let dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
    let mut candidates = BTreeSet::new();
    for dir in &dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if let Some(name) = entry.file_name().to_str().filter(|name| is_link_name(name)) {
                candidates.insert(name.to_string());
            }
        }
    }
    candidates
        .into_iter()
        .filter(|name| real_program(&dirs, name, own).is_some_and(|real| !is_other_wrapper(&real)))
        .collect()
}

/// A driver name, or a target triple followed by one (`aarch64-linux-gnu-gcc`).
fn is_link_name(name: &str) -> bool {
    if DRIVER_NAMES.contains(&name) {
        return true;
    }
    let Some(driver) = driver_name(name) else {
        return false;
    };
    // `driver_name` also accepts versions (`gcc-12`): only `<triple>-<driver>` is kept here.
    name.strip_suffix(driver)
        .and_then(|prefix| prefix.strip_suffix('-'))
        .is_some_and(|triple| triple.contains('-'))
}

/// The first executable named `name` in `dirs` that is not rcache itself, canonicalized.
fn real_program(dirs: &[PathBuf], name: &str, own: &Path) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .filter_map(|candidate| {
            let meta = fs::metadata(&candidate).ok()?;
            let executable = meta.is_file() && meta.permissions().mode() & 0o111 != 0;
            executable.then(|| candidate.canonicalize().ok()).flatten()
        })
        .find(|real| real != own)
}

fn is_other_wrapper(program: &Path) -> bool {
    program
        .file_stem()
        .and_then(OsStr::to_str)
        .is_some_and(|stem| OTHER_WRAPPERS.contains(&stem))
}

/// `dir` if it exists as a directory owned by this user (the store's own rule).
fn owned_dir(dir: &Path) -> Option<PathBuf> {
    let meta = fs::metadata(dir).ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (meta.is_dir() && meta.uid() == euid).then(|| dir.to_path_buf())
}

/// The directory under `parent` holding one link per name to `own`, made if missing.
pub fn ensure_links(parent: &Path, own: &Path, names: &[String]) -> io::Result<PathBuf> {
    let mut id = blake3::Hasher::new();
    id.update(own.as_os_str().as_encoded_bytes());
    for name in names {
        id.update(b"\0");
        id.update(name.as_bytes());
    }
    let dir = parent.join(&id.finalize().to_hex()[..16]);
    if links_in_place(&dir, own, names) {
        return Ok(dir);
    }
    fs::create_dir_all(parent)?;
    fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
    let temp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos())
    ));
    fs::create_dir(&temp)?;
    let made = names
        .iter()
        .try_for_each(|name| std::os::unix::fs::symlink(own, temp.join(name)))
        .and_then(|()| fs::rename(&temp, &dir));
    if made.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    // Another process may have put the same directory in place first (rename then fails).
    if links_in_place(&dir, own, names) {
        Ok(dir)
    } else {
        Err(made
            .err()
            .unwrap_or_else(|| io::Error::other(format!("{} holds other links", dir.display()))))
    }
}

fn links_in_place(dir: &Path, own: &Path, names: &[String]) -> bool {
    names
        .iter()
        .all(|name| fs::read_link(dir.join(name)).is_ok_and(|target| target == own))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), OsString::from(value)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn any_form_of_cc_or_cxx_is_the_users_choice() {
        let target = ("TARGET", "aarch64-unknown-linux-gnu");
        assert!(!user_chose_compiler(&env_of(&[target])));
        assert!(!user_chose_compiler(&env_of(&[target, ("CC", " ")])));
        assert!(!user_chose_compiler(&env_of(&[
            target,
            ("CC_KNOWN_WRAPPER_CUSTOM", "rcache"),
            ("CFLAGS", "-O2"),
        ])));
        for name in [
            "CC",
            "CXX",
            "HOST_CC",
            "TARGET_CXX",
            "CC_aarch64-unknown-linux-gnu",
            "CXX_aarch64_unknown_linux_gnu",
        ] {
            assert!(
                user_chose_compiler(&env_of(&[target, (name, "gcc-12")])),
                "{name}"
            );
        }
    }

    #[test]
    fn link_names_are_drivers_and_triple_prefixed_drivers() {
        for name in [
            "cc",
            "c++",
            "gcc",
            "clang++",
            "aarch64-linux-gnu-gcc",
            "x86_64-linux-gnu-g++",
        ] {
            assert!(is_link_name(name), "{name}");
        }
        for name in [
            "gcc-12",
            "clang-14",
            "c89-gcc",
            "gcc-ar",
            "rcache",
            "ld",
            "x86_64-linux-gnu-gcc-12",
        ] {
            assert!(!is_link_name(name), "{name}");
        }
    }

    fn executable(path: &Path) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn names_without_a_real_program_or_behind_another_wrapper_get_no_link() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("rcache");
        executable(&own);
        let own = own.canonicalize().unwrap();
        let (ours, ccache_dir, bin) = (
            root.path().join("ours"),
            root.path().join("ccache"),
            root.path().join("bin"),
        );
        for dir in [&ours, &ccache_dir, &bin] {
            fs::create_dir(dir).unwrap();
        }
        // Links to rcache itself (the documented symlink form) are skipped, not taken as real.
        std::os::unix::fs::symlink(&own, ours.join("cc")).unwrap();
        std::os::unix::fs::symlink(&own, ours.join("clang")).unwrap();
        executable(&bin.join("cc"));
        executable(&bin.join("g++"));
        executable(&bin.join("gcc-12"));
        executable(&bin.join("aarch64-linux-gnu-gcc"));
        let real_ccache = root.path().join("wrappers");
        fs::create_dir(&real_ccache).unwrap();
        executable(&real_ccache.join("ccache"));
        std::os::unix::fs::symlink(real_ccache.join("ccache"), ccache_dir.join("g++")).unwrap();
        fs::write(bin.join("gcc"), "not executable").unwrap();
        let path = std::env::join_paths([&ours, &ccache_dir, &bin]).unwrap();
        assert_eq!(link_names(&path, &own), ["aarch64-linux-gnu-gcc", "cc"]);
    }

    #[test]
    fn the_link_dir_is_made_once_and_points_at_rcache() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("rcache");
        executable(&own);
        let names = vec!["c++".to_string(), "cc".to_string()];
        let parent = root.path().join(LINKS_DIR);
        let dir = ensure_links(&parent, &own, &names).unwrap();
        assert_eq!(fs::read_link(dir.join("cc")).unwrap(), own);
        assert_eq!(fs::read_link(dir.join("c++")).unwrap(), own);
        assert_eq!(ensure_links(&parent, &own, &names).unwrap(), dir);
        assert_eq!(
            fs::read_dir(&parent).unwrap().count(),
            1,
            "no temp dir left"
        );
        let other = ensure_links(&parent, &own, &names[..1]).unwrap();
        assert_ne!(other, dir);
        assert_eq!(
            fs::metadata(&parent).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
