//! C and C++ compiles through rcache (`rcache cc ...`, the symlink form, and cc-rs in a build
//! script), with the real gcc and clang: depend-mode hits, misses on every change that matters,
//! restored objects byte-identical to the compiler's, and time macros passed through.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{RCACHE, Sandbox, real_rustc, run_command};

/// One `rcache <compiler> <args>` (or a link's) call: its exit status, stderr and event.
struct CcCall {
    stderr: String,
    event: Value,
}

/// Runs `program args` in the sandbox (program is rcache itself with the compiler first, or a
/// link to rcache), with the sandbox's store; asserts success and one `cc` event.
#[track_caller]
fn call(sb: &Sandbox, mut cmd: Command, what: &str) -> CcCall {
    let events = sb.root.join("cc-events.jsonl");
    let _ = fs::remove_file(&events);
    cmd.current_dir(&sb.ws)
        .env("RCACHE_DIR", &sb.store)
        .env("RCACHE_EVENTS", &events)
        .env("XDG_CONFIG_HOME", sb.root.join("xdg-config"));
    let (status, _, stderr) = run_command(&mut cmd, what);
    assert!(status.success(), "{what} failed: {status}\n{stderr}");
    let lines: Vec<Value> = fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one event expected: {lines:?}");
    assert_eq!(lines[0]["kind"], "cc", "{what}");
    CcCall {
        stderr,
        event: lines[0].clone(),
    }
}

/// `rcache <compiler> <args>`.
#[track_caller]
fn rcache_cc(sb: &Sandbox, compiler: &str, args: &[&str]) -> CcCall {
    let mut cmd = sb.rcache(&[compiler]);
    cmd.args(args);
    call(sb, cmd, &format!("rcache {compiler} {}", args.join(" ")))
}

#[track_caller]
fn assert_outcome(call: &CcCall, outcome: &str, reason: Option<&str>) {
    assert_eq!(
        call.event["outcome"], outcome,
        "{}\n{}",
        call.event, call.stderr
    );
    assert_eq!(call.event["reason"].as_str(), reason, "{}", call.event);
}

/// The object the real compiler writes for the same call, for byte comparison.
#[track_caller]
fn real_object(sb: &Sandbox, compiler: &str, args: &[&str], object: &str) -> Vec<u8> {
    let restored = fs::read(sb.path(object)).unwrap();
    let mut cmd = Command::new(compiler);
    cmd.args(args).current_dir(&sb.ws);
    let (status, _, stderr) = run_command(&mut cmd, compiler);
    assert!(status.success(), "{compiler}: {stderr}");
    let real = fs::read(sb.path(object)).unwrap();
    fs::write(sb.path(object), &restored).unwrap();
    real
}

fn compile_clean_compile_then_edits(compiler: &str, source: &str) {
    let sb = Sandbox::with_fixture("c_src");
    if source != "main.c" {
        fs::copy(sb.path("main.c"), sb.path(source)).unwrap();
    }
    let args = ["-O1", "-c", source, "-o", "obj/main.o"];
    fs::create_dir_all(sb.path("obj")).unwrap();

    assert_outcome(&rcache_cc(&sb, compiler, &args), "miss", None);
    let first = fs::read(sb.path("obj/main.o")).unwrap();
    fs::remove_dir_all(sb.path("obj")).unwrap();
    fs::create_dir_all(sb.path("obj")).unwrap();
    assert_outcome(&rcache_cc(&sb, compiler, &args), "hit", None);
    assert_eq!(
        fs::read(sb.path("obj/main.o")).unwrap(),
        first,
        "restored object"
    );
    assert_eq!(real_object(&sb, compiler, &args, "obj/main.o"), first);

    // A header the source includes: a miss, then a hit.
    sb.edit("local.h", "41", "42");
    assert_outcome(&rcache_cc(&sb, compiler, &args), "miss", None);
    assert_ne!(fs::read(sb.path("obj/main.o")).unwrap(), first);
    assert_outcome(&rcache_cc(&sb, compiler, &args), "hit", None);

    // A define: another key.
    let with_foo = ["-O1", "-DFOO", "-c", source, "-o", "obj/main.o"];
    assert_outcome(&rcache_cc(&sb, compiler, &with_foo), "miss", None);
    assert_outcome(&rcache_cc(&sb, compiler, &with_foo), "hit", None);

    // A header behind an #ifdef not taken is not an input: whatever the outcome, the object
    // is the one the compiler makes now.
    sb.edit("optional.h", "1", "2");
    rcache_cc(&sb, compiler, &args);
    let restored = fs::read(sb.path("obj/main.o")).unwrap();
    assert_eq!(real_object(&sb, compiler, &args, "obj/main.o"), restored);

    let stats = sb.stats();
    let language = if source.ends_with(".c") { "c" } else { "cxx" };
    assert_eq!(stats["languages"][language]["hits"], 4, "{stats}");
    assert_eq!(stats["hits"], 4, "{stats}");
    let requests = stats["requests"].as_u64().unwrap();
    let parts: u64 = ["hits", "misses", "passthrough", "errors"]
        .iter()
        .map(|name| stats[name].as_u64().unwrap())
        .sum();
    assert_eq!(requests, parts, "{stats}");
}

