//! Counters, reasons and the events log (docs/design.md §8).
//!
//! Every wrapper invocation counts once in `requests` and exactly once in one of `hits`,
//! `misses`, `passthrough` or `errors`, with its reason under `passthrough_reasons`,
//! `not_stored` or `error_reasons`. Counters live in the state env; [`Report`] adds the index
//! totals. `RCACHE_EVENTS=<file>` gets one JSON line per invocation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::store::state::StateUpdate;

pub(crate) mod reason;

pub use reason::{ErrorReason, NotStoredReason, PassthroughReason, RunPassthrough};

/// What one wrapper invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hit {
        saved_ms: u64,
    },
    /// Compiled; `not_stored` names why nothing was stored.
    Miss {
        not_stored: Option<NotStoredReason>,
    },
    Passthrough {
        reason: PassthroughReason,
    },
    /// A cache fault, after which the compiler ran.
    Error {
        reason: ErrorReason,
    },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Hit { .. } => "hit",
            Outcome::Miss { .. } => "miss",
            Outcome::Passthrough { .. } => "passthrough",
            Outcome::Error { .. } => "error",
        }
    }

    /// The reason's stable name, if the outcome has one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Hit { .. } => None,
            Outcome::Miss { not_stored } => not_stored.map(NotStoredReason::as_str),
            Outcome::Passthrough { reason } => Some(reason.as_str()),
            Outcome::Error { reason } => Some(reason.as_str()),
        }
    }

    /// Adds this outcome's counter increments to `update`, for a compile.
    pub fn count(&self, update: &mut StateUpdate) {
        self.count_with_prefix(update, "");
    }

    /// Adds this outcome's counter increments for a build-script run: the same counters under
    /// `build_scripts.`, outside the compile totals (docs/design.md §8).
    pub fn count_build_script_run(&self, update: &mut StateUpdate) {
        self.count_with_prefix(update, BUILD_SCRIPTS_PREFIX);
    }

    /// Adds this compile's increments to its language's split (`rust`, `c`, `cxx`, ...), on top
    /// of the totals that [`Outcome::count`] adds.
    pub fn count_language(&self, update: &mut StateUpdate, language: &str) {
        let prefix = format!("{LANGUAGES_PREFIX}{language}.");
        update.count(format!("{prefix}requests"), 1);
        let outcome = match self {
            Outcome::Hit { saved_ms } => {
                update.count(format!("{prefix}time_saved_ms"), *saved_ms);
                "hits"
            }
            Outcome::Miss { .. } => "misses",
            Outcome::Passthrough { .. } => "passthrough",
            Outcome::Error { .. } => "errors",
        };
        update.count(format!("{prefix}{outcome}"), 1);
    }

    fn count_with_prefix(&self, update: &mut StateUpdate, prefix: &str) {
        update.count(format!("{prefix}requests"), 1);
        match self {
            Outcome::Hit { saved_ms } => {
                update.count(format!("{prefix}hits"), 1);
                update.count(format!("{prefix}time_saved_ms"), *saved_ms);
            }
            Outcome::Miss { not_stored } => {
                update.count(format!("{prefix}misses"), 1);
                if let Some(reason) = not_stored {
                    update.count(format!("{prefix}not_stored.{}", reason.as_str()), 1);
                }
            }
            Outcome::Passthrough { reason } => {
                update.count(format!("{prefix}passthrough"), 1);
                update.count(
                    format!("{prefix}passthrough_reasons.{}", reason.as_str()),
                    1,
                );
            }
            Outcome::Error { reason } => {
                update.count(format!("{prefix}errors"), 1);
                update.count(format!("{prefix}error_reasons.{}", reason.as_str()), 1);
            }
        }
    }
}

/// Counter of build-script runs started with rcache's compiler links first on `PATH`.
pub const BUILD_SCRIPTS_CC_ROUTED: &str = "build_scripts_cc_routed";

/// Counter-name prefix of build-script runs.
pub(crate) const BUILD_SCRIPTS_PREFIX: &str = "build_scripts.";

/// Counter-name prefix of the per-language split of compiles: `languages.<language>.<outcome>`.
const LANGUAGES_PREFIX: &str = "languages.";

