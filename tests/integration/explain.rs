//! `rcache explain` (issue 16, step 1): after each kind of change (a source, an `include_str!`
//! data file, an `env!` value, an `option_env!` variable set, a `--cfg`, a build script's `rerun-if-env-changed` variable, a C
//! header, a dependency's source), it names exactly that cause, and the cascade names the edited
//! crate for every dependent; `--json` field by field; a unit with no earlier record and a
//! passthrough say so.

use serde_json::Value;

use crate::harness::Sandbox;

/// `rcache explain [unit] --json`, parsed.
#[track_caller]
fn explain(sb: &Sandbox, unit: Option<&str>) -> Vec<Value> {
    let mut args = vec!["explain", "--json"];
    args.extend(unit);
    let out = sb.rcache_ok(&args);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The one explanation of `name` among `explanations`.
#[track_caller]
fn of<'a>(explanations: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = explanations
        .iter()
        .filter(|e| e["name"] == name && e["kind"] == "rustc")
        .collect();
    assert_eq!(found.len(), 1, "{name} in {explanations:#?}");
    found[0]
}

#[test]
fn an_edited_source_is_named_for_its_crate_and_every_dependent() {
    let sb = Sandbox::new();
    sb.cold_build();
    sb.edit("demo_leaf/src/lib.rs", "leaf-v1", "leaf-v2");
    sb.build();

    let all = explain(&sb, None);
    let leaf = of(&all, "demo_leaf");
    assert_eq!(leaf["outcome"], "miss");
    assert_eq!(leaf["crate_types"], serde_json::json!(["lib"]));
    assert_eq!(
        leaf["causes"],
        serde_json::json!([{"cause": "input_changed", "path": "demo_leaf/src/lib.rs"}])
    );
    let lib = of(&all, "demo_lib");
    assert_eq!(
        lib["causes"],
        serde_json::json!([{"cause": "upstream", "name": "demo_leaf", "root": [
            {"cause": "input_changed", "path": "demo_leaf/src/lib.rs"}
        ]}])
    );
    let bin = of(&all, "demo_bin");
    assert_eq!(bin["causes"][0]["cause"], "upstream", "{bin:#}");
    let text = sb.rcache_ok(&["explain"]);
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(first, "input changed: demo_leaf/src/lib.rs:", "{text}");
    assert!(
        !text.contains("\n\n") && text.lines().filter(|l| l.ends_with(':')).count() == 1,
        "one root cause groups every miss:\n{text}"
    );
}

#[test]
fn a_data_file_an_env_value_and_a_cfg_are_named() {
    let sb = Sandbox::new();
    sb.cold_build();

    sb.edit("demo_lib/data/message.txt", "data-v1", "data-v2");
    sb.build();
    assert_eq!(
        of(&explain(&sb, Some("demo_lib")), "demo_lib")["causes"],
        serde_json::json!([{"cause": "input_changed", "path": "demo_lib/data/message.txt"}])
    );

    sb.cargo(&["build"]).env("DEMO_GREETING", "bonjour").ok();
    assert_eq!(
        of(&explain(&sb, Some("demo_lib")), "demo_lib")["causes"],
        serde_json::json!([{"cause": "env_dep", "name": "DEMO_GREETING", "old": "hello",
            "new": "bonjour"}])
    );

    sb.cargo(&["build"])
        .env("DEMO_GREETING", "bonjour")
        .env("DEMO_OPTIONAL", "on")
        .ok();
    assert_eq!(
        of(&explain(&sb, Some("demo_leaf")), "demo_leaf")["causes"],
        serde_json::json!([{"cause": "env_dep", "name": "DEMO_OPTIONAL", "old": "(unset)",
            "new": "on"}]),
        "an option_env! variable that was unset"
    );

    sb.cargo(&["build"])
        .env("DEMO_GREETING", "bonjour")
        .env("RUSTFLAGS", "--cfg demo_flag")
        .ok();
    assert_eq!(
        of(&explain(&sb, Some("demo_leaf")), "demo_leaf")["causes"],
        serde_json::json!([{"cause": "argument_added", "argument": "--cfg demo_flag"}]),
        "cargo's derived -C metadata and extra-filename are left out"
    );
}

