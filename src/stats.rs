//! Counters, reasons and the events log (DESIGN.md §8).
//!
//! Every wrapper invocation counts once in `requests` and exactly once in one of `hits`,
//! `misses`, `passthrough` or `errors`, with its reason under `passthrough_reasons`,
//! `not_stored` or `error_reasons`. Counters live in the state env; [`Report`] adds the index
//! totals. `RCACHE_EVENTS=<file>` gets one JSON line per invocation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::store::state::StateUpdate;

/// What one wrapper invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hit {
        saved_ms: u64,
    },
    /// Compiled; `not_stored` names why nothing was stored.
    Miss {
        not_stored: Option<String>,
    },
    Passthrough {
        reason: String,
    },
    /// A cache fault, after which the compiler ran.
    Error {
        reason: String,
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

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Hit { .. } => None,
            Outcome::Miss { not_stored } => not_stored.as_deref(),
            Outcome::Passthrough { reason } | Outcome::Error { reason } => Some(reason),
        }
    }

    /// Adds this outcome's counter increments to `update`.
    pub fn count(&self, update: &mut StateUpdate) {
        update.count("requests", 1);
        match self {
            Outcome::Hit { saved_ms } => {
                update.count("hits", 1);
                update.count("time_saved_ms", *saved_ms);
            }
            Outcome::Miss { not_stored } => {
                update.count("misses", 1);
                if let Some(reason) = not_stored {
                    update.count(format!("not_stored.{reason}"), 1);
                }
            }
            Outcome::Passthrough { reason } => {
                update.count("passthrough", 1);
                update.count(format!("passthrough_reasons.{reason}"), 1);
            }
            Outcome::Error { reason } => {
                update.count("errors", 1);
                update.count(format!("error_reasons.{reason}"), 1);
            }
        }
    }
}

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

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// `rcache stats --json`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cache_dir: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub passthrough: u64,
    pub errors: u64,
    pub passthrough_reasons: BTreeMap<String, u64>,
    pub not_stored: BTreeMap<String, u64>,
    pub error_reasons: BTreeMap<String, u64>,
    pub time_saved_ms: u64,
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
}

impl Report {
    /// Fills the counter fields from the state env's counters.
    pub fn add_counters(&mut self, counters: &[(String, u64)]) {
        for (name, value) in counters {
            let value = *value;
            if let Some((group, reason)) = name.split_once('.') {
                let map = match group {
                    "passthrough_reasons" => &mut self.passthrough_reasons,
                    "not_stored" => &mut self.not_stored,
                    "error_reasons" => &mut self.error_reasons,
                    _ => continue,
                };
                map.insert(reason.to_string(), value);
                continue;
            }
            match name.as_str() {
                "requests" => self.requests = value,
                "hits" => self.hits = value,
                "misses" => self.misses = value,
                "passthrough" => self.passthrough = value,
                "errors" => self.errors = value,
                "time_saved_ms" => self.time_saved_ms = value,
                "auto_gc_runs" => self.auto_gc_runs = value,
                "auto_gc_faults" => self.auto_gc_faults = value,
                _ => {}
            }
        }
    }

    /// Hits as a share of cacheable requests (hits + misses + errors).
    pub fn hit_rate(&self) -> Option<f64> {
        let cacheable = self.hits + self.misses + self.errors;
        (cacheable > 0).then(|| self.hits as f64 / cacheable as f64)
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
                not_stored: Some("compile_failed".into()),
            },
            Outcome::Passthrough {
                reason: "probe".into(),
            },
            Outcome::Error {
                reason: "disk_full".into(),
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
        assert_eq!(report.requests, 5);
        assert_eq!(
            report.requests,
            report.hits + report.misses + report.passthrough + report.errors
        );
        assert_eq!(report.not_stored.get("compile_failed"), Some(&1));
        assert_eq!(report.error_reasons.get("disk_full"), Some(&1));
        assert_eq!(report.time_saved_ms, 10);
    }
}