/// One line of the events log.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub ts_ms: u64,
    pub pid: u32,
    pub kind: &'a str,
    #[serde(rename = "crate")]
    pub crate_name: Option<&'a str>,
    pub crate_types: &'a [String],
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub stored: bool,
    pub duration_ms: f64,
    pub cwd: &'a Path,
    /// What the remote said, when it was asked (after a local miss): `hit`, `miss`,
    /// `rejected`, `error`, `skipped`.
    pub remote: Option<&'a str>,
    /// Why the unit is keyed with its real paths and not shared with other layouts, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_bound: Option<&'a str>,
    /// For an `error`, what the fault said (the file and the operation that failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// Appends one event line. Errors are ignored: the log is for people and tests, never a reason
/// to fail a build.
pub fn append_event(path: &Path, event: &Event) {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write of the whole line: O_APPEND keeps concurrent lines whole.
        let _ = file.write_all(&line);
    }
}

/// The outcome counters of one kind of request (compiles, or build-script runs).
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub passthrough: u64,
    pub errors: u64,
    pub passthrough_reasons: BTreeMap<String, u64>,
    pub not_stored: BTreeMap<String, u64>,
    pub error_reasons: BTreeMap<String, u64>,
    /// Units keyed with their real paths, not shared with other layouts, by reason
    /// (`key::base_dirs::PathBound`): counted on every request of such a unit.
    pub path_bound: BTreeMap<String, u64>,
    pub time_saved_ms: u64,
}

/// Sets a reason counter (`<group>.<reason>`) in its group's map, if `name` is one; true when
/// `name` has a group (a group not in `maps` is ignored).
fn set_reason<const N: usize>(
    name: &str,
    value: u64,
    maps: [(&str, &mut BTreeMap<String, u64>); N],
) -> bool {
    let Some((group, reason)) = name.split_once('.') else {
        return false;
    };
    if let Some((_, map)) = maps.into_iter().find(|(name, _)| *name == group) {
        map.insert(reason.to_string(), value);
    }
    true
}

impl Counts {
    /// Sets the field a counter (name without prefix) belongs to.
    fn set(&mut self, name: &str, value: u64) {
        let reasons = [
            ("passthrough_reasons", &mut self.passthrough_reasons),
            ("not_stored", &mut self.not_stored),
            ("error_reasons", &mut self.error_reasons),
            ("path_bound", &mut self.path_bound),
        ];
        if set_reason(name, value, reasons) {
            return;
        }
        match name {
            "requests" => self.requests = value,
            "hits" => self.hits = value,
            "misses" => self.misses = value,
            "passthrough" => self.passthrough = value,
            "errors" => self.errors = value,
            "time_saved_ms" => self.time_saved_ms = value,
            _ => {}
        }
    }

    /// Adds one invocation as the build log recorded it (`store::builds`): the same fields
    /// [`Outcome::count`] increments, so a build's report adds up to the counters' growth.
    pub fn add(
        &mut self,
        outcome: &str,
        reason: Option<&str>,
        saved_ms: u64,
        path_bound: Option<&str>,
    ) {
        self.requests += 1;
        let reasons = match outcome {
            "hit" => {
                self.hits += 1;
                self.time_saved_ms += saved_ms;
                None
            }
            "miss" => {
                self.misses += 1;
                Some(&mut self.not_stored)
            }
            "passthrough" => {
                self.passthrough += 1;
                Some(&mut self.passthrough_reasons)
            }
            _ => {
                self.errors += 1;
                Some(&mut self.error_reasons)
            }
        };
        if let (Some(reasons), Some(reason)) = (reasons, reason) {
            *reasons.entry(reason.to_string()).or_default() += 1;
        }
        if let Some(path_bound) = path_bound {
            *self.path_bound.entry(path_bound.to_string()).or_default() += 1;
        }
    }

    /// Hits as a share of cacheable requests (hits + misses + errors).
    pub fn hit_rate(&self) -> Option<f64> {
        let cacheable = self.hits + self.misses + self.errors;
        (cacheable > 0).then(|| self.hits as f64 / cacheable as f64)
    }
}

/// One language's share of the compile totals.
#[derive(Debug, Default, Serialize)]
pub struct LanguageCounts {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub passthrough: u64,
    pub errors: u64,
    pub time_saved_ms: u64,
}

impl LanguageCounts {
    fn set(&mut self, name: &str, value: u64) {
        match name {
            "requests" => self.requests = value,
            "hits" => self.hits = value,
            "misses" => self.misses = value,
            "passthrough" => self.passthrough = value,
            "errors" => self.errors = value,
            "time_saved_ms" => self.time_saved_ms = value,
            _ => {}
        }
    }
}