#[test]
fn gcc_hits_after_clean_and_misses_on_header_and_define_changes() {
    compile_clean_compile_then_edits("gcc", "main.c");
}

#[test]
fn clang_hits_after_clean_and_misses_on_header_and_define_changes() {
    compile_clean_compile_then_edits("clang", "main.c");
}

#[test]
fn cxx_compiles_hit_with_g_plus_plus_and_clang_plus_plus() {
    compile_clean_compile_then_edits("g++", "main.cpp");
    compile_clean_compile_then_edits("clang++", "main.cpp");
}

#[test]
fn time_macros_pass_through() {
    for compiler in ["gcc", "clang"] {
        let sb = Sandbox::with_fixture("c_src");
        let args = ["-c", "stamp.c", "-o", "stamp.o"];
        for _ in 0..2 {
            // Removed first, so that each call must write it.
            let _ = fs::remove_file(sb.path("stamp.o"));
            let call = rcache_cc(&sb, compiler, &args);
            assert_outcome(&call, "passthrough", Some("cc_time_macros"));
            assert!(sb.path("stamp.o").is_file());
        }
        // In a header too, after that header's content was scanned and found free of them
        // (the scan is memoized by content).
        let main = ["-c", "main.c", "-o", "main.o"];
        assert_outcome(&rcache_cc(&sb, compiler, &main), "miss", None);
        sb.write("local.h", "#define LOCAL_VALUE (__DATE__[0])\n");
        let call = rcache_cc(&sb, compiler, &main);
        assert_outcome(&call, "passthrough", Some("cc_time_macros"));
        // A header the compile includes only now is scanned too.
        sb.write("other.h", "#define OTHER (__TIME__[0])\n");
        sb.write("local.h", "#define LOCAL_VALUE 1\n#include \"other.h\"\n");
        let call = rcache_cc(&sb, compiler, &main);
        assert_outcome(&call, "passthrough", Some("cc_time_macros"));
    }
}

#[test]
fn uncacheable_calls_run_the_compiler_with_a_reason() {
    let sb = Sandbox::with_fixture("c_src");
    let call = rcache_cc(&sb, "gcc", &["-E", "main.c", "-o", "main.i"]);
    assert_outcome(&call, "passthrough", Some("cc_preprocess_only"));
    assert!(sb.path("main.i").is_file());
    let call = rcache_cc(&sb, "clang", &["main.c", "-o", "app"]);
    assert_outcome(&call, "passthrough", Some("cc_linking"));
    let mut app = Command::new(sb.path("app"));
    let (status, stdout, _) = run_command(&mut app, "app");
    assert!(status.success());
    assert_eq!(stdout, "41\n");
}

#[test]
fn the_callers_dep_file_is_restored_naming_this_compiles_object() {
    for compiler in ["gcc", "clang"] {
        let sb = Sandbox::with_fixture("c_src");
        let first = ["-c", "main.c", "-o", "a.o", "-MMD", "-MF", "a.d"];
        assert_outcome(&rcache_cc(&sb, compiler, &first), "miss", None);
        let second = ["-c", "main.c", "-o", "b.o", "-MMD", "-MF", "b.d"];
        assert_outcome(&rcache_cc(&sb, compiler, &second), "hit", None);
        let restored = fs::read_to_string(sb.path("b.d")).unwrap();
        assert!(restored.starts_with("b.o:"), "{restored}");
        assert!(restored.contains("local.h"), "{restored}");
        // -MMD leaves system headers out of the caller's file, as the compiler does.
        assert!(!restored.contains("stdio.h"), "{restored}");
        assert_eq!(
            fs::read(sb.path("a.o")).unwrap(),
            fs::read(sb.path("b.o")).unwrap()
        );
        // rcache's own list has the system headers: editing local.h still misses.
        sb.edit("local.h", "41", "43");
        assert_outcome(&rcache_cc(&sb, compiler, &second), "miss", None);
    }
}

