//! The reasons counted in the stats and written to the events log: one enum per counter family
//! (`passthrough_reasons`, `not_stored`, `error_reasons`, and the remote's own
//! `remote.error_reasons`), each with a stable [`as_str`] name.
//!
//! The names are part of rcache's interface (README's reason tables, `rcache stats --json`, the
//! events log); a test checks every variant against README.
//!
//! [`as_str`]: ErrorReason::as_str

use std::io;

#[cfg(test)]
use strum::IntoEnumIterator;

use crate::cc::passthrough::CcPassthrough;
use crate::rustc::Passthrough;
use crate::store::StoreError;

/// Why an invocation was not cached: the real program ran exactly as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassthroughReason {
    /// A rustc argv rcache does not cache.
    Rustc(Passthrough),
    /// A C or C++ compiler argv rcache does not cache.
    Cc(CcPassthrough),
    /// A build-script run rcache does not cache.
    Run(RunPassthrough),
    /// The store is read-only: a setting, not a fault (one warning per build).
    ReadOnlyStore,
    /// The store belongs to another user (one warning per build).
    ForeignStore,
}

impl PassthroughReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            PassthroughReason::Rustc(reason) => reason.as_str(),
            PassthroughReason::Cc(reason) => reason.as_str(),
            PassthroughReason::Run(reason) => reason.as_str(),
            PassthroughReason::ReadOnlyStore => "read_only_store",
            PassthroughReason::ForeignStore => "foreign_store",
        }
    }

    /// The detail behind the reason (the unknown argument, ...), for the debug log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            PassthroughReason::Rustc(reason) => reason.detail(),
            PassthroughReason::Cc(reason) => reason.detail(),
            _ => None,
        }
    }

    /// Every reason, one value per variant (payloads empty).
    #[cfg(test)]
    pub fn all() -> impl Iterator<Item = PassthroughReason> {
        Passthrough::iter()
            .map(PassthroughReason::Rustc)
            .chain(CcPassthrough::iter().map(PassthroughReason::Cc))
            .chain(RunPassthrough::iter().map(PassthroughReason::Run))
            .chain([
                PassthroughReason::ReadOnlyStore,
                PassthroughReason::ForeignStore,
            ])
    }
}

impl From<Passthrough> for PassthroughReason {
    fn from(reason: Passthrough) -> Self {
        PassthroughReason::Rustc(reason)
    }
}

impl From<CcPassthrough> for PassthroughReason {
    fn from(reason: CcPassthrough) -> Self {
        PassthroughReason::Cc(reason)
    }
}

impl From<RunPassthrough> for PassthroughReason {
    fn from(reason: RunPassthrough) -> Self {
        PassthroughReason::Run(reason)
    }
}

/// Why a build-script run was not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum RunPassthrough {
    /// `RCACHE_DISABLE`.
    Disabled,
    /// `RCACHE_BUILD_SCRIPTS=off`.
    BuildScriptsOff,
    /// The launcher ran outside cargo (no absolute `OUT_DIR` and `CARGO_MANIFEST_DIR`).
    NotACargoRun,
    /// A declared input is a tree with more files than a run may key.
    TooManyRunInputs,
    /// A `rustc-link-search` path into another unit's build dir: neither restored nor keyed.
    LinkSearchOutsideOutDir,
    /// `rcache-launcher` is not beside `rcache`: the script is left to run uncached. Counted
    /// when the script is compiled or restored.
    LauncherMissing,
}

impl RunPassthrough {
    pub fn as_str(self) -> &'static str {
        match self {
            RunPassthrough::Disabled => "disabled",
            RunPassthrough::BuildScriptsOff => "build_scripts_off",
            RunPassthrough::NotACargoRun => "not_a_cargo_run",
            RunPassthrough::TooManyRunInputs => "too_many_inputs",
            RunPassthrough::LinkSearchOutsideOutDir => "link_search_outside_out_dir",
            RunPassthrough::LauncherMissing => "launcher_missing",
        }
    }
}

