//! Base dirs: the directories whose absolute paths differ between checkouts, target dirs,
//! `CARGO_HOME`s and machines, and the one place their paths are normalized, templated, expanded
//! and remapped (issue 15; docs/design.md §6e; store-format/README.md §5.3).
//!
//! A unit's base dirs are its cwd (the workspace root of a workspace member), `CARGO_HOME`, the
//! target dir and the toolchain's sysroot. The same bytes serve three uses:
//! - **keys**: a path under a base dir is keyed as `NUL <role> NUL <rest>` ([`BaseDirs::normalize`],
//!   [`BaseDirs::template`]), so the same unit in another layout computes the same key;
//! - **outputs**: rustc is given `--remap-path-prefix=<dir>=/rcache/<role>` for the cwd,
//!   `CARGO_HOME` and the target dir ([`BaseDirs::remap_args`]), so what it writes holds no base
//!   dir; the `.d` file and the diagnostics are stored as templates and expanded for the restoring
//!   unit's own dirs ([`BaseDirs::expand`]);
//! - **evidence**: the byte strings whose presence in an output makes the unit path-bound
//!   ([`BaseDirs::needles`]): keyed with its real paths ([`BaseDirs::verbatim`]) and never shared.
//!
//! A unit with no base dirs ([`BaseDirs::none`], `RCACHE_PATH_INDEPENDENT=off`) normalizes
//! nothing: every form above is then the path as written.

use std::borrow::Cow;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a base dir is; its name is its placeholder and its remapped name's last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The compile's cwd: the workspace root for a workspace member or path dependency in it, the
    /// package root for any other package (one outside the workspace, or one under another
    /// base dir, which then names it instead).
    Cwd,
    /// `CARGO_HOME` (`$HOME/.cargo` when unset): registry and git sources.
    CargoHome,
    /// The target dir (cargo's `build-dir`): `OUT_DIR`s and the out dir.
    Target,
    /// The toolchain's sysroot: the standard library's rlibs a link reads, `CARGO`'s value.
    /// Keyed, not remapped: rustc's own paths under it are already `/rustc/<commit>`.
    Sysroot,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Cwd => "cwd",
            Role::CargoHome => "cargo-home",
            Role::Target => "target",
            Role::Sysroot => "sysroot",
        }
    }

    fn from_name(name: &[u8]) -> Option<Role> {
        [Role::Cwd, Role::CargoHome, Role::Target, Role::Sysroot]
            .into_iter()
            .find(|role| role.name().as_bytes() == name)
    }

    /// The name rustc writes in place of the dir, when it is remapped.
    pub fn remapped(self) -> Option<String> {
        (self != Role::Sysroot).then(|| format!("{REMAP_ROOT}/{}", self.name()))
    }
}

/// The root of the names base dirs are remapped to (README.md "Paths in outputs").
pub const REMAP_ROOT: &str = "/rcache";

/// Why a unit is kept path-bound: keyed with its real paths and never shared with another
/// layout. Counted under `path_bound` in the stats and named in its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum PathBound {
    /// An output holds a base dir's absolute path (a `env!("CARGO_MANIFEST_DIR")` value, a
    /// proc macro's): found by searching the outputs for the paths' bytes.
    OutputHoldsPath,
    /// A base dir rcache cannot template safely: not UTF-8, or with a byte that dep-info or JSON
    /// would escape (a space, a quote, a backslash, a control character), or the root.
    UnusualBaseDir,
}

impl PathBound {
    pub fn as_str(self) -> &'static str {
        match self {
            PathBound::OutputHoldsPath => "output_holds_path",
            PathBound::UnusualBaseDir => "unusual_base_dir",
        }
    }
}

/// The base dirs of one unit, longest first (the most specific wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseDirs {
    dirs: Vec<(Role, Vec<u8>)>,
}

impl BaseDirs {
    /// No base dirs: every path is keyed, stored and restored as written.
    pub fn none() -> BaseDirs {
        BaseDirs::default()
    }

