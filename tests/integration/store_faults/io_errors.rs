//! I/O errors injected at the syscall level: `strace -e inject=<syscall>:error=<errno>:when=<k>`
//! on rcache only, for every write, rename and fsync of a store (a miss into an existing store,
//! a miss into a new store, a hit) and the store's opens: every compile exits 0 with correct
//! outputs, the store verifies, and the next run is correct.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::harness::Sandbox;
use crate::harness::leaf::{
    Call, Leaf, Strace, assert_verifies, outputs_of, profile, run_clean, run_leaf, settle_sources,
    walkdir_files,
};

/// Syscalls failed together in one walk, and the errors they are failed with.
struct Group {
    name: &'static str,
    syscalls: &'static [&'static str],
    errnos: &'static [&'static str],
}

const GROUPS: [Group; 4] = [
    Group {
        name: "writes",
        syscalls: &[
            "write",
            "pwrite64",
            "writev",
            "pwritev",
            "pwritev2",
            "copy_file_range",
            "ftruncate",
            "fallocate",
        ],
        errnos: &["ENOSPC", "EIO"],
    },
    Group {
        name: "renames",
        syscalls: &["rename", "renameat", "renameat2", "linkat"],
        errnos: &["EIO", "EXDEV"],
    },
    Group {
        name: "fsyncs",
        syscalls: &["fsync", "fdatasync", "msync", "sync_file_range"],
        errnos: &["EIO"],
    },
    Group {
        name: "opens",
        syscalls: &["openat"],
        errnos: &["EACCES", "ENOSPC"],
    },
];

/// The file a traced call names: the destination of a rename or link, otherwise its first path
/// or fd path (`-y`), the `AT_FDCWD<cwd>` of `*at` calls aside.
fn path_of(line: &str) -> &str {
    let Some(open) = line.find('(') else {
        return "";
    };
    let mut paths = Vec::new();
    let mut rest = &line[open + 1..];
    while let Some(start) = rest.find(['<', '"']) {
        let close = if rest.as_bytes()[start] == b'<' {
            '>'
        } else {
            '"'
        };
        let Some(len) = rest[start + 1..].find(close) else {
            break;
        };
        let token = &rest[start + 1..start + 1 + len];
        if !rest[..start].ends_with("AT_FDCWD") {
            paths.push(token);
        }
        rest = &rest[start + 1 + len + 1..];
    }
    let name = &line[..open];
    let destination = name.contains("rename") || name.contains("link");
    let path = if destination {
        paths.last()
    } else {
        paths.first()
    };
    path.copied().unwrap_or("")
}

/// What a traced call was writing or opening, by its path.
fn target_of(line: &str, sb: &Sandbox) -> &'static str {
    let path = path_of(line);
    let store = |dir: &str| path.contains(&format!("/v2/{dir}/"));
    if store("index") {
        "index"
    } else if store("state") {
        "state env"
    } else if store("tmp") || store("blobs") {
        "blobs"
    } else if path.ends_with("events.jsonl") {
        "events log"
    } else if path.starts_with(sb.root.join("out").to_str().unwrap()) {
        "out dir"
    } else if path.starts_with("pipe:") {
        "stderr"
    } else if path.starts_with(sb.root.to_str().unwrap()) || !path.starts_with('/') {
        "sandbox (store dir, sources)"
    } else {
        "other"
    }
}

/// What the walks of one scenario did, for the report.
#[derive(Default)]
struct Walked {
    /// Per group: points walked, faults injected (strace reached the point), counted faults.
    groups: BTreeMap<&'static str, (usize, usize, usize)>,
    /// Injected faults by what the call was for, and by the run's outcome.
    targets: BTreeMap<(&'static str, String), usize>,
    /// Temp files of restores (`*.rcache-<pid>`) left in out dirs.
    out_dir_temp_files: usize,
}

/// One scenario of the I/O error walk.
enum Scenario {
    /// A miss into the existing store.
    Miss,
    /// A miss into a store that does not exist yet (created by the run).
    NewStore,
    /// A hit.
    Hit,
}

/// One injected I/O error: `call` (the k-th call of its syscall) fails with `errno`.
struct Fault<'a> {
    call: &'a Call,
    errno: &'a str,
    group: &'static str,
}

