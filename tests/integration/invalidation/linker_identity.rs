//! The linker program is in the key of every crate that links: with `-C linker=` pointing at a
//! wrapper script (set through cargo's `CARGO_TARGET_<TRIPLE>_LINKER`), changing the script's
//! content makes the bin, the proc macro and the build script miss, while the libraries, which
//! do not link, still hit. The script logs each run, so the test also sees that a hit runs no
//! linker and a miss runs the new one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{LIBS, Sandbox, expected_output, real_rustc, run_command};

/// The crates of demo_ws that rustc links.
const LINKED: [&str; 3] = ["demo_macro", "build_script_build", "demo_bin"];

/// The script's name ends in `-gcc` so that rustc treats it as a C compiler driver and passes
/// it `-Wl,`-style arguments, as it does `cc` (a name like `link.sh` makes rustc guess a bare
/// `ld`-style linker, and `cc` rejects the arguments).
const SCRIPT: &str = "wrap-gcc";

/// The linker wrapper: a comment that the test changes, a log line per run, then `cc`.
fn script(version: &str, log: &Path) -> String {
    format!(
        "#!/bin/sh\n# {version}\necho linked >> '{}'\nexec cc \"$@\"\n",
        log.display()
    )
}

/// `CARGO_TARGET_<host triple>_LINKER`, the host being rustc's (`rustc -vV`).
fn linker_env_var() -> String {
    let mut cmd = Command::new(real_rustc());
    cmd.arg("-vV");
    let (status, stdout, stderr) = run_command(&mut cmd, "rustc -vV");
    assert!(status.success(), "rustc -vV: {stderr}");
    let host = stdout
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV prints the host");
    format!(
        "CARGO_TARGET_{}_LINKER",
        host.to_uppercase().replace(['-', '.'], "_")
    )
}

/// How many times the script ran so far.
fn links(log: &Path) -> usize {
    fs::read_to_string(log).map_or(0, |text| text.lines().count())
}

#[test]
fn changing_the_linker_script_misses_linked_crates_and_hits_libs() {
    let sb = Sandbox::new();
    let log = sb.root.join("links.log");
    sb.write(SCRIPT, &script("v1", &log));
    let linker = sb.path(SCRIPT);
    fs::set_permissions(&linker, fs::Permissions::from_mode(0o755)).unwrap();
    let var = linker_env_var();
    let build = || sb.cargo(&["build"]).env(&var, &linker).ok();

    let cold = build();
    for krate in LIBS.iter().chain(&LINKED) {
        cold.assert_stored_miss(krate);
    }
    assert_eq!(
        links(&log),
        LINKED.len(),
        "the script did not link every linked crate"
    );
    sb.clean();

    let warm = build();
    for krate in LIBS.iter().chain(&LINKED) {
        warm.assert_hit(krate);
    }
    assert_eq!(links(&log), LINKED.len(), "a hit ran the linker");
    assert_eq!(sb.run_bin(), expected_output(&[]));

    // Same path, same size, new content.
    sb.write(SCRIPT, &script("v2", &log));
    sb.clean();
    let changed = build();
    for krate in LINKED {
        changed.assert_stored_miss(krate);
    }
    for krate in LIBS {
        changed.assert_hit(krate);
    }
    assert_eq!(
        links(&log),
        2 * LINKED.len(),
        "the new script did not link every linked crate"
    );
    assert_eq!(sb.run_bin(), expected_output(&[]));
}