    /// The base dirs from their candidate paths. A cwd under the dir of another remapped role is
    /// dropped (a registry crate's cwd is named by `CARGO_HOME`), so the remapped set does not
    /// depend on whether the sysroot is known yet; an unusual dir makes the whole unit
    /// path-bound.
    pub fn new(candidates: Vec<(Role, PathBuf)>) -> Result<BaseDirs, PathBound> {
        let mut dirs: Vec<(Role, Vec<u8>)> = Vec::new();
        for (role, path) in candidates {
            let bytes = trim_slash(path.as_os_str().as_bytes()).to_vec();
            if !is_usual(&bytes) {
                return Err(PathBound::UnusualBaseDir);
            }
            if dirs.iter().any(|(_, dir)| *dir == bytes) {
                continue;
            }
            dirs.push((role, bytes));
        }
        let nested = |role: Role, dir: &[u8], dirs: &[(Role, Vec<u8>)]| {
            role == Role::Cwd
                && dirs.iter().any(|(other, base)| {
                    other.remapped().is_some()
                        && *other != Role::Cwd
                        && base.len() < dir.len()
                        && starts_with_dir(dir, base)
                })
        };
        let snapshot = dirs.clone();
        dirs.retain(|(role, dir)| !nested(*role, dir, &snapshot));
        dirs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        Ok(BaseDirs { dirs })
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The roles present, for the key: two units normalize alike only with the same roles.
    pub fn roles(&self) -> Vec<&'static str> {
        let mut roles: Vec<&'static str> = self.dirs.iter().map(|(role, _)| role.name()).collect();
        roles.sort_unstable();
        roles
    }

    /// The role of the most specific base dir `path` lies in, if any.
    pub fn role_of(&self, path: &[u8]) -> Option<Role> {
        self.dirs
            .iter()
            .find(|(_, dir)| starts_with_dir(path, dir))
            .map(|(role, _)| *role)
    }

    /// A path that starts with a base dir, as `NUL <role> NUL <rest>`; any other path as written.
    pub fn normalize<'a>(&self, path: &'a [u8]) -> Cow<'a, [u8]> {
        for (role, dir) in &self.dirs {
            if starts_with_dir(path, dir) {
                let mut normalized = placeholder(*role);
                normalized.extend_from_slice(&path[dir.len()..]);
                return Cow::Owned(normalized);
            }
        }
        Cow::Borrowed(path)
    }

    /// Free text (a `.d` file, diagnostics, an env value) with every base dir that starts a path
    /// in it replaced by its placeholder.
    pub fn template(&self, text: &[u8]) -> Vec<u8> {
        if self.dirs.is_empty() {
            return text.to_vec();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        'scan: while at < text.len() {
            if text[at] == b'/' && (at == 0 || !is_path_byte(text[at - 1])) {
                for (role, dir) in &self.dirs {
                    if starts_with_dir(&text[at..], dir) {
                        out.extend_from_slice(&placeholder(*role));
                        at += dir.len();
                        continue 'scan;
                    }
                }
            }
            out.push(text[at]);
            at += 1;
        }
        out
    }

    /// A template with every placeholder replaced by this unit's dir; `None` if it names a role
    /// this unit does not have (then it cannot be restored here).
    pub fn expand(&self, template: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(start) = memchr::memchr(0, rest) {
            out.extend_from_slice(&rest[..start]);
            let after = &rest[start + 1..];
            let end = memchr::memchr(0, after)?;
            let role = Role::from_name(&after[..end])?;
            let (_, dir) = self.dirs.iter().find(|(have, _)| *have == role)?;
            out.extend_from_slice(dir);
            rest = &after[end + 1..];
        }
        out.extend_from_slice(rest);
        Some(out)
    }

    /// Text rustc wrote with remapped names (`/rcache/cwd/...`) with this unit's real dirs back:
    /// what a plain build would have printed.
    pub fn unremap(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for (role, dir) in &self.dirs {
            let Some(remapped) = role.remapped() else {
                continue;
            };
            out = replace_dir(&out, remapped.as_bytes(), dir);
        }
        out
    }

    /// `--remap-path-prefix=<dir>=/rcache/<role>` for each remapped role, shortest dir first:
    /// rustc lets the last matching one win, so a nested dir (a target dir in the workspace)
    /// keeps its own name.
    pub fn remap_args(&self) -> Vec<OsString> {
        self.map_args("--remap-path-prefix=")
    }

    /// `-ffile-prefix-map=<dir>=/rcache/<role>` for a C or C++ compile (debug info,
    /// `__FILE__`), in the same order: gcc and clang also let the last matching one win.
    pub fn prefix_map_args(&self) -> Vec<OsString> {
        self.map_args("-ffile-prefix-map=")
    }

    fn map_args(&self, flag: &str) -> Vec<OsString> {
        let mut remapped: Vec<(&Vec<u8>, String)> = self
            .dirs
            .iter()
            .filter_map(|(role, dir)| Some((dir, role.remapped()?)))
            .collect();
        remapped.sort_by_key(|(dir, _)| dir.len());
        remapped
            .into_iter()
            .map(|(dir, name)| {
                let mut arg = OsString::from(flag);
                arg.push(std::ffi::OsStr::from_bytes(dir));
                arg.push("=");
                arg.push(name);
                arg
            })
            .collect()
    }

    /// The byte strings whose presence in an output makes it path-bound: every base dir.
    pub fn needles(&self) -> impl Iterator<Item = &[u8]> {
        self.dirs.iter().map(|(_, dir)| dir.as_slice())
    }

    /// Whether `bytes` hold one of the base dirs anywhere (after templating: one the template
    /// could not replace, which would name this unit's dir in another's restore).
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        let needles: Vec<&[u8]> = self.needles().filter(|needle| !needle.is_empty()).collect();
        if needles.is_empty() {
            return false;
        }
        // One pass for every dir (a SIMD multi-pattern search): a linked debug binary is tens
        // to hundreds of MiB, searched on every miss of the dev loop (3 against 12 ms for
        // ripgrep's 48 MiB `rg` and four dirs, one `memmem` pass each).
        match aho_corasick::AhoCorasick::new(&needles) {
            Ok(searcher) => searcher.is_match(bytes),
            Err(_) => needles
                .iter()
                .any(|needle| memchr::memmem::find(bytes, needle).is_some()),
        }
    }

    /// Whether a file holds one of the base dirs, byte for byte: the evidence that makes a unit
    /// path-bound (docs/design.md §6e).
    pub fn found_in_file(&self, path: &Path) -> std::io::Result<bool> {
        if self.dirs.is_empty() {
            return Ok(false);
        }
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(false);
        }
        // SAFETY: a file rcache has just stored (an output, or a run's `OUT_DIR` file), only
        // read; a concurrent truncation is refused by the store step's own checks.
        let bytes = unsafe { memmap2::Mmap::map(&file)? };
        Ok(self.found_in(&bytes))
    }

    /// The real dirs, role by role: what a path-bound unit's result key adds.
    pub fn verbatim(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (role, dir) in &self.dirs {
            bytes.extend_from_slice(&placeholder(*role));
            bytes.extend_from_slice(dir);
        }
        bytes
    }
}

