//! `rcache report --html FILE`: one build's report as one self-contained page (inline CSS, SVG
//! and script; nothing fetched): the totals, a timeline of the units coloured by outcome, the
//! misses by root cause and a sortable table of every unit. tests/integration/report.rs loads it
//! in headless Chromium.

use std::fmt::Write;

use super::explain;
use super::report::{self, BuildReport};
use crate::stats::Counts;
use crate::store::builds::BuildUnit;

/// The timeline's drawing width, px.
const TIMELINE_WIDTH: f64 = 1100.0;
/// One lane's height, px.
const LANE_HEIGHT: f64 = 18.0;
/// Room above the lanes for the time axis, px.
const AXIS_HEIGHT: f64 = 22.0;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #212529; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.sub { color: #495057; margin-bottom: 12px; }
table { border-collapse: collapse; }
th, td { padding: 3px 10px; text-align: left; border-bottom: 1px solid #e9ecef; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th[data-sort] { cursor: pointer; user-select: none; }
th[data-sort]:hover { background: #f1f3f5; }
.totals { display: flex; gap: 32px; flex-wrap: wrap; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
.hit { fill: #2f9e44; background: #2f9e44; }
.miss { fill: #f08c00; background: #f08c00; }
.passthrough { fill: #868e96; background: #868e96; }
.error { fill: #e03131; background: #e03131; }
svg text { font: 11px system-ui, sans-serif; fill: #fff; pointer-events: none; }
svg .axis { fill: #495057; }
svg line { stroke: #dee2e6; }
rect.unit.lit { stroke: #000; stroke-width: 2px; }
tr.lit { background: #fff3bf; }
ul.causes li { margin-bottom: 6px; }
ul.causes ul { color: #495057; }
.warn { color: #c92a2a; }
"#;

const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('units');
  var body = table.tBodies[0];
  table.querySelectorAll('th[data-sort]').forEach(function (th, column) {
    var ascending = true;
    th.addEventListener('click', function () {
      var numeric = th.dataset.sort === 'num';
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value || a.cells[column].textContent;
        var y = b.cells[column].dataset.value || b.cells[column].textContent;
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      ascending = !ascending;
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  function light(index, on) {
    var bar = document.getElementById('bar-' + index);
    var row = document.getElementById('row-' + index);
    if (bar) { bar.classList.toggle('lit', on); }
    if (row) { row.classList.toggle('lit', on); }
  }
  document.querySelectorAll('[data-unit]').forEach(function (element) {
    var index = element.dataset.unit;
    element.addEventListener('mouseenter', function () { light(index, true); });
    element.addEventListener('mouseleave', function () { light(index, false); });
  });
  document.body.dataset.ready = 'yes';
})();
"#;

/// The whole page.
pub fn page(report: &BuildReport) -> String {
    let mut out = String::new();
    let all = report.units.len() as u64 + u64::from(report.dropped);
    let hits = report.compiles.hits + report.build_scripts.hits;
    let saved = report.compiles.time_saved_ms + report.build_scripts.time_saved_ms;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>rcache report: build {build}</title><style>{STYLE}</style></head><body>\n\
         <h1>rcache report: build {build}</h1>\n\
         <div class=\"sub\" id=\"summary\">{all} units in {wall:.1} s: {hits} from the cache, \
         {saved:.1} s of compiling saved</div>\n",
        build = report.build,
        wall = report.wall_ms as f64 / 1000.0,
        saved = saved as f64 / 1000.0,
    );
    for other in &report.concurrent {
        let _ = writeln!(
            out,
            "<p class=\"warn\">Build {other} ran at the same time on this store; it is reported \
             apart (<code>rcache report --build {other}</code>).</p>"
        );
    }
    out.push_str("<h2>Totals</h2>\n<div class=\"totals\">");
    totals_table(&mut out, "Compiles", &report.compiles);
    totals_table(&mut out, "Build-script runs", &report.build_scripts);
    out.push_str("</div>\n<h2>Timeline</h2>\n");
    legend(&mut out);
    timeline(&mut out, report);
    causes(&mut out, report);
    units_table(&mut out, report);
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn totals_table(out: &mut String, title: &str, counts: &Counts) {
    let rate = counts
        .hit_rate()
        .map_or("-".into(), |rate| format!("{:.1} %", rate * 100.0));
    let rows = [
        ("requests", counts.requests.to_string()),
        ("hits", counts.hits.to_string()),
        ("misses", counts.misses.to_string()),
        ("passthrough", counts.passthrough.to_string()),
        ("errors", counts.errors.to_string()),
        ("hit rate", rate),
        (
            "time saved",
            format!("{:.1} s", counts.time_saved_ms as f64 / 1000.0),
        ),
    ];
    let _ = write!(
        out,
        "<table class=\"total\"><tr><th colspan=\"2\">{title}</th></tr>"
    );
    for (label, value) in rows {
        let _ = write!(
            out,
            "<tr><td>{label}</td><td class=\"num\">{value}</td></tr>"
        );
    }
    out.push_str("</table>");
}

fn legend(out: &mut String) {
    out.push_str("<div class=\"legend\">");
    for (class, text) in [
        ("hit", "hit"),
        ("miss", "miss (compiled)"),
        ("passthrough", "not cacheable"),
        ("error", "error (compiled)"),
    ] {
        let _ = write!(out, "<span><i class=\"{class}\"></i>{text}</span>");
    }
    out.push_str("</div>\n");
}

/// Lanes as cargo's `--timings` draws them: each unit in the first lane free at its start.
fn lanes(report: &BuildReport) -> Vec<usize> {
    let mut lane_ends: Vec<u64> = Vec::new();
    let mut lanes = Vec::with_capacity(report.units.len());
    for unit in &report.units {
        let start = unit.start_ms * 1000;
        let end = start + unit.duration_us.max(1);
        let lane = match lane_ends.iter().position(|&lane_end| lane_end <= start) {
            Some(free) => free,
            None => {
                lane_ends.push(0);
                lane_ends.len() - 1
            }
        };
        lane_ends[lane] = end;
        lanes.push(lane);
    }
    lanes
}

fn timeline(out: &mut String, report: &BuildReport) {
    let lanes = lanes(report);
    let lane_count = lanes.iter().max().map_or(1, |max| max + 1);
    let wall_ms = report.wall_ms.max(1) as f64;
    let scale = TIMELINE_WIDTH / wall_ms;
    let height = AXIS_HEIGHT + lane_count as f64 * LANE_HEIGHT;
    let _ = writeln!(
        out,
        "<svg id=\"timeline\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" \
         role=\"img\" aria-label=\"timeline of the build's units\">",
        w = TIMELINE_WIDTH + 2.0
    );
    let step = tick_step(wall_ms);
    // Enough decimals that no two ticks read the same.
    let decimals = match step {
        1000.0.. => 0,
        100.0.. => 1,
        10.0.. => 2,
        _ => 3,
    };
    let mut tick = 0.0;
    while tick <= wall_ms {
        let x = tick * scale;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{AXIS_HEIGHT}\" x2=\"{x:.1}\" y2=\"{height}\"/>\
             <text class=\"axis\" x=\"{x:.1}\" y=\"14\">{:.decimals$} s</text>",
            tick / 1000.0
        );
        tick += step;
    }
    for (index, (unit, lane)) in report.units.iter().zip(&lanes).enumerate() {
        let x = unit.start_ms.saturating_sub(report.first_ms) as f64 * scale;
        let width = (unit.duration_us as f64 / 1000.0 * scale).max(1.0);
        let y = AXIS_HEIGHT + *lane as f64 * LANE_HEIGHT;
        let label = report::unit_label(unit);
        let _ = write!(
            out,
            "<rect id=\"bar-{index}\" data-unit=\"{index}\" class=\"unit {class}\" x=\"{x:.1}\" \
             y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h}\"><title>{title}</title></rect>",
            class = outcome_class(unit),
            h = LANE_HEIGHT - 3.0,
            title = escape(&format!(
                "{label} ({}): {}, {:.0} ms",
                report::kind_label(unit),
                report::outcome_label(unit),
                unit.duration_us as f64 / 1000.0
            )),
        );
        if width > 8.0 * label.len() as f64 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x + 3.0,
                y + 11.0,
                escape(&label)
            );
        }
        out.push('\n');
    }
    out.push_str("</svg>\n");
}

/// A round axis step giving about ten ticks, in ms.
fn tick_step(wall_ms: f64) -> f64 {
    let rough = wall_ms / 10.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0)
}

fn causes(out: &mut String, report: &BuildReport) {
    out.push_str("<h2>Misses by cause</h2>\n");
    if report.causes.is_empty() {
        out.push_str("<p id=\"causes\">Every unit of this build hit.</p>\n");
        return;
    }
    out.push_str("<ul class=\"causes\" id=\"causes\">\n");
    for (root, group) in explain::by_root_cause(&report.causes) {
        let _ = write!(out, "<li><b>{}</b><ul>", escape(&root));
        for explanation in group {
            let _ = write!(out, "<li>{}</li>", escape(&explain::unit_line(explanation)));
        }
        out.push_str("</ul></li>\n");
    }
    out.push_str("</ul>\n");
}

fn units_table(out: &mut String, report: &BuildReport) {
    out.push_str(
        "<h2>Units</h2>\n<table id=\"units\"><thead><tr>\
         <th data-sort=\"num\" class=\"num\">start</th>\
         <th data-sort=\"num\" class=\"num\">wrapper</th><th data-sort=\"text\">kind</th>\
         <th data-sort=\"text\">unit</th><th data-sort=\"text\">outcome</th>\
         <th data-sort=\"num\" class=\"num\">saved</th></tr></thead><tbody>\n",
    );
    for (index, unit) in report.units.iter().enumerate() {
        let start = unit.start_ms.saturating_sub(report.first_ms);
        let wrapper_ms = unit.duration_us as f64 / 1000.0;
        let _ = writeln!(
            out,
            "<tr id=\"row-{index}\" data-unit=\"{index}\">\
             <td class=\"num\" data-value=\"{start}\">{:.2} s</td>\
             <td class=\"num\" data-value=\"{wrapper_ms}\">{wrapper_ms:.0} ms</td>\
             <td>{}</td><td>{}</td><td><i class=\"{}\">&nbsp;&nbsp;</i> {}</td>\
             <td class=\"num\" data-value=\"{saved}\">{}</td></tr>",
            start as f64 / 1000.0,
            escape(report::kind_label(unit)),
            escape(&report::unit_label(unit)),
            outcome_class(unit),
            escape(&report::outcome_label(unit)),
            if unit.outcome == "hit" {
                format!("{:.2} s", unit.saved_ms as f64 / 1000.0)
            } else {
                String::new()
            },
            saved = unit.saved_ms,
        );
    }
    out.push_str("</tbody></table>\n");
}

/// The CSS class of a unit's outcome.
fn outcome_class(unit: &BuildUnit) -> &'static str {
    match unit.outcome.as_str() {
        "hit" => "hit",
        "miss" => "miss",
        "passthrough" => "passthrough",
        _ => "error",
    }
}

/// Text as HTML content or a quoted attribute value.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_safe(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(tick_step(10_000.0), 1000.0);
        assert_eq!(tick_step(37_000.0), 5000.0);
        assert_eq!(tick_step(3.0), 1.0);
    }
}
