"""Latency of one rcache hit, as a whole process, against the rustc compile it replaces.

Usage:
    python3 benches/harness/hit_latency.py [--crate syn|fixture] [--rcache PATH] [--hits N]

It builds a small package through a recording wrapper to capture the exact rustc invocation
cargo makes for the crate (argv, environment, cwd), then times, in the same run:
- spawning /bin/true (the floor of any process-per-invocation wrapper);
- plain rustc compiling the crate with those arguments (3 times);
- `rcache <rustc> <args>` hitting (N times, after two runs that fill the cache and the memos).
The crate's outputs are deleted before every timed run (untimed), as after `cargo clean`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = Path.home() / ".cache" / "rcache-bench" / "work" / "hit-latency"

SYN_MANIFEST = """[package]
name = "hitlatency"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
syn = { version = "=2.0.119", features = ["full", "extra-traits", "visit", "visit-mut", "fold"] }

[workspace]
"""


def record_mode() -> None:
    """Acts as RUSTC_WRAPPER: saves the invocation of the wanted crate, then runs rustc."""
    wanted = os.environ["HIT_LATENCY_CRATE"]
    args = sys.argv[2:]
    if f"--crate-name={wanted}" in args or any(
        a == "--crate-name" and b == wanted for a, b in zip(args, args[1:])
    ):
        record = {"args": args, "env": dict(os.environ), "cwd": os.getcwd()}
        Path(os.environ["HIT_LATENCY_RECORD"]).write_text(json.dumps(record))
    os.execvp(args[0], args)


def capture(crate: str) -> dict:
    """Builds a package containing the crate through the recording wrapper."""
    if crate == "fixture":
        package, name = REPO / "tests" / "fixtures" / "demo_ws", "demo_leaf"
        source = WORK / "fixture"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(package, source)
    else:
        name = crate
        source = WORK / crate
        source.mkdir(parents=True, exist_ok=True)
        (source / "src").mkdir(exist_ok=True)
        (source / "Cargo.toml").write_text(SYN_MANIFEST)
        (source / "src" / "lib.rs").write_text("")
    record = WORK / f"{crate}.json"
    record.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCACHE_", "RUSTC_WRAPPER"))}
    env.update(
        HIT_LATENCY_CRATE=name,
        HIT_LATENCY_RECORD=str(record),
        CARGO_INCREMENTAL="0",
        CARGO_TARGET_DIR=str(WORK / "target"),
    )
    # cargo runs `$RUSTC_WRAPPER <rustc> <args>`: the interpreter gets rustc's path as its script,
    # so go through a tiny launcher that re-enters this file in record mode.
    launcher = WORK / "record-wrapper"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {__file__} --record \"$@\"\n")
    launcher.chmod(0o755)
    env["RUSTC_WRAPPER"] = str(launcher)
    # The fixture's demo_lib reads DEMO_GREETING with env!; only the wanted crate is built.
    env.setdefault("DEMO_GREETING", "hello")
    subprocess.run(["cargo", "clean", "-q"], cwd=source, env=env, check=True)
    subprocess.run(["cargo", "build", "-q", "-p", name], cwd=source, env=env, check=True)
    return json.loads(record.read_text())


def measure(recorded: dict, rcache: str, hits: int) -> dict:
    """Times /bin/true, rustc and rcache hits with the recorded invocation."""
    args = recorded["args"]
    out_dir = args[args.index("--out-dir") + 1]
    extra = next(a.split("=", 1)[1] for a in args if a.startswith("extra-filename="))
    name = args[args.index("--crate-name") + 1]
    store = tempfile.mkdtemp(prefix="rcache-hit-latency-")
    env = {k: v for k, v in recorded["env"].items() if not k.startswith(("RCACHE_", "HIT_"))}
    env.pop("RUSTC_WRAPPER", None)
    env["RCACHE_DIR"] = store

    def clean() -> None:
        for path in Path(out_dir).glob(f"*{name}{extra}*"):
            path.unlink()

    def run(command: list) -> float:
        clean()
        start = time.perf_counter()
        done = subprocess.run(command, cwd=recorded["cwd"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{command[0]} failed with {done.returncode}")
        return elapsed

    try:
        floor = statistics.median(run(["/bin/true"]) for _ in range(20))
        compiles = [run(args) for _ in range(3)]
        run([rcache] + args)
        run([rcache] + args)
        timed = sorted(run([rcache] + args) for _ in range(hits))
        stats = json.loads(subprocess.run([rcache, "stats", "--json"], env=env,
                                          capture_output=True, check=True).stdout)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    if stats["hits"] < hits:
        sys.exit(f"expected {hits} hits, rcache stats says {stats['hits']}")
    compile_ms = statistics.median(compiles) * 1000
    hit_ms = statistics.median(timed) * 1000
    return {
        "crate": name,
        "spawn_true_ms": round(floor * 1000, 2),
        "rustc_compile_ms": round(compile_ms, 1),
        "rcache_hit_ms": round(hit_ms, 2),
        "rcache_hit_p90_ms": round(timed[int(len(timed) * 0.9)] * 1000, 2),
        "compile_over_hit": round(compile_ms / hit_ms, 1),
        "hits": hits,
    }


def main() -> None:
    """Parses the options, captures the invocation, measures and prints one JSON line."""
    if len(sys.argv) > 1 and sys.argv[1] == "--record":
        record_mode()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crate", default="syn", choices=["syn", "fixture"])
    parser.add_argument("--rcache", default=str(REPO / "target" / "release" / "rcache"))
    parser.add_argument("--hits", type=int, default=50)
    options = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    result = measure(capture(options.crate), options.rcache, options.hits)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
