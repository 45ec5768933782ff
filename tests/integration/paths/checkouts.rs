//! demo_ws in a second checkout, a git worktree, `cargo install` twice, another machine through
//! Redis, the user's own remapping, and the traps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{assert_all_hit, second_checkout};
use crate::harness::{
    RedisServer, RemoteServer, Sandbox, assert_no_file_names, assert_same_files, expected_output,
    run_command,
};

/// Every Rust compile of demo_ws (the build script's compile included).
const CRATES: [&str; 5] = [
    "demo_leaf",
    "demo_lib",
    "demo_macro",
    "demo_bin",
    "build_script_build",
];

/// The second checkout hits every crate; its outputs are a plain build's given the same flags,
/// byte for byte, and hold neither the first checkout's nor its target dir's path; its `.d`
/// files name its own files. With the switch off, its outputs are exactly a plain build's.
#[test]
fn a_second_checkout_at_another_depth_hits_every_crate_with_its_own_paths() {
    let sb = Sandbox::new();
    sb.cold_build();
    let other = second_checkout(&sb, "elsewhere/much/deeper/checkout-b");
    let other_target = sb.root.join("target-b");

    let run = sb
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&other_target)
        .ok();
    assert_all_hit(&run, &CRATES);
    assert_eq!(sb.run_bin_in(&other_target), expected_output(&[]));
    assert_no_file_names(&other_target, &sb.ws);
    assert_no_file_names(&other_target, &sb.target);
    for entry in fs::read_dir(other_target.join("debug/deps")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "d") {
            let text = fs::read_to_string(&path).unwrap();
            assert!(
                text.contains(other_target.to_str().unwrap()),
                "{} does not name its own target dir:\n{text}",
                path.display()
            );
        }
    }

    let plain_target = sb.root.join("target-plain");
    sb.cargo(&["build"])
        .in_dir(&other)
        .target_dir(&plain_target)
        .plain_remapped()
        .ok();
    assert_same_files(
        &sb.deps_outputs(&plain_target),
        &sb.deps_outputs(&other_target),
        "second checkout's restored outputs vs a plain build with the same remapping",
    );

    // Off: keys hold the paths as written, no flag is added, and the outputs are exactly a
    // plain build's (in the same target dir, since demo_lib's rlib names its `OUT_DIR`).
    let off_target = sb.root.join("target-off");
    sb.cargo(&["build"])
        .in_dir(&other)
        .target_dir(&off_target)
        .without_wrapper()
        .ok();
    let plain = sb.deps_outputs(&off_target);
    fs::remove_dir_all(&off_target).unwrap();
    let off = sb
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&off_target)
        .env("RCACHE_PATH_INDEPENDENT", "off")
        .ok();
    off.assert_stored_miss("demo_lib");
    assert_same_files(
        &plain,
        &sb.deps_outputs(&off_target),
        "RCACHE_PATH_INDEPENDENT=off vs a plain build",
    );
}

/// A git worktree of the workspace, built into its own target dir, hits every crate.
#[test]
fn a_git_worktree_hits_every_crate() {
    let sb = Sandbox::new();
    sb.git(&["init", "-q"]);
    sb.git(&["add", "-A"]);
    sb.git(&["commit", "-q", "-m", "fixture"]);
    let worktree = sb.root.join("wt");
    sb.git(&["worktree", "add", "-q", worktree.to_str().unwrap()]);
    sb.cold_build();

    let wt_target = worktree.join("target");
    let run = sb
        .cargo(&["build"])
        .in_dir(&worktree)
        .target_dir(&wt_target)
        .ok();
    assert_all_hit(&run, &CRATES);
    assert_eq!(sb.run_bin_in(&wt_target), expected_output(&[]));
    assert_no_file_names(&wt_target, &sb.ws);
}

/// `cargo install` twice, each into a fresh target dir, as cargo does: the second hits every
/// crate and installs a binary that behaves the same.
#[test]
fn installing_twice_hits_every_crate() {
    let sb = Sandbox::new();
    let install = |n: u32| {
        let root = sb.root.join(format!("install-{n}"));
        let run = sb
            .cargo(&[
                "install",
                "--path",
                "demo_bin",
                "--root",
                root.to_str().unwrap(),
            ])
            .target_dir(&sb.root.join(format!("install-target-{n}")))
            .ok();
        (run, root.join("bin/demo_bin"))
    };
    install(1);
    let (second, binary) = install(2);
    assert_all_hit(
        &second,
        &["demo_leaf", "demo_lib", "demo_macro", "demo_bin"],
    );
    let (status, stdout, stderr) = run_command(&mut Command::new(&binary), "installed demo_bin");
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, expected_output(&[]));
}

