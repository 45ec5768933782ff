//! A `cdylib` from the cache: after `cargo clean`, native_ws's `answer` crate is restored, and
//! the restored `libanswer.so` (as cargo uplifts it into `target/debug`) loads with `dlopen`,
//! through Python's ctypes, and its exported function answers.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{Sandbox, run_command};

/// Loads the library with ctypes and returns what `answer()` printed.
#[track_caller]
fn call_answer(library: &Path) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg("import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).answer())")
        .arg(library);
    let (status, stdout, stderr) = run_command(&mut cmd, "python3 ctypes");
    assert!(
        status.success(),
        "loading {} failed: {status}\n{stderr}",
        library.display()
    );
    stdout
}

#[test]
fn restored_cdylib_loads_and_answers() {
    let sb = Sandbox::with_fixture("native_ws");
    let library = sb.target.join("debug/libanswer.so");
    let cold = sb.build();
    let e = cold.event("answer").expect("answer was compiled");
    assert_eq!(e["crate_types"], serde_json::json!(["cdylib"]));
    cold.assert_stored_miss("answer");
    assert_eq!(call_answer(&library), "42\n");
    let linked = fs::read(&library).unwrap();
    sb.clean();
    assert!(!library.exists(), "cargo clean left {}", library.display());

    let warm = sb.build();
    warm.assert_hit("answer");
    assert!(
        fs::read(&library).unwrap() == linked,
        "the restored libanswer.so differs from the linked one"
    );
    assert_eq!(call_answer(&library), "42\n");
}
