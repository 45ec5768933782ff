//! Native code reached only through a transitive dependency (`tests/fixtures/native_ws`): app
//! depends on mid, mid on csys, and csys's build script compiles `foo.c` into `libfoo.a`,
//! which rustc bundles into csys's rlib. Neither app's argv nor its `--extern` files name the
//! archive or csys's rlib: only the linker reads them, so only the linker's dependency file
//! can tell rcache that app must be relinked. Each test checks what the program prints, so a
//! stale restored binary fails it.

use std::path::Path;

use crate::harness::{Run, Sandbox};

const FIXTURE: &str = "native_ws";
const FOO_C: &str = "csys/foo.c";

/// Every crate of native_ws that rustc compiles (the cdylib `answer` included).
const CRATES: [&str; 5] = ["build_script_build", "csys", "mid", "app", "answer"];

/// Changes the value `foo_value()` returns in `foo.c`.
fn set_foo(sb: &Sandbox, from: u32, to: u32) {
    sb.edit(FOO_C, &format!("return {from};"), &format!("return {to};"));
}

/// What app prints when `foo.c` returns `value`.
fn foo_output(value: u32) -> String {
    format!("foo={value}\n")
}

#[track_caller]
fn app_output(sb: &Sandbox, target: &Path) -> String {
    sb.run_program_in(target, "app")
}

/// A first build into an empty store: every crate compiled and stored, app prints 1.
#[track_caller]
fn cold_build(sb: &Sandbox) {
    let cold = sb.build();
    for krate in CRATES {
        cold.assert_stored_miss(krate);
    }
    assert_eq!(app_output(sb, &sb.target), foo_output(1));
}

/// The rustc command line cargo ran for app, from `cargo build -v`'s `Running` lines.
#[track_caller]
fn app_command_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|line| line.trim_start().starts_with("Running") && line.contains("--crate-name app "))
        .unwrap_or_else(|| panic!("no rustc command line for app in:\n{}", run.stderr))
}

#[test]
fn editing_c_code_of_a_transitive_dependency_relinks_the_bin() {
    let sb = Sandbox::with_fixture(FIXTURE);
    cold_build(&sb);

    set_foo(&sb, 1, 2);
    let edited = sb.cargo(&["build", "-v"]).ok();
    // The new archive is bundled into csys's rlib (the archive's hash is in csys's key).
    edited.assert_stored_miss("csys");
    // mid's outputs do not depend on foo.c, so cargo's recompile of mid is a hit: app's argv
    // and the hashes of its `--extern` files are the same as in the cold build.
    edited.assert_hit("mid");
    let argv = app_command_line(&edited);
    for unnamed in ["--extern csys", "libcsys", "libfoo", "static=foo", "foo.c"] {
        assert!(
            !argv.contains(unnamed),
            "app's argv names {unnamed:?}, the test proves nothing: {argv}"
        );
    }
    // Only the linker's dependency file lists csys's rlib: app must be linked again.
    edited.assert_stored_miss("app");
    assert_eq!(app_output(&sb, &sb.target), foo_output(2));

    // Back to the original C code: the archive, csys's rlib and so the first entries again.
    set_foo(&sb, 2, 1);
    let reverted = sb.build();
    for krate in ["csys", "mid", "app"] {
        reverted.assert_hit(krate);
    }
    assert_eq!(app_output(&sb, &sb.target), foo_output(1));

    sb.clean();
    let warm = sb.build();
    for krate in CRATES {
        warm.assert_hit(krate);
    }
    assert_eq!(app_output(&sb, &sb.target), foo_output(1));
}

/// Without cargo's own freshness tracking in the way: after `cargo clean` every crate is
/// compiled, and rcache alone decides. The build script's binary is unchanged (hit), its run
/// produces a new archive, and app, whose key is that of the cold build, must not be served
/// the binary linked against the old archive.
#[test]
fn clean_build_after_editing_c_code_relinks_the_bin() {
    let sb = Sandbox::with_fixture(FIXTURE);
    cold_build(&sb);
    sb.clean();

    set_foo(&sb, 1, 2);
    let edited = sb.build();
    edited.assert_hit("build_script_build");
    edited.assert_stored_miss("csys");
    edited.assert_hit("mid");
    edited.assert_stored_miss("app");
    assert_eq!(app_output(&sb, &sb.target), foo_output(2));
}

/// The linker read csys's rlib at a path inside the first target dir. Building into another
/// target dir after editing `foo.c` links a different rlib at another path; an entry whose
/// recorded linker inputs (in the first target dir, still unchanged there) match must not be
/// served for it.
#[test]
fn another_target_dir_after_editing_c_code_relinks_the_bin() {
    let sb = Sandbox::with_fixture(FIXTURE);
    cold_build(&sb);

    set_foo(&sb, 1, 2);
    let other = sb.root.join("other-target");
    let run = sb.cargo(&["build"]).target_dir(&other).ok();
    let printed = app_output(&sb, &other);
    assert_eq!(
        printed,
        foo_output(2),
        "app in the second target dir runs stale native code\n{}",
        run.describe_events()
    );
    run.assert_stored_miss("csys");
    run.assert_stored_miss("app");
}