/// The remote's figures (`remote.*` counters), and its settings and queue.
#[derive(Debug, Default, Serialize)]
pub struct RemoteCounts {
    /// The configured remote, password masked; `None` when there is none.
    pub url: Option<String>,
    /// Lookups the remote answered with an entry (also counted as hits in the totals).
    pub hits: u64,
    pub misses: u64,
    /// Remote faults; the compile went on locally.
    pub errors: u64,
    pub error_reasons: BTreeMap<String, u64>,
    /// Lookups and uploads not tried because an earlier failure put the remote in backoff.
    pub skipped: u64,
    /// Lookups not sent because their build's first lookups all missed (`remote::cold`).
    pub not_asked: u64,
    /// Entries refused for their signature (each a remote miss).
    pub rejected: u64,
    pub rejected_reasons: BTreeMap<String, u64>,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Entries published.
    pub uploads: u64,
    /// Entries queued for the background uploader.
    pub pending_uploads: u64,
    /// The prefetcher's figures (`remote::prefetch`): `started`, `runs`, `fetched`, `used`,
    /// `unused`, `stopped_by.<done|build_end|remote_error>`.
    pub prefetch: BTreeMap<String, u64>,
}

impl RemoteCounts {
    fn set(&mut self, name: &str, value: u64) {
        let reasons = [
            ("error_reasons", &mut self.error_reasons),
            ("rejected_reasons", &mut self.rejected_reasons),
            ("prefetch", &mut self.prefetch),
        ];
        if set_reason(name, value, reasons) {
            return;
        }
        match name {
            "hits" => self.hits = value,
            "misses" => self.misses = value,
            "errors" => self.errors = value,
            "skipped" => self.skipped = value,
            "not_asked" => self.not_asked = value,
            "rejected" => self.rejected = value,
            "bytes_down" => self.bytes_down = value,
            "bytes_up" => self.bytes_up = value,
            "uploads" => self.uploads = value,
            _ => {}
        }
    }
}

/// Counter-name prefix of the remote's figures.
const REMOTE_PREFIX: &str = "remote.";

/// Counter-name prefix of the dev profile's incremental sessions (`wrapper::incremental`).
pub const INCREMENTAL_PREFIX: &str = "incremental.";

/// The incremental sessions kept with misses and put back on hits (`incremental.*` counters).
#[derive(Debug, Default, Serialize)]
pub struct IncrementalCounts {
    /// Sessions kept with a stored incremental compile.
    pub kept: u64,
    /// Stored incremental compiles whose session was not kept, by reason.
    pub not_kept: BTreeMap<String, u64>,
    /// Hits that put a kept session back into an empty crate dir.
    pub restored: u64,
    /// Hits with a kept session that was not put back, by reason.
    pub not_restored: BTreeMap<String, u64>,
}

impl IncrementalCounts {
    fn set(&mut self, name: &str, value: u64) {
        let reasons = [
            ("not_kept", &mut self.not_kept),
            ("not_restored", &mut self.not_restored),
        ];
        if set_reason(name, value, reasons) {
            return;
        }
        match name {
            "kept" => self.kept = value,
            "restored" => self.restored = value,
            _ => {}
        }
    }
}

/// `rcache stats --json`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cache_dir: String,
    /// Compiles (the totals of docs/design.md §8).
    #[serde(flatten)]
    pub compiles: Counts,
    /// Build-script runs, counted apart from the totals.
    pub build_scripts: Counts,
    /// Build-script runs whose C/C++ compiles rcache routed through itself (no `CC`/`CXX` set;
    /// `wrapper::build_script::cc_env`). Those compiles count in the totals like any other.
    pub build_scripts_cc_routed: u64,
    /// The compile totals split by language (`rust`, `c`, `cxx`, `objc`, `objcxx`, `asm`).
    pub languages: BTreeMap<String, LanguageCounts>,
    pub entries: u64,
    pub blobs: u64,
    pub store_bytes: u64,
    /// Bytes that storing each blob once saves: the sum over blobs of (refs - 1) * size.
    pub dedup_saved_bytes: u64,
    pub index_bytes: u64,
    pub cache_size_limit: u64,
    /// `RCACHE_MAX_AGE` in seconds, if set.
    pub max_age_secs: Option<u64>,
    /// Automatic gc runs (started by stores over the limit), and their faults.
    pub auto_gc_runs: u64,
    pub auto_gc_faults: u64,
    /// The remote cache (README.md "Remote storage").
    pub remote: RemoteCounts,
    /// The dev profile's incremental sessions (docs/design.md §6d).
    pub incremental: IncrementalCounts,
}