#[test]
fn a_new_unit_and_a_passthrough_say_so() {
    let sb = Sandbox::new();
    sb.cold_build();
    assert_eq!(
        of(&explain(&sb, Some("demo_leaf")), "demo_leaf")["causes"],
        serde_json::json!([{"cause": "no_earlier_record"}])
    );
    sb.cargo(&["build"])
        .env("RUSTFLAGS", "--remap-path-scope=object")
        .ok();
    let leaf = explain(&sb, Some("demo_leaf"));
    assert_eq!(
        of(&leaf, "demo_leaf")["causes"],
        serde_json::json!([{"cause": "passthrough", "reason": "unknown_argument"}])
    );
    let err = sb.rcache(&["explain", "no_such_crate"]).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no miss of no_such_crate"));
}

#[test]
fn a_scripts_env_value_and_a_c_header_are_named() {
    let sb = Sandbox::with_fixture("scripts_ws");
    let log = sb.root.join("runs.log");
    let build = |flavor: Option<&str>| {
        let mut cargo = sb.cargo(&["build"]).env("BS_RUN_LOG", &log);
        if let Some(flavor) = flavor {
            cargo = cargo.env("BS_FLAVOR", flavor);
        }
        cargo.ok()
    };
    build(None);
    build(Some("spicy"));
    let explained = explain(&sb, Some("bs_env"));
    let run = explained
        .iter()
        .find(|e| e["kind"] == "build_script_run")
        .unwrap_or_else(|| panic!("no run of bs_env: {explained:#?}"));
    assert_eq!(
        run["causes"],
        serde_json::json!([{"cause": "env_dep", "name": "BS_FLAVOR", "old": "(unset)",
            "new": "spicy"}])
    );

    sb.edit("bs_cc/csrc/add.h", "BS_OFFSET 100", "BS_OFFSET 200");
    build(Some("spicy"));
    let explained = explain(&sb, Some("csrc/add.c"));
    assert_eq!(explained.len(), 1, "{explained:#?}");
    assert_eq!(explained[0]["kind"], "cc");
    let causes = explained[0]["causes"].as_array().unwrap();
    assert!(
        causes.len() == 1
            && causes[0]["cause"] == "input_changed"
            && causes[0]["path"].as_str().unwrap().ends_with("csrc/add.h"),
        "{causes:#?}"
    );
}

#[test]
fn a_feature_change_is_named_as_its_cfg_and_its_scripts_variable() {
    let sb = Sandbox::with_fixture("scripts_ws");
    let log = sb.root.join("runs.log");
    sb.cargo(&["build"]).env("BS_RUN_LOG", &log).ok();
    sb.cargo(&["build", "--features", "bs_nothing/extra"])
        .env("BS_RUN_LOG", &log)
        .ok();
    let explained = explain(&sb, Some("bs_nothing"));
    let lib = explained
        .iter()
        .find(|e| e["kind"] == "rustc" && e["crate_types"] == serde_json::json!(["lib"]))
        .unwrap_or_else(|| panic!("no lib of bs_nothing: {explained:#?}"));
    assert_eq!(
        lib["causes"],
        serde_json::json!([{"cause": "argument_added", "argument": "--cfg feature=\"extra\""}])
    );
    let run = explained
        .iter()
        .find(|e| e["kind"] == "build_script_run")
        .unwrap_or_else(|| panic!("no run of bs_nothing: {explained:#?}"));
    // The script is compiled with the feature too, and cargo tells it in two variables; the
    // `OUT_DIR` whose hash cargo derives from the features is left out.
    assert_eq!(
        run["causes"],
        serde_json::json!([
            {"cause": "changed", "what": "the build script's binary"},
            {"cause": "env", "name": "CARGO_CFG_FEATURE", "old": "", "new": "extra"},
            {"cause": "env", "name": "CARGO_FEATURE_EXTRA", "old": "(none)", "new": "1"}
        ])
    );
}