/// The traps, in two checkouts: `demo_trap` reads `data.txt` through `env!("CARGO_MANIFEST_DIR")`
/// (different in each checkout) and prints `env!("OUT_DIR")`: its binary holds its own paths, so
/// it is kept path-bound (a counted miss in each checkout, each printing its own); `demo_leaf`'s
/// source differs in checkout B at the same relative path: a miss there, never A's; a path
/// dependency outside the workspace misses (cargo's own `-C metadata` holds its path).
#[test]
fn traps_come_out_right_in_each_checkout() {
    let sb = Sandbox::new();
    add_traps(&sb.ws, "data of checkout A");
    sb.cargo(&["build"]).ok();
    let a_trap = run_trap(&sb.target);
    assert!(a_trap.starts_with("data of checkout A\n"), "{a_trap}");
    assert!(a_trap.contains(sb.target.to_str().unwrap()), "{a_trap}");

    let other = second_checkout(&sb, "b/checkout");
    add_traps(&other, "data of checkout B");
    let leaf = other.join("demo_leaf/src/lib.rs");
    let source = fs::read_to_string(&leaf).unwrap();
    fs::write(&leaf, source.replace("leaf-v1", "leaf-vB")).unwrap();
    let other_target = sb.root.join("target-b");
    let run = sb
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&other_target)
        .ok();
    let trap = run.event("demo_trap").expect("demo_trap compiled");
    assert_eq!(trap["outcome"], "miss", "{trap}");
    assert_eq!(trap["path_bound"], "output_holds_path", "{trap}");
    // Cargo's `-C metadata` of a path dependency outside the workspace holds its absolute path,
    // so each checkout's is another crate to rustc: a stored miss, never A's outputs.
    run.assert_stored_miss("outside_dep");
    run.assert_stored_miss("demo_leaf");
    // demo_gen's run wrote `include_str!("<its OUT_DIR>/text.txt")`: restored naming this
    // checkout's `OUT_DIR`, and the crate that includes it hits.
    run.assert_hit("demo_gen");
    let gen_run = run
        .events
        .iter()
        .find(|e| e["kind"] == "build_script_run" && e["crate"] == "demo_gen")
        .expect("demo_gen's run");
    assert_eq!(gen_run["outcome"], "hit", "{gen_run}");
    let generated = find_file(&other_target.join("debug/build"), "/demo_gen-", "gen.rs");
    let code = fs::read_to_string(&generated).unwrap();
    assert!(code.contains(other_target.to_str().unwrap()), "{code}");
    let b_trap = run_trap(&other_target);
    assert!(b_trap.starts_with("data of checkout B\n"), "{b_trap}");
    assert!(b_trap.ends_with("generated text\n"), "{b_trap}");
    assert!(b_trap.contains(other_target.to_str().unwrap()), "{b_trap}");
    let bin = sb.run_bin_in(&other_target);
    assert!(bin.contains("leaf=leaf-vB"), "{bin}");
    assert_no_file_names(&other_target.join("debug/deps"), &sb.ws);

    // Checkout A again: its own trap binary, from its own path-bound entry.
    fs::remove_dir_all(&sb.target).unwrap();
    let again = sb.cargo(&["build"]).ok();
    again.assert_hit("demo_trap");
    assert_eq!(run_trap(&sb.target), a_trap);
    let stats = sb.stats();
    assert!(
        stats["path_bound"]["output_holds_path"].as_u64() >= Some(2),
        "{stats:#}"
    );
}

/// The user's own `--remap-path-prefix` (for the workspace root, in `RUSTFLAGS`) keeps winning,
/// and the second checkout still hits: the flag's path is keyed normalized.
#[test]
fn the_users_own_remapping_wins_and_still_hits() {
    let sb = Sandbox::new();
    let flags = |ws: &Path| format!("--remap-path-prefix={}=/mine", ws.display());
    let a = sb.cargo(&["build"]).env("RUSTFLAGS", flags(&sb.ws)).ok();
    a.assert_stored_miss("demo_lib");
    let other = second_checkout(&sb, "user-remap/b");
    let other_target = sb.root.join("target-b");
    let run = sb
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&other_target)
        .env("RUSTFLAGS", flags(&other))
        .ok();
    assert_all_hit(&run, &CRATES);
    let binary = fs::read(other_target.join("debug/demo_bin")).unwrap();
    assert!(binary.windows(5).any(|window| window == b"/mine"));
    assert_no_file_names(&other_target, &sb.ws);
}

