//! `rcache report [--build ID] [--list] [--json] [--html FILE]`: what a build got from the cache
//! (issue 16), from the build log (`store::builds`).
//!
//! A build is one cargo process: every invocation it started (and the C/C++ compiles of its
//! build scripts, which inherit its id) is logged under it, so two builds running at once on one
//! store are reported apart. **The last build** is the one whose latest unit ended last, among
//! builds that compiled or ran something (a `cargo metadata` that only probed `rustc -vV` is
//! not a build a user means). The report: each unit's kind, outcome and reason, the wrapper's
//! own time and the time a hit saved; the totals, counted as `rcache stats` counts them; the
//! misses grouped by root cause, as `rcache explain` gives them. `--html` writes the same as one
//! self-contained page with a timeline (`report_html`).

use std::path::Path;

use serde::Serialize;

use super::explain::{self, Explanation};
use crate::config::Config;
use crate::stats::Counts;
use crate::store::Store;
use crate::store::builds::{BuildSummary, BuildUnit};

/// One build's report (`--json`).
#[derive(Debug, Serialize)]
pub struct BuildReport {
    /// The build's id: 16 hex digits, as `--build` takes it.
    pub build: String,
    /// The first unit's start, unix ms.
    pub first_ms: u64,
    /// From the first unit's start to the last one's end.
    pub wall_ms: u64,
    /// Units past the log's per-build bound, counted but not listed.
    pub dropped: u32,
    /// Builds that ran at the same time on this store, reported apart.
    pub concurrent: Vec<String>,
    /// The build's compiles, as `rcache stats` counts them (the units listed: a build past the
    /// log's bound counts its `dropped` units in the stats only).
    pub compiles: Counts,
    /// The build's build-script runs, counted apart as in `rcache stats`.
    pub build_scripts: Counts,
    /// Every unit, in start order.
    pub units: Vec<BuildUnit>,
    /// Why each unit that did not hit missed (`rcache explain`).
    pub causes: Vec<Explanation>,
}

/// One line of `--list`.
#[derive(Debug, Serialize)]
pub struct BuildListing {
    pub build: String,
    pub first_ms: u64,
    pub last_ms: u64,
    pub units: u32,
}

/// What `rcache report` was asked for.
pub struct ReportRequest<'a> {
    pub build: Option<&'a str>,
    pub list: bool,
    pub json: bool,
    pub html: Option<&'a Path>,
}

pub fn run(config: &Config, request: &ReportRequest) -> anyhow::Result<()> {
    let store = super::stats::open(config)?;
    let mut out = String::new();
    if request.list {
        let listing = listing(&store)?;
        out = if request.json {
            serde_json::to_string_pretty(&listing)? + "\n"
        } else {
            listing_text(&listing)
        };
    } else {
        let build = match request.build {
            Some(text) => parse_build(text)?,
            None => last_build(&store)?.ok_or_else(|| {
                anyhow::anyhow!("no build is recorded yet: build with RUSTC_WRAPPER=rcache first")
            })?,
        };
        let report = build_report(&store, build)?;
        if let Some(path) = request.html {
            fs_err::write(path, super::report_html::page(&report))?;
            out.push_str(&format!("rcache: wrote {}\n", path.display()));
        }
        if request.json {
            out.push_str(&(serde_json::to_string_pretty(&report)? + "\n"));
        } else if request.html.is_none() {
            out.push_str(&text(&report));
        }
    }
    super::stats::print_all(&out);
    Ok(())
}

fn parse_build(text: &str) -> anyhow::Result<u64> {
    u64::from_str_radix(text.trim(), 16)
        .map_err(|_| anyhow::anyhow!("{text:?} is not a build id (16 hex digits, from --list)"))
}

/// The build whose latest unit ended last, among builds that compiled or ran something.
pub fn last_build(store: &Store) -> anyhow::Result<Option<u64>> {
    Ok(store
        .state
        .builds()?
        .into_iter()
        .filter(|(_, summary)| summary.named_units > 0)
        .max_by_key(|(_, summary)| summary.last_ms)
        .map(|(build, _)| build))
}

fn listing(store: &Store) -> anyhow::Result<Vec<BuildListing>> {
    let mut builds = store.state.builds()?;
    builds.sort_by_key(|(_, summary)| std::cmp::Reverse(summary.last_ms));
    Ok(builds
        .into_iter()
        .map(|(build, summary)| BuildListing {
            build: crate::warn_once::build_id_text(build),
            first_ms: summary.first_ms,
            last_ms: summary.last_ms,
            units: summary.units + summary.dropped,
        })
        .collect())
}

