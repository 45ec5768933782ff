//! Diagnostics: warnings are replayed on a hit exactly as rustc printed them, and a compile
//! error is shown every time and never cached.

use crate::harness::Sandbox;

const WARNING: &str = "warning: unused variable: `unused_fixture_variable`";

#[test]
fn warnings_are_replayed_on_a_hit_exactly_as_on_the_miss() {
    let sb = Sandbox::new();
    let cold = sb.cold_build();
    let cold_diagnostics = cold.diagnostics();
    assert!(
        cold_diagnostics.contains(WARNING),
        "the fixture's warning is missing from the cold build:\n{}",
        cold.stderr
    );
    sb.clean();

    let warm = sb.build();
    warm.assert_hit("demo_lib");
    assert_eq!(
        warm.diagnostics(),
        cold_diagnostics,
        "diagnostics differ between miss and hit; warm stderr:\n{}",
        warm.stderr
    );
}

/// The same warning through `--message-format=json`: cargo parses what rustc (or rcache)
/// printed, so a replay that is not valid rustc JSON would lose the message here.
#[test]
fn replayed_warning_reaches_cargo_as_a_compiler_message() {
    let sb = Sandbox::new();
    let rendered = |run: &crate::harness::Run| -> Vec<String> {
        run.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-message")
            .map(|m| m["message"]["rendered"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let cold = sb.cargo(&["build", "--message-format=json"]).ok();
    cold.assert_stored_miss("demo_lib");
    let cold_messages = rendered(&cold);
    assert_eq!(cold_messages.len(), 1, "cold messages: {cold_messages:?}");
    assert!(cold_messages[0].starts_with(WARNING), "{cold_messages:?}");
    sb.clean();

    let warm = sb.cargo(&["build", "--message-format=json"]).ok();
    warm.assert_hit("demo_lib");
    assert_eq!(rendered(&warm), cold_messages);
}

#[test]
fn compile_error_is_shown_every_time_and_never_cached() {
    let sb = Sandbox::new();
    let src = "demo_leaf/src/lib.rs";
    let mut text = std::fs::read_to_string(sb.path(src)).unwrap();
    text.push_str("\npub fn broken() -> u32 {\n    \"not a number\"\n}\n");
    sb.write(src, &text);

    let mut diagnostics = Vec::new();
    for attempt in 0..2 {
        let run = sb.cargo(&["build"]).run();
        assert!(
            !run.status.success(),
            "attempt {attempt}: the build succeeded"
        );
        assert!(
            run.stderr.contains("error[E0308]: mismatched types"),
            "attempt {attempt}: the error is not shown:\n{}",
            run.stderr
        );
        run.assert_unstored_miss("demo_leaf", "compile_failed");
        assert!(
            run.event("demo_lib").is_none(),
            "demo_lib was compiled against a failed dependency"
        );
        // Whether cargo still had other jobs running when the error came is timing.
        let rustc_part: String = run
            .diagnostics()
            .lines()
            .filter(|l| !l.contains("waiting for other jobs"))
            .map(|l| format!("{l}\n"))
            .collect();
        diagnostics.push(rustc_part);
    }
    assert_eq!(diagnostics[0], diagnostics[1]);
}
