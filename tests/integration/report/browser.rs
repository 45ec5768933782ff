//! The `--html` report in a real browser: headless Chromium (Debian's, installed by `.ci/run`)
//! loads the page over the DevTools protocol (tests/fixtures/bin/browser_check.py), which
//! reports console errors, uncaught exceptions and failed loads, the rendered DOM, and a
//! screenshot, kept under `target/tmp/report/` as a CI artifact. A broken page is checked first,
//! so that a clean result means the check can see errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::Sandbox;

const BROWSER_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bin/browser_check.py"
);

/// Where the pages and screenshots are kept after the test: under `target/`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `page` in Chromium; returns `{errors, ready, dom}` and leaves the screenshot at `png`.
#[track_caller]
fn load(page: &Path, png: &Path) -> Value {
    let out = Command::new("python3")
        .arg(BROWSER_CHECK)
        .arg(page)
        .arg(png)
        .output()
        .expect("run browser_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser_check.py {}: {}\n{}",
        page.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The width and height a PNG's header gives.
fn png_size(png: &Path) -> (u32, u32) {
    let bytes = fs::read(png).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        png.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_check_sees_a_broken_pages_errors() {
    let dir = artifacts();
    let page = dir.join("broken.html");
    fs::write(
        &page,
        "<!DOCTYPE html><html><body><p id=\"x\">x</p><script>\
         console.error('seen');</script><script>undefinedName.call();</script></body></html>",
    )
    .unwrap();
    let result = load(&page, &dir.join("broken.png"));
    let errors: Vec<&str> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("seen"), "{errors:?}");
    assert!(errors[1].contains("undefinedName"), "{errors:?}");
}

#[test]
fn the_html_report_renders_every_unit_in_chromium() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.edit("demo_leaf/src/lib.rs", "leaf-v1", "leaf-v2");
    sb.build();
    let report = super::report(&sb, &[]);
    let units = report["units"].as_array().unwrap().len();
    assert!(units >= 3, "{report:#}");

    let dir = artifacts();
    let page = dir.join("report.html");
    sb.rcache_ok(&["report", "--html", page.to_str().unwrap()]);
    let html = fs::read_to_string(&page).unwrap();
    for fetch in ["http://", "https://", "src=", "<link"] {
        assert!(!html.contains(fetch), "self-contained: {fetch} in the page");
    }
    let png = dir.join("report.png");
    let result = load(&page, &png);
    assert_eq!(result["errors"], serde_json::json!([]), "console errors");
    assert_eq!(result["ready"], "yes", "the page's script ran to its end");
    let dom = result["dom"].as_str().unwrap();
    assert_eq!(
        dom.matches("<rect id=\"bar-").count(),
        units,
        "a bar per unit"
    );
    assert_eq!(
        dom.matches("<tr id=\"row-").count(),
        units,
        "a row per unit"
    );
    for name in ["demo_leaf", "demo_lib", "demo_bin"] {
        assert!(dom.contains(&format!(">{name} ")), "{name} in the table");
    }
    assert!(
        dom.contains("input changed: demo_leaf/src/lib.rs"),
        "the root cause is shown"
    );
    let hits = report["compiles"]["hits"].as_u64().unwrap();
    assert!(
        dom.contains(&format!("<td>hits</td><td class=\"num\">{hits}</td>")),
        "the totals"
    );
    assert_eq!(png_size(&png), (1400, 900));
}
