//! The events log (`RCACHE_EVENTS`) describes each wrapper invocation as README.md documents it.
//! The per-line shape is checked on every log the harness reads; this checks the values.

use crate::harness::Sandbox;

const FIXTURE_CRATES: [&str; 5] = [
    "demo_leaf",
    "demo_lib",
    "demo_macro",
    "build_script_build",
    "demo_bin",
];

/// The events log describes each invocation as README.md documents it: a compiled crate's
/// `crate_types` are its `--crate-type`s, and cargo's probes pass through as `probe`.
#[test]
fn events_log_names_crate_types_and_probes() {
    let sb = Sandbox::new();
    let cold = sb.cold_build();
    for (krate, types) in [
        ("demo_leaf", vec!["lib"]),
        ("demo_lib", vec!["lib"]),
        ("demo_macro", vec!["proc-macro"]),
        ("build_script_build", vec!["bin"]),
        ("demo_bin", vec!["bin"]),
    ] {
        let event = cold.event(krate).expect("compiled");
        assert_eq!(
            event["crate_types"],
            serde_json::json!(types),
            "crate_types of {krate} (its --crate-type): {event}"
        );
    }
    // Everything else cargo ran through the wrapper is a probe (`-vV`, `--print`).
    let probes: Vec<_> = cold
        .events
        .iter()
        .filter(|e| !FIXTURE_CRATES.iter().any(|k| e["crate"] == *k))
        .collect();
    assert!(
        !probes.is_empty(),
        "cargo's `rustc -vV` probe went through the wrapper: {}",
        cold.describe_events()
    );
    for probe in probes {
        let ok = probe["outcome"] == "passthrough" && probe["reason"] == "probe";
        assert!(ok, "a probe passes through with reason probe: {probe}");
    }
}