/// Why a compile or run that finished was not stored (a miss, counted under `not_stored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum NotStoredReason {
    /// The compiler exited with an error.
    CompileFailed,
    /// The build script exited with an error.
    ScriptFailed,
    /// The C dependency-only preprocessor run (for a caller's own dep file) failed.
    DepPassFailed,
    /// Another process held the store lock too long.
    StoreBusy,
    /// The compiler's dep-info is missing or lists no input.
    NoDepInfo,
    /// The linker wrote no `--dependency-file`.
    NoLinkerDepInfo,
    /// A file the linker read is gone: it could not be checked on a later hit.
    LinkerInputVanished,
    /// An input changed while the compiler read it.
    InputChangedDuringCompile,
    /// An input changed while the build script ran.
    InputChangedDuringRun,
    /// An output changed while rcache copied it into the store.
    OutputChangedWhileStoring,
    /// A C dep file whose target rcache cannot rewrite on a restore.
    DepFileTarget,
    /// A rustc `.d` file names a base dir where rcache cannot template it (docs/design.md §6e).
    DepInfoHoldsPath,
    /// A `.dwo` left by an earlier compile, not written by this one.
    StaleDwo,
    /// `OUT_DIR` holds a socket, fifo or device.
    SpecialFileInOutDir,
    /// `OUT_DIR` holds a path that is not UTF-8.
    NonUtf8OutDirPath,
}

impl NotStoredReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStoredReason::CompileFailed => "compile_failed",
            NotStoredReason::ScriptFailed => "script_failed",
            NotStoredReason::DepPassFailed => "dep_pass_failed",
            NotStoredReason::StoreBusy => "store_busy",
            NotStoredReason::NoDepInfo => "no_dep_info",
            NotStoredReason::NoLinkerDepInfo => "no_linker_dep_info",
            NotStoredReason::LinkerInputVanished => "linker_input_vanished",
            NotStoredReason::InputChangedDuringCompile => "input_changed_during_compile",
            NotStoredReason::InputChangedDuringRun => "input_changed_during_run",
            NotStoredReason::OutputChangedWhileStoring => "output_changed_while_storing",
            NotStoredReason::DepFileTarget => "dep_file_target",
            NotStoredReason::DepInfoHoldsPath => "dep_info_holds_path",
            NotStoredReason::StaleDwo => "stale_dwo",
            NotStoredReason::SpecialFileInOutDir => "special_file_in_out_dir",
            NotStoredReason::NonUtf8OutDirPath => "non_utf8_out_dir_path",
        }
    }
}

/// A cache fault, after which the real program ran (counted under `error_reasons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum ErrorReason {
    /// The disk (or a quota) is full.
    DiskFull,
    /// The store could not be written.
    ReadOnlyStore,
    /// A file rcache needed is gone.
    MissingFile,
    /// A record or blob does not decode or has the wrong content.
    CorruptStore,
    /// Any other I/O error.
    IoError,
    /// LMDB failed.
    IndexError,
    /// The store lock could not be taken in time.
    StoreBusy,
    /// A blob an entry names vanished between lookup and restore (gc).
    BlobVanished,
    /// The store belongs to another user.
    ForeignStore,
    /// The compiler's identity could not be read.
    CompilerIdentity,
    /// The real program could not be started.
    SpawnFailed,
}

impl ErrorReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::DiskFull => "disk_full",
            ErrorReason::ReadOnlyStore => "read_only_store",
            ErrorReason::MissingFile => "missing_file",
            ErrorReason::CorruptStore => "corrupt_store",
            ErrorReason::IoError => "io_error",
            ErrorReason::IndexError => "index_error",
            ErrorReason::StoreBusy => "store_busy",
            ErrorReason::BlobVanished => "blob_vanished",
            ErrorReason::ForeignStore => "foreign_store",
            ErrorReason::CompilerIdentity => "compiler_identity",
            ErrorReason::SpawnFailed => "spawn_failed",
        }
    }

    /// The reason an I/O error counts under, by its kind.
    pub fn of_io(err: &io::Error) -> ErrorReason {
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorReason::DiskFull,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                ErrorReason::ReadOnlyStore
            }
            io::ErrorKind::NotFound => ErrorReason::MissingFile,
            io::ErrorKind::InvalidData => ErrorReason::CorruptStore,
            _ => ErrorReason::IoError,
        }
    }

    /// The reason a store error counts under.
    pub fn of_store(err: &StoreError) -> ErrorReason {
        match err {
            StoreError::Io { source, .. } | StoreError::File(source) => ErrorReason::of_io(source),
            StoreError::Lmdb(heed::Error::Io(source)) => ErrorReason::of_io(source),
            StoreError::Lmdb(_) => ErrorReason::IndexError,
            StoreError::Corrupt(_) => ErrorReason::CorruptStore,
            StoreError::Busy => ErrorReason::StoreBusy,
            StoreError::BlobVanished(_) => ErrorReason::BlobVanished,
            StoreError::NotOwned { .. } => ErrorReason::ForeignStore,
        }
    }
}

