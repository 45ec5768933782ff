//! `rcache stats [--json] [--zero]`: counters from the state env, totals from the index.

use anyhow::Context;

use crate::config::{Config, format_size};
use crate::stats::Report;
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
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let hit_rate = report
        .hit_rate()
        .map_or_else(|| "-".to_string(), |rate| format!("{:.1} %", rate * 100.0));
    let rows: Vec<(&str, String)> = vec![
        ("Cache location", report.cache_dir.clone()),
        ("Requests", report.requests.to_string()),
        ("Hits", report.hits.to_string()),
        ("Misses", report.misses.to_string()),
        (
            "Passthrough (not cacheable)",
            report.passthrough.to_string(),
        ),
        ("Errors (compiler ran instead)", report.errors.to_string()),
        ("Hit rate (cacheable requests)", hit_rate),
        (
            "Compile time saved",
            format!("{:.1} s", report.time_saved_ms as f64 / 1000.0),
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
    ];
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("{label:<width$}  {value}");
    }
    for (title, reasons) in [
        ("Passthrough reasons", &report.passthrough_reasons),
        ("Not stored", &report.not_stored),
        ("Error reasons", &report.error_reasons),
    ] {
        if reasons.is_empty() {
            continue;
        }
        println!("\n{title}:");
        for (reason, count) in reasons {
            println!("  {reason:<width$}{count}", width = width);
        }
    }
    Ok(())
}

pub fn zero(config: &Config) -> anyhow::Result<()> {
    let store = open(config)?;
    store.state.zero_counters()?;
    println!("Statistics zeroed.");
    Ok(())
}