#[test]
fn split_dwarf_outputs_are_restored() {
    let sb = Sandbox::with_fixture("c_src");
    let args = ["-g", "-gsplit-dwarf", "-c", "main.c", "-o", "main.o"];
    assert_outcome(&rcache_cc(&sb, "gcc", &args), "miss", None);
    let dwo = fs::read(sb.path("main.dwo")).expect("gcc wrote main.dwo");
    fs::remove_file(sb.path("main.dwo")).unwrap();
    fs::remove_file(sb.path("main.o")).unwrap();
    assert_outcome(&rcache_cc(&sb, "gcc", &args), "hit", None);
    assert_eq!(fs::read(sb.path("main.dwo")).unwrap(), dwo);
}

/// A `bin/` dir holding a link named `name` that points at rcache.
fn link_dir(sb: &Sandbox, name: &str) -> PathBuf {
    let bin = sb.root.join("bin");
    fs::create_dir_all(&bin).unwrap();
    symlink(RCACHE, bin.join(name)).unwrap();
    bin
}

fn path_with_first(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn the_symlink_form_finds_the_real_compiler_and_hits() {
    for name in ["cc", "clang"] {
        let sb = Sandbox::with_fixture("c_src");
        let bin = link_dir(&sb, name);
        let path = path_with_first(&bin);
        let compile = || {
            // Started by name through PATH, as a build system would.
            let mut cmd = Command::new(name);
            cmd.env("PATH", &path)
                .args(["-c", "main.c", "-o", "main.o"]);
            call(&sb, cmd, &format!("{name} through the link"))
        };
        assert_outcome(&compile(), "miss", None);
        let first = fs::read(sb.path("main.o")).unwrap();
        fs::remove_file(sb.path("main.o")).unwrap();
        assert_outcome(&compile(), "hit", None);
        assert_eq!(fs::read(sb.path("main.o")).unwrap(), first);
        // A link call reaches the real linker through the link too.
        let mut link = Command::new(name);
        link.env("PATH", &path).args(["main.o", "-o", "app"]);
        let linked = call(&sb, link, "link through the link");
        assert_outcome(&linked, "passthrough", Some("cc_linking"));
        let (status, stdout, _) = run_command(&mut Command::new(sb.path("app")), "app");
        assert!(status.success());
        assert_eq!(stdout, "41\n");
    }
}

#[test]
fn rustc_links_through_the_symlink_form_are_counted_as_links() {
    // rustc links with `cc -m64 ... -B<dir> -fuse-ld=lld ... -pie -nodefaultlibs`: with a `cc`
    // link to rcache first on PATH, that call is a link, not an unknown argument (issue 19).
    let sb = Sandbox::with_fixture("c_src");
    let bin = link_dir(&sb, "cc");
    sb.write("hello.rs", "fn main() { println!(\"41\"); }\n");
    let mut rustc = Command::new(real_rustc());
    rustc
        .env("PATH", path_with_first(&bin))
        .args(["-C", "opt-level=0", "hello.rs", "-o", "hello"]);
    let linked = call(&sb, rustc, "rustc linking through the link");
    assert_outcome(&linked, "passthrough", Some("cc_linking"));
    let (status, stdout, _) = run_command(&mut Command::new(sb.path("hello")), "hello");
    assert!(status.success());
    assert_eq!(stdout, "41\n");
}

#[test]
fn cc_rs_compiles_in_a_build_script_hit_after_a_clean_build() {
    let sb = Sandbox::with_fixture("scripts_ws");
    let cc = format!("{RCACHE} cc");
    let build = || {
        sb.cargo(&["build", "-p", "bs_app"])
            // The script must really run, so that its C compiles reach rcache.
            .env("RCACHE_BUILD_SCRIPTS", "off")
            .env("CC", &cc)
            .ok()
    };
    let compiles = |events: &[Value]| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["kind"] == "cc" && e["outcome"] != "passthrough")
            .map(|e| {
                let source = e["crate"].as_str().unwrap_or_default().to_string();
                (source, e["outcome"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let first = build();
    let cold = compiles(&first.events);
    assert!(
        cold.iter()
            .any(|(source, outcome)| source.ends_with("add.c") && outcome == "miss"),
        "{cold:?}\n{}",
        first.describe_events()
    );
    sb.clean();
    let second = build();
    let warm = compiles(&second.events);
    assert!(!warm.is_empty(), "{}", second.describe_events());
    assert!(
        warm.iter().all(|(_, outcome)| outcome == "hit"),
        "every C compile hits: {warm:?}"
    );
    let output = sb.run_program_in(&sb.target, "bs_app");
    assert!(output.contains("cc=103"), "{output}");
}