/// `NUL <role> NUL`.
fn placeholder(role: Role) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(role.name().as_bytes());
    bytes.push(0);
    bytes
}

/// True if `path` is `dir` or starts with `dir/`; false for `/ws2` against `/ws`.
fn starts_with_dir(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && path.get(dir.len()).is_none_or(|&next| !is_path_byte(next))
}

/// A byte that continues a file name: a match of `/ws` in `/wsx` or `x/ws` is not the dir.
fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'.' | b'_' | b'-' | b'+' | b'~' | b'@' | b'%')
        || byte >= 0x80
}

/// A dir whose bytes appear unchanged in dep-info and JSON, and that is not the root.
fn is_usual(dir: &[u8]) -> bool {
    dir.len() > 1
        && dir.starts_with(b"/")
        && std::str::from_utf8(dir).is_ok()
        && dir
            .iter()
            .all(|&byte| byte == b'/' || byte == b',' || byte == b'=' || is_path_byte(byte))
}

fn trim_slash(bytes: &[u8]) -> &[u8] {
    match bytes {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => bytes,
    }
}

/// Every `from` that starts a path in `text` (as [`BaseDirs::template`] finds dirs) replaced by
/// `to`.
fn replace_dir(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'/'
            && (at == 0 || !is_path_byte(text[at - 1]))
            && starts_with_dir(&text[at..], from)
        {
            out.extend_from_slice(to);
            at += from.len();
            continue;
        }
        out.push(text[at]);
        at += 1;
    }
    out
}

/// `CARGO_HOME` as cargo finds it: the variable, else `$HOME/.cargo`; only an absolute path.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".cargo")))
        .filter(|home| home.is_absolute())
}