impl Report {
    /// Fills the counter fields from the state env's counters.
    pub fn add_counters(&mut self, counters: &[(String, u64)]) {
        for (name, value) in counters {
            if let Some((language, name)) = name
                .strip_prefix(LANGUAGES_PREFIX)
                .and_then(|rest| rest.split_once('.'))
            {
                self.languages
                    .entry(language.to_string())
                    .or_default()
                    .set(name, *value);
                continue;
            }
            if let Some(name) = name.strip_prefix(REMOTE_PREFIX) {
                self.remote.set(name, *value);
                continue;
            }
            if let Some(name) = name.strip_prefix(INCREMENTAL_PREFIX) {
                self.incremental.set(name, *value);
                continue;
            }
            match name.as_str() {
                "auto_gc_runs" => self.auto_gc_runs = *value,
                "auto_gc_faults" => self.auto_gc_faults = *value,
                BUILD_SCRIPTS_CC_ROUTED => self.build_scripts_cc_routed = *value,
                _ => match name.strip_prefix(BUILD_SCRIPTS_PREFIX) {
                    Some(name) => self.build_scripts.set(name, *value),
                    None => self.compiles.set(name, *value),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_counts_once_in_requests() {
        let outcomes = [
            Outcome::Hit { saved_ms: 10 },
            Outcome::Miss { not_stored: None },
            Outcome::Miss {
                not_stored: Some(NotStoredReason::CompileFailed),
            },
            Outcome::Passthrough {
                reason: crate::rustc::Passthrough::Probe.into(),
            },
            Outcome::Error {
                reason: ErrorReason::DiskFull,
            },
        ];
        let mut update = StateUpdate::default();
        for outcome in &outcomes {
            outcome.count(&mut update);
        }
        let mut report = Report::default();
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (name, by) in update.counters {
            *totals.entry(name).or_default() += by;
        }
        report.add_counters(&totals.into_iter().collect::<Vec<_>>());
        let counts = &report.compiles;
        assert_eq!(counts.requests, 5);
        assert_eq!(
            counts.requests,
            counts.hits + counts.misses + counts.passthrough + counts.errors
        );
        assert_eq!(counts.not_stored.get("compile_failed"), Some(&1));
        assert_eq!(counts.error_reasons.get("disk_full"), Some(&1));
        assert_eq!(counts.time_saved_ms, 10);
        assert_eq!(report.build_scripts.requests, 0);
    }

    #[test]
    fn languages_split_the_totals() {
        let mut update = StateUpdate::default();
        for (outcome, language) in [
            (Outcome::Hit { saved_ms: 3 }, "c"),
            (Outcome::Miss { not_stored: None }, "cxx"),
            (
                Outcome::Passthrough {
                    reason: crate::cc::passthrough::CcPassthrough::Linking.into(),
                },
                "c",
            ),
            (Outcome::Hit { saved_ms: 5 }, "rust"),
        ] {
            outcome.count(&mut update);
            outcome.count_language(&mut update, language);
        }
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (name, by) in update.counters {
            *totals.entry(name).or_default() += by;
        }
        let mut report = Report::default();
        report.add_counters(&totals.into_iter().collect::<Vec<_>>());
        assert_eq!(report.compiles.requests, 4);
        assert_eq!(report.compiles.hits, 2);
        let c = &report.languages["c"];
        assert_eq!(
            (c.requests, c.hits, c.passthrough, c.time_saved_ms),
            (2, 1, 1, 3)
        );
        assert_eq!(report.languages["cxx"].misses, 1);
        let sum: u64 = report
            .languages
            .values()
            .map(|counts| counts.requests)
            .sum();
        assert_eq!(sum, report.compiles.requests);
    }

    #[test]
    fn build_script_runs_are_counted_apart() {
        let mut update = StateUpdate::default();
        Outcome::Hit { saved_ms: 7 }.count_build_script_run(&mut update);
        Outcome::Passthrough {
            reason: RunPassthrough::LinkSearchOutsideOutDir.into(),
        }
        .count_build_script_run(&mut update);
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for (name, by) in update.counters {
            *totals.entry(name).or_default() += by;
        }
        let mut report = Report::default();
        report.add_counters(&totals.into_iter().collect::<Vec<_>>());
        assert_eq!(report.compiles.requests, 0);
        assert_eq!(report.build_scripts.requests, 2);
        assert_eq!(report.build_scripts.hits, 1);
        assert_eq!(
            report
                .build_scripts
                .passthrough_reasons
                .get("link_search_outside_out_dir"),
            Some(&1)
        );
    }
}
