//! [`Run`]: a finished command and the rcache events it logged, with assertions on each
//! crate's outcome; parsing the events log against the format in README.md; comparing output files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::ExitStatus;

use serde_json::Value;

/// A finished command and the rcache events it produced.
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl Run {
    /// The events of invocations that compiled `krate` (build-script runs, logged under their
    /// package name, are not compiles).
    pub fn events_for(&self, krate: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["crate"].as_str() == Some(krate) && e["kind"] != "build_script_run")
            .collect()
    }

    /// The single event for `krate`, or `None` if cargo did not compile it in this run.
    #[track_caller]
    pub fn event(&self, krate: &str) -> Option<&Value> {
        let found = self.events_for(krate);
        assert!(
            found.len() <= 1,
            "{}: {} events for {krate}\n{}",
            self.what,
            found.len(),
            self.describe_events()
        );
        found.first().copied()
    }

    #[track_caller]
    fn expect_event(&self, krate: &str) -> &Value {
        match self.event(krate) {
            Some(e) => e,
            None => panic!(
                "{}: no rcache event for {krate}\n{}",
                self.what,
                self.describe_events()
            ),
        }
    }

    /// `krate` was restored from the cache.
    #[track_caller]
    pub fn assert_hit(&self, krate: &str) {
        let e = self.expect_event(krate);
        assert_eq!(
            e["outcome"],
            "hit",
            "{}: {krate} should hit\n{}",
            self.what,
            self.describe_events()
        );
    }

    /// `krate` was compiled and its outputs were stored.
    #[track_caller]
    pub fn assert_stored_miss(&self, krate: &str) {
        let e = self.expect_event(krate);
        let ok = e["outcome"] == "miss" && e["stored"] == true && e["reason"].is_null();
        assert!(
            ok,
            "{}: {krate} should be a stored miss\n{}",
            self.what,
            self.describe_events()
        );
    }

    /// `krate` was compiled and nothing was stored, for `reason`.
    #[track_caller]
    pub fn assert_unstored_miss(&self, krate: &str, reason: &str) {
        let e = self.expect_event(krate);
        let ok = e["outcome"] == "miss" && e["stored"] == false && e["reason"] == reason;
        assert!(
            ok,
            "{}: {krate} should be a miss not stored for {reason}\n{}",
            self.what,
            self.describe_events()
        );
    }

    /// Cargo did not recompile `krate`, or rcache restored it: in no case a miss.
    #[track_caller]
    pub fn assert_not_miss(&self, krate: &str) {
        if let Some(e) = self.event(krate) {
            assert_eq!(
                e["outcome"],
                "hit",
                "{}: {krate} is unaffected by the change\n{}",
                self.what,
                self.describe_events()
            );
        }
    }

    /// `krate` went straight to rustc, for `reason`.
    #[track_caller]
    pub fn assert_passthrough(&self, krate: &str, reason: &str) {
        let e = self.expect_event(krate);
        let ok = e["outcome"] == "passthrough" && e["reason"] == reason;
        assert!(
            ok,
            "{}: {krate} should pass through with {reason}\n{}",
            self.what,
            self.describe_events()
        );
    }

    /// The events, one line each, for failure messages.
    pub fn describe_events(&self) -> String {
        let mut s = format!("events of `{}`:\n", self.what);
        for e in &self.events {
            s.push_str(&format!(
                "  crate={} types={} outcome={} reason={} stored={} remote={}\n",
                e["crate"], e["crate_types"], e["outcome"], e["reason"], e["stored"], e["remote"]
            ));
            if let Some(detail) = e.get("detail") {
                s.push_str(&format!("    detail={detail}\n"));
            }
        }
        s
    }

    /// The stderr lines cargo's own status lines removed: rustc's rendered diagnostics.
    pub fn diagnostics(&self) -> String {
        diagnostics(&self.stderr)
    }
}

/// Drops cargo's status lines (`   Compiling x`, `    Finished ...`) from cargo's stderr,
/// keeping what rustc rendered. Status lines are right-aligned, capitalised verbs.
pub fn diagnostics(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| {
            let trimmed = line.trim_start();
            let verb = trimmed.split(' ').next().unwrap_or("");
            let status = line.starts_with(' ')
                && trimmed.len() > verb.len()
                && verb.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && verb.chars().all(|c| c.is_ascii_alphabetic());
            !status
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Asserts two sets of files are the same names with byte-identical contents, and that there
/// is something to compare (two empty sets would prove nothing).
#[track_caller]
pub fn assert_same_files(
    expected: &BTreeMap<String, Vec<u8>>,
    actual: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert!(!expected.is_empty(), "{what}: no expected files to compare");
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(expected),
        names(actual),
        "{what}: different file names"
    );
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(name, bytes)| actual[*name] != **bytes)
        .map(|(name, _)| name)
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: contents differ: {differing:?}"
    );
}

/// Asserts that no file under `tree` holds `foreign` (another checkout's, target dir's or
/// `CARGO_HOME`'s path) anywhere in its bytes: rcache's outputs name only their own dirs.
#[track_caller]
pub fn assert_no_file_names(tree: &Path, foreign: &Path) {
    // `<dir>/`: `/t/target` must not match `/t/target-b`.
    let mut needle = foreign.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let mut checked = 0;
    let mut holding = Vec::new();
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                checked += 1;
                let bytes = fs::read(entry.path()).unwrap();
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_slice())
                {
                    holding.push(entry.path());
                }
            }
        }
    }
    assert!(checked > 0, "no files under {}", tree.display());
    assert!(
        holding.is_empty(),
        "{} files under {} hold {}: {holding:?}",
        holding.len(),
        tree.display(),
        foreign.display()
    );
}

/// Parses an events log and checks each line against the contract's shape.
pub(super) fn read_events(path: &Path) -> Vec<Value> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad events line ({e}): {line}"));
            check_event_shape(&event, line);
            event
        })
        .collect()
}

fn check_event_shape(e: &Value, line: &str) {
    let ok = e["ts_ms"].is_u64()
        && e["pid"].is_u64()
        && e["kind"].is_string()
        && (e["crate"].is_string() || e["crate"].is_null())
        && e["crate_types"].is_array()
        && matches!(
            e["outcome"].as_str(),
            Some("hit" | "miss" | "passthrough" | "error")
        )
        && (e["reason"].is_string() || e["reason"].is_null())
        && e["stored"].is_boolean()
        && e["duration_ms"].is_number()
        && e["cwd"].as_str().is_some_and(|c| c.starts_with('/'))
        // Absent or null when the remote was not asked (README.md, "Remote storage").
        && (e["remote"].is_null()
            || matches!(
                e["remote"].as_str(),
                Some("hit" | "miss" | "error" | "skipped" | "not_asked" | "rejected")
            ));
    assert!(
        ok,
        "events line does not follow the events format in README.md: {line}"
    );
}