/// A fault of the remote, after which the compile ran locally (counted under
/// `remote.error_reasons`). A local fault met while keeping what the remote sent, or restoring it,
/// is counted there too, under its [`ErrorReason`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum RemoteErrorReason {
    /// A request, or connecting, took longer than the timeout.
    Timeout,
    /// The connection failed (refused, reset, name not resolved, TLS).
    Unreachable,
    /// The service refused the request (credentials, permissions, no such bucket).
    Refused,
    /// Any other answer the client could not use.
    RemoteError,
    /// The settings do not describe a usable remote.
    Config,
    /// An entry envelope that is not one, or an entry that does not decode.
    BadEntry,
    /// A blob that does not decompress, or whose content is not its name.
    CorruptBlob,
    /// A blob that decompresses to more or fewer bytes than its entry records.
    BlobSizeMismatch,
}

impl RemoteErrorReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteErrorReason::Timeout => "timeout",
            RemoteErrorReason::Unreachable => "unreachable",
            RemoteErrorReason::Refused => "refused",
            RemoteErrorReason::RemoteError => "remote_error",
            RemoteErrorReason::Config => "config",
            RemoteErrorReason::BadEntry => "bad_entry",
            RemoteErrorReason::CorruptBlob => "corrupt_blob",
            RemoteErrorReason::BlobSizeMismatch => "blob_size_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::key::base_dirs::PathBound;

    /// README's table of a family: the first backquoted name of each row of the table under
    /// `heading`.
    fn readme_table(heading: &str) -> BTreeSet<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find(heading)
            .unwrap_or_else(|| panic!("README has no {heading:?}"));
        readme[start + heading.len()..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .filter_map(|row| {
                let cell = row.trim_start_matches('|').split('|').next()?;
                Some(cell.trim().trim_matches('`').to_string())
            })
            .collect()
    }

    fn assert_same(heading: &str, names: impl Iterator<Item = &'static str>) {
        let in_code: BTreeSet<String> = names.map(str::to_string).collect();
        let in_readme = readme_table(heading);
        let undocumented: Vec<_> = in_code.difference(&in_readme).collect();
        let stale: Vec<_> = in_readme.difference(&in_code).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "{heading}: not in README: {undocumented:?}; in README but no such reason: {stale:?}"
        );
    }

    #[test]
    fn readme_lists_every_passthrough_reason_and_no_other() {
        assert_same(
            "#### Passthrough reasons",
            PassthroughReason::all().map(|reason| reason.as_str()),
        );
    }

    #[test]
    fn readme_lists_every_not_stored_reason_and_no_other() {
        assert_same(
            "#### Not-stored reasons",
            NotStoredReason::iter().map(NotStoredReason::as_str),
        );
    }

    #[test]
    fn readme_lists_every_error_reason_and_no_other() {
        assert_same(
            "#### Error reasons",
            ErrorReason::iter().map(ErrorReason::as_str),
        );
    }

    #[test]
    fn readme_lists_every_remote_error_reason_and_no_other() {
        assert_same(
            "#### Remote error reasons",
            RemoteErrorReason::iter().map(RemoteErrorReason::as_str),
        );
    }

    #[test]
    fn readme_lists_every_path_bound_reason_and_no_other() {
        assert_same(
            "#### Path-bound reasons",
            PathBound::iter().map(PathBound::as_str),
        );
    }

    #[test]
    fn names_are_snake_case() {
        let names = PassthroughReason::all()
            .map(|reason| reason.as_str())
            .chain(NotStoredReason::iter().map(NotStoredReason::as_str))
            .chain(ErrorReason::iter().map(ErrorReason::as_str))
            .chain(RemoteErrorReason::iter().map(RemoteErrorReason::as_str))
            .chain(PathBound::iter().map(PathBound::as_str));
        for name in names {
            assert!(
                !name.is_empty()
                    && name.bytes().all(|byte| byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || byte == b'_'),
                "{name:?} is not snake_case"
            );
        }
    }
}