/// The target dir of a cargo unit: the dir above the profile dir that holds `deps` (named by
/// `-L dependency=`), and above the target triple's dir when one is given.
pub fn cargo_target_dir(dependency_dirs: &[PathBuf], target: Option<&str>) -> Option<PathBuf> {
    let deps = dependency_dirs
        .iter()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))?;
    let profile_dir = deps.parent()?;
    let mut target_dir = profile_dir.parent()?;
    let triple = target.map(|target| {
        Path::new(target)
            .file_stem()
            .map_or(target.into(), |stem| stem.to_os_string())
    });
    if let Some(triple) = triple
        && target_dir.file_name() == Some(triple.as_os_str())
    {
        target_dir = target_dir.parent()?;
    }
    Some(target_dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> BaseDirs {
        BaseDirs::new(vec![
            (Role::Cwd, "/home/me/ws".into()),
            (Role::CargoHome, "/home/me/.cargo".into()),
            (Role::Target, "/home/me/ws/target".into()),
            (Role::Sysroot, "/opt/rust".into()),
        ])
        .unwrap()
    }

    #[test]
    fn a_path_is_normalized_by_its_most_specific_dir() {
        let bases = bases();
        assert_eq!(
            bases
                .normalize(b"/home/me/ws/target/debug/build/x/out")
                .as_ref(),
            b"\0target\0/debug/build/x/out"
        );
        assert_eq!(
            bases.normalize(b"/home/me/ws/src/lib.rs").as_ref(),
            b"\0cwd\0/src/lib.rs"
        );
        assert_eq!(
            bases.normalize(b"/home/me/ws2/src").as_ref(),
            b"/home/me/ws2/src"
        );
        assert_eq!(bases.normalize(b"src/lib.rs").as_ref(), b"src/lib.rs");
    }

    #[test]
    fn templates_expand_to_the_restoring_units_dirs() {
        let first = bases();
        let second = BaseDirs::new(vec![
            (Role::Cwd, "/ci/build/checkout".into()),
            (Role::CargoHome, "/ci/.cargo".into()),
            (Role::Target, "/tmp/t".into()),
            (Role::Sysroot, "/opt/rust".into()),
        ])
        .unwrap();
        let text = b"/home/me/ws/target/debug/deps/libx.rmeta: src/lib.rs \
            /home/me/.cargo/registry/src/a.rs /home/me/ws2/b.rs\n\
            # env-dep:OUT_DIR=/home/me/ws/target/debug/build/x/out\n";
        let template = first.template(text);
        let has = |needle: &[u8]| template.windows(needle.len()).any(|w| w == needle);
        assert!(!has(b"/home/me/ws/") && !has(b"/home/me/.cargo"));
        assert!(
            has(b"/home/me/ws2/b.rs"),
            "another dir that shares a prefix stays"
        );
        let expanded = second.expand(&template).unwrap();
        assert_eq!(
            String::from_utf8(expanded).unwrap(),
            "/tmp/t/debug/deps/libx.rmeta: src/lib.rs /ci/.cargo/registry/src/a.rs \
             /home/me/ws2/b.rs\n# env-dep:OUT_DIR=/tmp/t/debug/build/x/out\n"
        );
        assert_eq!(BaseDirs::none().expand(&template), None);
    }

    #[test]
    fn remapped_names_are_put_back() {
        let bases = bases();
        assert_eq!(
            bases.unremap(b" --> /rcache/cargo-home/registry/x.rs:1:2 /rcache/cwdx"),
            b" --> /home/me/.cargo/registry/x.rs:1:2 /rcache/cwdx".to_vec()
        );
        let args: Vec<String> = bases
            .remap_args()
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--remap-path-prefix=/home/me/ws=/rcache/cwd",
                "--remap-path-prefix=/home/me/.cargo=/rcache/cargo-home",
                "--remap-path-prefix=/home/me/ws/target=/rcache/target",
            ]
        );
    }

    #[test]
    fn a_cwd_under_cargo_home_is_named_by_it() {
        let bases = BaseDirs::new(vec![
            (Role::Cwd, "/h/.cargo/registry/src/i/serde-1.0.0".into()),
            (Role::CargoHome, "/h/.cargo".into()),
        ])
        .unwrap();
        assert_eq!(bases.roles(), ["cargo-home"]);
        assert_eq!(
            bases
                .normalize(b"/h/.cargo/registry/src/i/serde-1.0.0")
                .as_ref(),
            b"\0cargo-home\0/registry/src/i/serde-1.0.0"
        );
    }

    #[test]
    fn unusual_dirs_make_the_unit_path_bound() {
        for dir in ["/", "relative", "/a b", "/a\"b", "/a\\b", "/a\nb"] {
            assert_eq!(
                BaseDirs::new(vec![(Role::Cwd, dir.into())]),
                Err(PathBound::UnusualBaseDir),
                "{dir:?}"
            );
        }
    }

    #[test]
    fn the_target_dir_is_found_above_the_profile_and_triple() {
        let deps = |dir: &str| vec![PathBuf::from(dir)];
        assert_eq!(
            cargo_target_dir(&deps("/w/target/debug/deps"), None),
            Some("/w/target".into())
        );
        assert_eq!(
            cargo_target_dir(
                &deps("/w/target/x86_64-unknown-linux-gnu/release/deps"),
                Some("x86_64-unknown-linux-gnu")
            ),
            Some("/w/target".into())
        );
        assert_eq!(cargo_target_dir(&deps("/w/lib"), None), None);
    }
}