/// Gathers one build's report.
pub fn build_report(store: &Store, build: u64) -> anyhow::Result<BuildReport> {
    let builds = store.state.builds()?;
    let Some(summary) = builds.iter().find(|(id, _)| *id == build).map(|(_, s)| *s) else {
        anyhow::bail!(
            "build {} is not in the log (`rcache report --list` shows the builds kept)",
            crate::warn_once::build_id_text(build)
        );
    };
    let overlaps = |other: &BuildSummary| {
        other.first_ms <= summary.last_ms && summary.first_ms <= other.last_ms
    };
    let concurrent = builds
        .iter()
        .filter(|(id, other)| *id != build && other.named_units > 0 && overlaps(other))
        .map(|(id, _)| crate::warn_once::build_id_text(*id))
        .collect();
    let units = store.state.build_units(build)?;
    let mut compiles = Counts::default();
    let mut build_scripts = Counts::default();
    for unit in &units {
        let counts = if unit.build_script_run {
            &mut build_scripts
        } else {
            &mut compiles
        };
        counts.add(
            &unit.outcome,
            unit.reason.as_deref(),
            unit.saved_ms,
            unit.path_bound.as_deref(),
        );
    }
    let histories = store.state.unit_histories()?;
    Ok(BuildReport {
        build: crate::warn_once::build_id_text(build),
        first_ms: summary.first_ms,
        wall_ms: summary.last_ms.saturating_sub(summary.first_ms),
        dropped: summary.dropped,
        concurrent,
        compiles,
        build_scripts,
        units,
        causes: explain::explain_build(&histories, build),
    })
}

/// How a unit is named in a table: its name, its package when that says more (a build script,
/// a C source), and its crate types; `-` for an invocation with no name (cargo's `rustc -vV`,
/// a link by the C compiler driver), which its reason describes.
pub fn unit_label(unit: &BuildUnit) -> String {
    let Some(name) = &unit.name else {
        return "-".into();
    };
    let mut label = name.clone();
    if let Some(package) = &unit.package
        && *package != *name
        && package.replace('-', "_") != *name
    {
        label.push_str(&format!(" [{package}]"));
    }
    if !unit.crate_types.is_empty() {
        label.push_str(&format!(" {}", unit.crate_types.join(",")));
    }
    label
}

/// The kind as a table shows it.
pub fn kind_label(unit: &BuildUnit) -> &str {
    match unit.kind.as_str() {
        "build_script_run" => "run",
        other => other,
    }
}

/// `outcome` or `outcome (reason)`.
pub fn outcome_label(unit: &BuildUnit) -> String {
    match &unit.reason {
        Some(reason) => format!("{} ({reason})", unit.outcome),
        None => unit.outcome.clone(),
    }
}

/// One line of totals: `80 requests: 75 hits, 3 misses, 2 passthrough, 0 errors; 14.2 s saved`.
pub fn totals_line(counts: &Counts) -> String {
    format!(
        "{} requests: {} hits, {} misses, {} passthrough, {} errors; {:.1} s saved",
        counts.requests,
        counts.hits,
        counts.misses,
        counts.passthrough,
        counts.errors,
        counts.time_saved_ms as f64 / 1000.0
    )
}

fn text(report: &BuildReport) -> String {
    let mut out = format!(
        "Build {}: {} units in {:.1} s\n",
        report.build,
        report.units.len() as u64 + u64::from(report.dropped),
        report.wall_ms as f64 / 1000.0
    );
    for other in &report.concurrent {
        out.push_str(&format!(
            "Build {other} ran at the same time: `rcache report --build {other}`\n"
        ));
    }
    let width = report
        .units
        .iter()
        .map(|unit| unit_label(unit).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let outcome_width = report
        .units
        .iter()
        .map(|unit| outcome_label(unit).chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut table = format!(
        "{:>8} {:>9}  {:<5} {:<width$}  {:<outcome_width$} {:>8}\n",
        "start", "wrapper", "kind", "unit", "outcome", "saved"
    );
    for unit in &report.units {
        let saved = match unit.outcome.as_str() {
            "hit" => format!("{:.2} s", unit.saved_ms as f64 / 1000.0),
            _ => String::new(),
        };
        table.push_str(&format!(
            "{:>6.2} s {:>6.0} ms  {:<5} {:<width$}  {:<outcome_width$} {:>8}\n",
            unit.start_ms.saturating_sub(report.first_ms) as f64 / 1000.0,
            unit.duration_us as f64 / 1000.0,
            kind_label(unit),
            truncated(&unit_label(unit), width),
            outcome_label(unit),
            saved,
        ));
    }
    out.push('\n');
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if report.dropped > 0 {
        out.push_str(&format!("... and {} more units\n", report.dropped));
    }
    out.push_str(&format!("\nCompiles: {}\n", totals_line(&report.compiles)));
    out.push_str(&format!(
        "Build-script runs: {}\n",
        totals_line(&report.build_scripts)
    ));
    if !report.causes.is_empty() {
        out.push_str("\nMisses by cause:\n");
        out.push_str(&explain::text(&report.causes));
    }
    out
}

fn listing_text(listing: &[BuildListing]) -> String {
    let now = crate::clock::unix_ms(std::time::SystemTime::now());
    let mut out = String::from("build             started       wall  units\n");
    for build in listing {
        let ago = now.saturating_sub(build.first_ms) / 1000;
        out.push_str(&format!(
            "{}  {:>8} ago {:>6.1} s  {}\n",
            build.build,
            age(ago),
            build.last_ms.saturating_sub(build.first_ms) as f64 / 1000.0,
            build.units
        ));
    }
    out
}

fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// `text` cut to `width` characters, its end kept (a C source's file name).
fn truncated(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let tail: String = text.chars().skip(count - width + 1).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_keep_their_end() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("src/very/long/path.c", 8), "…/path.c");
        assert_eq!(truncated("src/very/long/path.c", 8).chars().count(), 8);
    }

    #[test]
    fn a_build_id_is_hex() {
        assert_eq!(parse_build("00000000000000ff").unwrap(), 255);
        assert!(parse_build("last").is_err());
    }
}