/// Injects `fault` into a run of `leaf` on `store`, then checks the run and its store, and the
/// next uninjected run.
fn fail_at(
    sb: &Sandbox,
    scenario: &Scenario,
    store: &Path,
    leaf: &Leaf,
    fault: Fault,
    walked: &mut Walked,
) {
    let Fault { call, errno, group } = fault;
    let trace = sb.root.join("inject.trace");
    let strace = Strace {
        trace: Some(&call.name),
        inject: Some(call.inject(&format!("error={errno}"))),
        output: Some(&trace),
        ..Strace::default()
    };
    let what = format!(
        "{} failed with {errno} at #{} ({})",
        call.name, call.ordinal, call.line
    );
    let temp_files_before = outputs_of(&leaf.out).1;
    let run = run_leaf(sb, store, leaf, Some(strace));
    assert!(
        run.status.success(),
        "{what}: the compile failed: {}\n{}",
        run.status,
        run.stderr
    );
    leaf.assert_outputs(&what);
    walked.out_dir_temp_files += outputs_of(&leaf.out).1 - temp_files_before;
    let injected = fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .find(|line| line.ends_with("(INJECTED)"))
        .map(str::to_string);
    let counts = walked.groups.entry(group).or_default();
    counts.0 += 1;
    if let Some(line) = &injected {
        counts.1 += 1;
        counts.2 += usize::from(run.counted_fault());
        *walked
            .targets
            .entry((target_of(line, sb), run.describe()))
            .or_default() += 1;
    }
    assert_verifies(sb, store, &what);
    let tmp = store.join("v2/tmp");
    assert_eq!(walkdir_files(&tmp), 0, "{what}: files left in v2/tmp");

    let rerun = run_clean(sb, store, leaf, &format!("the run after: {what}"));
    let outcome = rerun.describe();
    let fine = match scenario {
        Scenario::Hit => outcome == "hit",
        Scenario::Miss | Scenario::NewStore => outcome == "hit" || outcome == "miss",
    };
    assert!(fine, "the run after: {what}: {outcome}");
}

#[test]
fn io_errors_in_stores_and_restores_break_no_build() {
    let started = Instant::now();
    let sb = Sandbox::new();
    settle_sources(&sb);
    let mut next = 0u64;
    let mut leaf = || {
        next += 1;
        Leaf::new(&sb, next)
    };
    let warm = leaf();
    assert_eq!(
        run_clean(&sb, &sb.store, &warm, "warm-up").describe(),
        "miss"
    );
    let stored = leaf();
    run_clean(&sb, &sb.store, &stored, "store for the hit walk");
    let new_store = |n: usize| sb.root.join("new-stores").join(n.to_string());
    let mut new_stores = 0;

    let scenarios = [Scenario::Miss, Scenario::NewStore, Scenario::Hit];
    let mut report = String::new();
    for scenario in &scenarios {
        let (label, calls) = match scenario {
            Scenario::Miss => (
                "miss",
                profile(&sb, &sb.store, &leaf(), false, "traced miss"),
            ),
            Scenario::NewStore => {
                new_stores += 1;
                let store = new_store(new_stores);
                let calls = profile(&sb, &store, &leaf(), false, "traced miss into a new store");
                ("miss into a new store", calls)
            }
            Scenario::Hit => ("hit", profile(&sb, &sb.store, &stored, false, "traced hit")),
        };
        let scenario_started = Instant::now();
        let mut walked = Walked::default();
        for group in &GROUPS {
            // A new store costs the compiler's identity (about 0.5 s): one errno per group,
            // and its opens are left to the other scenarios.
            let errnos = match scenario {
                Scenario::NewStore if group.name == "opens" => continue,
                Scenario::NewStore => &group.errnos[..1],
                _ => group.errnos,
            };
            let points = calls.iter().filter(|call| {
                group.syscalls.contains(&call.name.as_str())
                    // Opens of the sandbox's files only: failing the dynamic loader's opens
                    // of libc tests ld.so, not rcache.
                    && (group.name != "opens" || target_of(&call.line, &sb) != "other")
            });
            for call in points {
                for errno in errnos {
                    let fresh;
                    let (store, leaf) = match scenario {
                        Scenario::Miss => {
                            fresh = leaf();
                            (sb.store.clone(), &fresh)
                        }
                        Scenario::NewStore => {
                            new_stores += 1;
                            fresh = leaf();
                            (new_store(new_stores), &fresh)
                        }
                        Scenario::Hit => (sb.store.clone(), &stored),
                    };
                    let fault = Fault {
                        call,
                        errno,
                        group: group.name,
                    };
                    fail_at(&sb, scenario, &store, leaf, fault, &mut walked);
                }
            }
        }
        report.push_str(&format!("{label} ({:?}):\n", scenario_started.elapsed()));
        for (group, (points, injected, counted)) in &walked.groups {
            report.push_str(&format!(
                "  {group}: {points} points walked, {injected} faults injected, {counted} \
                 counted as errors or misses not stored\n"
            ));
        }
        for ((target, outcome), count) in &walked.targets {
            report.push_str(&format!("  fault in {target} -> {outcome}: {count}\n"));
        }
        report.push_str(&format!(
            "  restore temp files left in out dirs: {}\n",
            walked.out_dir_temp_files
        ));
        assert_eq!(
            walked.out_dir_temp_files, 0,
            "{label}: failed restores left temp files in out dirs\n{report}"
        );
        for group in ["writes", "renames", "fsyncs"] {
            let (_, _, counted) = walked.groups.get(group).copied().unwrap_or_default();
            assert!(
                counted > 0 || matches!(scenario, Scenario::Hit) && group == "fsyncs",
                "{label}: no fault in {group} was counted: the walk proves little\n{report}"
            );
        }
    }
    eprintln!(
        "io_errors_in_stores_and_restores_break_no_build ({:?}):\n{report}",
        started.elapsed()
    );
}
