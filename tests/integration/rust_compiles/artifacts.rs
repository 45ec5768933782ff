//! The JSON artifact notifications and the dep-info file name this invocation's out dir, on a
//! miss and on a hit: cargo starts dependents when it reads the `.rmeta` notification, and a
//! `.d` naming another build's paths makes cargo rebuild forever.
//!
//! Cargo consumes rustc's artifact lines, so these tests call rcache directly, with the argv
//! cargo uses, and read its stderr. Plain rustc into a third out dir is the reference: rustc's
//! outputs do not depend on `--out-dir` (checked here too), so a hit must reproduce them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Run, Sandbox, leaf_rustc_args, real_rustc, run_command};

const STEM: &str = "demo_leaf-0123456789abcdef";

/// The artifact notifications in a stderr, as JSON values.
fn artifacts(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["$message_type"] == "artifact")
        .map(|m| m.to_string())
        .collect()
}

fn expected_artifacts(out: &Path) -> BTreeSet<String> {
    let out = out.display();
    [
        json!({"$message_type": "artifact", "artifact": format!("{out}/{STEM}.d"), "emit": "dep-info"}),
        json!({"$message_type": "artifact", "artifact": format!("{out}/lib{STEM}.rmeta"), "emit": "metadata"}),
        json!({"$message_type": "artifact", "artifact": format!("{out}/lib{STEM}.rlib"), "emit": "link"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

fn read(out: &Path, name: &str) -> Vec<u8> {
    fs::read(out.join(name)).unwrap_or_else(|e| panic!("read {name} in {}: {e}", out.display()))
}

fn assert_names_only(run: &Run, out: &Path, other: &Path) {
    assert!(
        run.status.success(),
        "{}: {}\n{}",
        run.what,
        run.status,
        run.stderr
    );
    assert_eq!(
        artifacts(&run.stderr),
        expected_artifacts(out),
        "{}: artifact notifications; stderr:\n{}",
        run.what,
        run.stderr
    );
    let other = other.to_str().unwrap();
    assert!(
        !run.stderr.contains(other),
        "stderr names another out dir {other}:\n{}",
        run.stderr
    );
    let dep_info = String::from_utf8(read(out, &format!("{STEM}.d"))).unwrap();
    assert!(
        dep_info.contains(&format!("{}/lib{STEM}.rmeta:", out.display())),
        "the .d does not name this out dir:\n{dep_info}"
    );
    assert!(
        !dep_info.contains(other),
        "the .d names another out dir:\n{dep_info}"
    );
}

#[test]
fn rmeta_artifact_and_dep_info_name_this_out_dir_on_miss_and_hit() {
    let sb = Sandbox::new();
    let (miss_out, hit_out, plain_out) = (
        sb.root.join("out-miss"),
        sb.root.join("out-hit"),
        sb.root.join("out-plain"),
    );

    let miss = sb.compile_leaf_directly(&miss_out);
    miss.assert_stored_miss("demo_leaf");
    assert_names_only(&miss, &miss_out, &hit_out);

    let hit = sb.compile_leaf_directly(&hit_out);
    hit.assert_hit("demo_leaf");
    assert_names_only(&hit, &hit_out, &miss_out);

    fs::create_dir_all(&plain_out).unwrap();
    let mut plain = Command::new(crate::harness::PLAIN_REMAPPED_RUSTC);
    plain.arg(real_rustc());
    plain.args(leaf_rustc_args(&plain_out)).current_dir(&sb.ws);
    let (status, _, stderr) = run_command(&mut plain, "plain rustc");
    assert!(status.success(), "plain rustc: {stderr}");
    for name in [format!("lib{STEM}.rlib"), format!("lib{STEM}.rmeta")] {
        assert!(
            read(&plain_out, &name) == read(&miss_out, &name),
            "rustc's {name} depends on --out-dir; this test's premise is wrong"
        );
        assert!(
            read(&plain_out, &name) == read(&hit_out, &name),
            "restored {name} differs from rustc's"
        );
    }
    let plain_d = String::from_utf8(read(&plain_out, &format!("{STEM}.d"))).unwrap();
    let hit_d = String::from_utf8(read(&hit_out, &format!("{STEM}.d"))).unwrap();
    assert_eq!(
        hit_d,
        plain_d.replace(plain_out.to_str().unwrap(), hit_out.to_str().unwrap()),
        "restored .d is not rustc's .d for this out dir"
    );
}

/// `RCACHE_LOG=debug` explains the decision on stderr, and rustc's own lines are still there,
/// whole, for cargo to parse.
#[test]
fn debug_log_explains_the_decision_without_disturbing_rustc_output() {
    let sb = Sandbox::new();
    let miss_out = sb.root.join("out-miss");
    sb.compile_leaf_directly(&miss_out)
        .assert_stored_miss("demo_leaf");

    let out = sb.root.join("out-logged");
    let logged = sb.compile_leaf_directly_with(&out, &[("RCACHE_LOG", "debug")]);
    logged.assert_hit("demo_leaf");
    assert_names_only(&logged, &out, &miss_out);
    assert_eq!(logged.stdout, "", "rcache wrote to stdout");
    let log: String = logged
        .stderr
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert!(
        log.to_lowercase().contains("hit"),
        "RCACHE_LOG=debug does not explain the hit; stderr:\n{}",
        logged.stderr
    );
}