/// Two machines sharing one Redis, B with every path different (checkout, target dir,
/// `CARGO_HOME`): B restores every crate from what A published.
#[test]
fn another_machine_with_other_paths_hits_through_redis() {
    let server = RedisServer::start();
    let sb = Sandbox::new();
    let machine = |name: &str| {
        sb.machine(name)
            .envs(server.env())
            .env("RCACHE_REMOTE_UPLOAD", "sync")
            // Each crate's own lookup is what this test checks: no prefetcher.
            .env("RCACHE_REMOTE_PREFETCH", "0")
    };
    machine("a").build();
    let other = second_checkout(&sb, "runner/work/project/b");
    let home = sb.root.join("home-b/.cargo");
    fs::create_dir_all(&home).unwrap();
    let other_target = sb.root.join("runner/target");
    let run = machine("b")
        .cargo(&["build"])
        .in_dir(&other)
        .target_dir(&other_target)
        .env("CARGO_HOME", &home)
        .ok();
    for krate in CRATES {
        let event = run
            .event(krate)
            .unwrap_or_else(|| panic!("no event for {krate}"));
        assert_eq!(event["outcome"], "hit", "{event}");
        assert_eq!(event["remote"], "hit", "{event}");
    }
    assert_eq!(sb.run_bin_in(&other_target), expected_output(&[]));
    assert_no_file_names(&other_target, &sb.ws);
}

/// Adds the trap crates to a checkout: `demo_trap` (a bin with a build script, reading
/// `data.txt` through its manifest dir and printing its `OUT_DIR`) and `outside_dep`, a path
/// dependency beside the workspace, outside it.
fn add_traps(ws: &Path, data: &str) {
    let manifest = ws.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replacen("members = [", "members = [\"demo_trap\", \"demo_gen\", ", 1),
    )
    .unwrap();
    let outside = ws.parent().unwrap().join("outside_dep");
    fs::create_dir_all(outside.join("src")).unwrap();
    fs::write(
        outside.join("Cargo.toml"),
        "[package]\nname = \"outside_dep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(
        outside.join("src/lib.rs"),
        "pub fn outside() -> &'static str { \"outside\" }\n",
    )
    .unwrap();
    let trap = ws.join("demo_trap");
    fs::create_dir_all(trap.join("src")).unwrap();
    fs::write(
        trap.join("Cargo.toml"),
        "[package]\nname = \"demo_trap\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\noutside_dep = { path = \"../../outside_dep\" }\n\
         demo_gen = { path = \"../demo_gen\" }\n",
    )
    .unwrap();
    fs::write(trap.join("build.rs"), "fn main() {}\n").unwrap();
    fs::write(trap.join("data.txt"), format!("{data}\n")).unwrap();
    fs::write(
        trap.join("src/main.rs"),
        "fn main() {\n    let path = concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/data.txt\");\n    \
         print!(\"{}\", std::fs::read_to_string(path).unwrap());\n    \
         println!(\"{} {}\", env!(\"OUT_DIR\"), outside_dep::outside());\n    \
         println!(\"{}\", demo_gen::TEXT);\n}\n",
    )
    .unwrap();
    // The common generated-code pattern: `include_str!("<absolute OUT_DIR path>")`.
    let generator = ws.join("demo_gen");
    fs::create_dir_all(generator.join("src")).unwrap();
    fs::write(
        generator.join("Cargo.toml"),
        "[package]\nname = \"demo_gen\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(
        generator.join("build.rs"),
        "fn main() {\n    let out = std::path::PathBuf::from(std::env::var(\"OUT_DIR\").unwrap());\n    \
         std::fs::write(out.join(\"text.txt\"), \"generated text\").unwrap();\n    \
         let code = format!(\"pub const TEXT: &str = include_str!({:?});\\n\", out.join(\"text.txt\"));\n    \
         std::fs::write(out.join(\"gen.rs\"), code).unwrap();\n}\n",
    )
    .unwrap();
    fs::write(
        generator.join("src/lib.rs"),
        "include!(concat!(env!(\"OUT_DIR\"), \"/gen.rs\"));\n",
    )
    .unwrap();
}

/// The one file named `name` under `dir` whose path contains `within`.
fn find_file(dir: &Path, within: &str, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|entry| {
            entry.file_name() == name && entry.path().to_string_lossy().contains(within)
        })
        .map(|entry| entry.into_path())
        .collect();
    assert_eq!(found.len(), 1, "{name} under {}: {found:?}", dir.display());
    found[0].clone()
}

/// The trap binary's output.
fn run_trap(target: &Path) -> String {
    let (status, stdout, stderr) = run_command(
        &mut Command::new(target.join("debug/demo_trap")),
        "demo_trap",
    );
    assert!(status.success(), "{stderr}");
    stdout
}
