//! `rcache stats [--json] [--zero]`: counters from the state env, totals from the index.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;

use crate::config::{Config, format_size};
use crate::stats::{Counts, Report};
use crate::store::Store;

/// Builds the report for the store in `config`.
pub fn report(config: &Config) -> anyhow::Result<Report> {
    let store = open(config)?;
    let mut report = Report {
        cache_dir: config.dir.value.display().to_string(),
        cache_size_limit: config.cache_size.value,
        max_age_secs: config.max_age.value.map(|age| age.as_secs()),
        ..Report::default()
    };
    report.add_counters(&store.state.counters()?);
    let rtxn = store.index.read_txn()?;
    let totals = store.index.totals(&rtxn)?;
    report.entries = totals.entries;
    report.blobs = totals.blobs;
    report.store_bytes = totals.store_bytes;
    report.dedup_saved_bytes = store.index.dedup_saved_bytes(&rtxn)?;
    report.index_bytes = store.index.file_bytes();
    report.remote.url = config
        .remote
        .location
        .value
        .as_ref()
        .map(ToString::to_string);
    report.remote.pending_uploads = crate::remote::queue::pending(&store)
        .map(|queued| queued.len() as u64)
        .unwrap_or(0);
    Ok(report)
}

/// Opens the store for a command, with advice when it is damaged.
pub fn open(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.dir.value).with_context(|| {
        format!(
            "opening the cache at {} (if it is damaged, `rcache clear` empties it; builds keep \
             working meanwhile, compiling everything)",
            config.dir.value.display()
        )
    })
}

pub fn show(config: &Config, json: bool) -> anyhow::Result<()> {
    let report = report(config)?;
    if json {
        print_all(&(serde_json::to_string_pretty(&report)? + "\n"));
        return Ok(());
    }
    let mut out = String::new();
    let compiles = &report.compiles;
    let scripts = &report.build_scripts;
    let rate = |counts: &Counts| {
        counts
            .hit_rate()
            .map_or_else(|| "-".to_string(), |rate| format!("{:.1} %", rate * 100.0))
    };
    let seconds = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let mut rows: Vec<(&str, String)> = vec![
        ("Cache location", report.cache_dir.clone()),
        ("Requests", compiles.requests.to_string()),
        ("Hits", compiles.hits.to_string()),
        ("Misses", compiles.misses.to_string()),
        (
            "Passthrough (not cacheable)",
            compiles.passthrough.to_string(),
        ),
        ("Errors (compiler ran instead)", compiles.errors.to_string()),
        ("Hit rate (cacheable requests)", rate(compiles)),
        ("Compile time saved", seconds(compiles.time_saved_ms)),
        ("Build-script runs", scripts.requests.to_string()),
        ("  restored (hits)", scripts.hits.to_string()),
        ("  run and recorded (misses)", scripts.misses.to_string()),
        ("  passthrough", scripts.passthrough.to_string()),
        ("  errors (script ran instead)", scripts.errors.to_string()),
        ("  hit rate", rate(scripts)),
        ("  run time saved", seconds(scripts.time_saved_ms)),
        (
            "  C/C++ routed through rcache",
            report.build_scripts_cc_routed.to_string(),
        ),
        ("Entries", report.entries.to_string()),
        ("Blobs", report.blobs.to_string()),
        ("Store size", format_size(report.store_bytes)),
        ("Size limit", format_size(report.cache_size_limit)),
        (
            "Age limit",
            report.max_age_secs.map_or_else(
                || "none".to_string(),
                |secs| humantime::format_duration(std::time::Duration::from_secs(secs)).to_string(),
            ),
        ),
        (
            "Saved by deduplication",
            format_size(report.dedup_saved_bytes),
        ),
        (
            "Automatic gc runs",
            format!("{} ({} faults)", report.auto_gc_runs, report.auto_gc_faults),
        ),
        ("Index file size", format_size(report.index_bytes)),
        (
            "Incremental sessions kept / restored",
            format!(
                "{} / {}",
                report.incremental.kept, report.incremental.restored
            ),
        ),
    ];
    let remote = &report.remote;
    if let Some(url) = &remote.url {
        rows.extend([
            ("Remote", url.clone()),
            (
                "  hits / misses",
                format!("{} / {}", remote.hits, remote.misses),
            ),
            ("  errors (compiled locally)", remote.errors.to_string()),
            ("  skipped (after a failure)", remote.skipped.to_string()),
            ("  not asked (a cold build)", remote.not_asked.to_string()),
            ("  rejected (signature)", remote.rejected.to_string()),
            ("  downloaded", format_size(remote.bytes_down)),
            (
                "  uploaded",
                format!(
                    "{} in {} entries",
                    format_size(remote.bytes_up),
                    remote.uploads
                ),
            ),
            ("  queued for upload", remote.pending_uploads.to_string()),
            (
                "  prefetched: entries used / unused",
                format!(
                    "{} / {}",
                    prefetched(remote, "used"),
                    prefetched(remote, "unused")
                ),
            ),
        ]);
    }
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    if !report.languages.is_empty() {
        let _ = writeln!(
            out,
            "\nBy language (requests / hits / misses / passthrough / errors):"
        );
        for (language, counts) in &report.languages {
            let _ = writeln!(
                out,
                "  {language:<width$}{} / {} / {} / {} / {}",
                counts.requests,
                counts.hits,
                counts.misses,
                counts.passthrough,
                counts.errors,
                width = width
            );
        }
    }
    for (title, reasons) in [
        ("Passthrough reasons", &compiles.passthrough_reasons),
        ("Not stored", &compiles.not_stored),
        ("Error reasons", &compiles.error_reasons),
        (
            "Path-bound (keyed with their real paths)",
            &compiles.path_bound,
        ),
        (
            "Build-script runs, passthrough reasons",
            &scripts.passthrough_reasons,
        ),
        ("Build-script runs, not recorded", &scripts.not_stored),
        ("Build-script runs, error reasons", &scripts.error_reasons),
        ("Build-script runs, path-bound", &scripts.path_bound),
        ("Remote error reasons", &remote.error_reasons),
        (
            "Incremental sessions not kept",
            &report.incremental.not_kept,
        ),
        (
            "Incremental sessions not restored",
            &report.incremental.not_restored,
        ),
        ("Remote rejections", &remote.rejected_reasons),
    ] {
        if reasons.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for (reason, count) in reasons {
            let _ = writeln!(out, "  {reason:<width$}{count}", width = width);
        }
    }
    print_all(&out);
    Ok(())
}

/// Writes a command's output; a closed pipe (`| head`) is no error worth a panic.
pub(super) fn print_all(out: &str) {
    let _ = std::io::stdout().write_all(out.as_bytes());
}

pub fn zero(config: &Config) -> anyhow::Result<()> {
    let store = open(config)?;
    store.state.zero_counters()?;
    println!("Statistics zeroed.");
    Ok(())
}

/// A prefetcher figure (`remote.prefetch.<name>`), 0 when never counted.
fn prefetched(remote: &crate::stats::RemoteCounts, name: &str) -> u64 {
    remote.prefetch.get(name).copied().unwrap_or(0)
}
