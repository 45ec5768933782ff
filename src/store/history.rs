//! The explain history (issue 16; store-format/README.md §3): for each unit (a crate's compile,
//! a C source's, a package's build-script run), its last [`HISTORY_LEN`] invocations that did not
//! hit: what went into the key, the inputs a miss recorded, and the outcome. `rcache explain`
//! compares the newest with the one before it. Kept in the state env: expendable, written in the
//! invocation's one state transaction, and only by invocations that ran the program or passed
//! through, never by a hit.

use serde::{Deserialize, Serialize};

use super::entry::{EnvRecord, InputRecord};
use crate::hash::{Key, KeyHasher};

/// Records kept per unit, newest first.
pub const HISTORY_LEN: usize = 8;

/// One invocation of a unit that did not hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub ts_ms: u64,
    /// The build it belonged to: a hash of the parent process's pid and start time (cargo).
    pub build: u64,
    /// `rustc`, `cc` or `build_script_run`.
    pub kind: String,
    pub name: String,
    /// The package cargo names (`CARGO_PKG_NAME`): tells every package's `build_script_build`
    /// apart, and a C source from the package whose build script compiled it.
    pub package: Option<String>,
    pub crate_types: Vec<String>,
    /// `miss` or `passthrough` (or `error`, when the program ran after a fault).
    pub outcome: String,
    /// The not-stored, passthrough or error reason.
    pub reason: Option<String>,
    /// What went into the invocation key, as `(field, value)` text with base dirs templated:
    /// `compiler`, `arg`, `env`, `extern` (`name=<content hash>`), ... Empty for a passthrough.
    pub facts: Vec<(String, String)>,
    /// The inputs the miss recorded (its candidate), when it was stored.
    pub inputs: Vec<InputRecord>,
    pub env_deps: Vec<EnvRecord>,
}

/// A unit's records, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitHistory {
    pub records: Vec<UnitRecord>,
}

impl UnitHistory {
    /// Puts `record` first and keeps the newest [`HISTORY_LEN`].
    pub fn push(&mut self, record: UnitRecord) {
        self.records.insert(0, record);
        self.records.truncate(HISTORY_LEN);
    }
}

/// Who a unit is: its kind, package (name and semver-compatible line, see [`version_line`]),
/// name and crate types.
pub struct UnitIdentity<'a> {
    pub kind: &'a str,
    pub package: Option<&'a str>,
    pub version_line: Option<&'a str>,
    pub name: &'a str,
    pub crate_types: &'a [String],
}

/// The key of a unit's history.
pub fn unit_id(unit: &UnitIdentity) -> Key {
    let mut key = KeyHasher::new("unit-history", 2);
    key.str_field("kind", unit.kind);
    key.opt_field("package", unit.package.map(str::as_bytes));
    key.opt_field("version-line", unit.version_line.map(str::as_bytes));
    let (name, crate_types) = (unit.name, unit.crate_types);
    key.str_field("name", name);
    for crate_type in crate_types {
        key.str_field("crate-type", crate_type);
    }
    key.finish()
}

/// The semver-compatible line of a package version (`CARGO_PKG_VERSION`): `2` for 2.0.119, `0.3`
/// for 0.3.7, `0.0.5` for 0.0.5. Two versions of a package in one build are always on different
/// lines (cargo unifies compatible ones), so they are two units; an upgrade within a line is the
/// same unit, whose explanation names the version that changed.
pub fn version_line(version: &str) -> String {
    let numbers: Vec<&str> = version
        .split(['-', '+'])
        .next()
        .unwrap_or_default()
        .split('.')
        .collect();
    match numbers.as_slice() {
        ["0", "0", patch, ..] => format!("0.0.{patch}"),
        ["0", minor, ..] => format!("0.{minor}"),
        [major, ..] => (*major).to_string(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_ms: u64) -> UnitRecord {
        UnitRecord {
            ts_ms,
            build: 1,
            kind: "rustc".into(),
            name: "demo".into(),
            package: Some("demo".into()),
            crate_types: vec!["lib".into()],
            outcome: "miss".into(),
            reason: None,
            facts: vec![],
            inputs: vec![],
            env_deps: vec![],
        }
    }

    #[test]
    fn versions_on_one_semver_line_are_one_unit() {
        assert_eq!(version_line("2.0.119"), "2");
        assert_eq!(version_line("3.0.10"), "3");
        assert_eq!(version_line("0.3.7"), "0.3");
        assert_eq!(version_line("0.0.5"), "0.0.5");
        assert_eq!(version_line("1.0.0-beta.2"), "1");
    }

    #[test]
    fn a_history_keeps_the_newest_records_first() {
        let mut history = UnitHistory::default();
        for ts in 0..HISTORY_LEN as u64 + 3 {
            history.push(record(ts));
        }
        assert_eq!(history.records.len(), HISTORY_LEN);
        assert_eq!(history.records[0].ts_ms, HISTORY_LEN as u64 + 2);
        assert_eq!(history.records[HISTORY_LEN - 1].ts_ms, 3);
    }
}
