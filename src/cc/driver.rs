//! Which programs are C compilers, and where the real one is.
//!
//! A name is a C compiler driver when, without a trailing version (`gcc-12`, `clang-14`) and
//! without a target prefix (`x86_64-linux-gnu-gcc`), it is one of [`DRIVER_NAMES`]. For the
//! ccache-style symlink form and for `rcache cc`, the real compiler is the first program of that
//! name on PATH that does not resolve to rcache itself, so a link placed first on PATH never
//! calls itself.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::Language;

/// The driver names rcache treats as C and C++ compilers.
pub const DRIVER_NAMES: [&str; 6] = ["cc", "c++", "gcc", "g++", "clang", "clang++"];

/// The driver name `name` stands for (`gcc-12` -> `gcc`), if it is a C compiler.
pub fn driver_name(name: &str) -> Option<&'static str> {
    let unversioned = strip_version(name);
    DRIVER_NAMES.into_iter().find(|driver| {
        unversioned == *driver
            || unversioned
                .strip_suffix(driver)
                .is_some_and(|prefix| prefix.ends_with('-'))
    })
}

fn strip_version(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((stem, version))
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            stem
        }
        _ => name,
    }
}

/// True if `program` (a name or a path) is a C or C++ compiler driver.
pub fn is_c_compiler(program: &OsStr) -> bool {
    Path::new(program)
        .file_name()
        .and_then(OsStr::to_str)
        .and_then(driver_name)
        .is_some()
}

/// The language a driver compiles when nothing else says (for counting calls that are not
/// classified further, such as links).
pub fn default_language(program: &OsStr) -> Language {
    let name = Path::new(program)
        .file_name()
        .and_then(OsStr::to_str)
        .and_then(driver_name);
    match name {
        Some("c++" | "g++" | "clang++") => Language::Cxx,
        _ => Language::C,
    }
}

/// This process's own executable, canonicalized.
fn own_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()?.canonicalize().ok()
}

/// The first file named `name` on PATH that is not rcache itself (a ccache-style link to rcache
/// placed first on PATH is skipped, so the real program is found and nothing loops).
pub fn real_program_on_path(name: &OsStr) -> Option<PathBuf> {
    let own = own_exe();
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .filter(|candidate| candidate.is_file())
        .find(|candidate| own.is_none() || candidate.canonicalize().ok() != own)
}

/// The real compiler for `program` as rcache was given it: a path is used as is, unless it is
/// rcache itself (a link), in which case its name is looked up on PATH like a bare name.
pub fn resolve_compiler(program: &OsStr, cwd: &Path) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        let absolute = cwd.join(path);
        let is_self = absolute
            .canonicalize()
            .ok()
            .is_some_and(|real| Some(real) == own_exe());
        if !is_self {
            return absolute.is_file().then_some(absolute);
        }
        return real_program_on_path(path.file_name()?);
    }
    real_program_on_path(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised() {
        for name in [
            "cc",
            "gcc",
            "g++",
            "clang++",
            "gcc-12",
            "clang-14",
            "x86_64-linux-gnu-gcc",
        ] {
            assert!(driver_name(name).is_some(), "{name}");
        }
        for name in ["rustc", "rcache", "ld", "xcc", "clang-tidy", "gcc-ar"] {
            assert!(driver_name(name).is_none(), "{name}");
        }
        assert_eq!(
            default_language(OsStr::new("/usr/bin/clang++-14")),
            Language::Cxx
        );
        assert_eq!(default_language(OsStr::new("cc")), Language::C);
    }
}
