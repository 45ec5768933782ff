"""Latency of one restored build-script run, launcher included, against running the script.

Usage:
    python3 benches/harness/run_latency.py [--package bs_cc|bs_file|...] [--rcache PATH] [--runs N]

It builds the `scripts_ws` test fixture through rcache (which puts its launcher in place of every
build script), and has cargo run the wanted package's launcher through a recorder that saves the
exact environment, arguments and cwd cargo gives the script. Then it times, in the same run:
- spawning /bin/true (the floor of any process-per-invocation tool);
- the real script binary (`<name>.rcache-real`), as cargo would run it without rcache (3 times);
- the launcher with cargo's environment: launcher -> rcache -> restore `OUT_DIR` and replay
  (N times, after one run that records and one that warms the memos).
`bs_cc` compiles a C file with the `cc` crate; `bs_file` only writes one generated file.
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
WORK = Path.home() / ".cache" / "rcache-bench" / "work" / "run-latency"

# A declared input of each package's script: touching it makes cargo run the script again
# without recompiling it (which would put a fresh launcher over the recorder).
TRIGGERS = {"bs_cc": "csrc/add.c", "bs_file": "input.txt", "bs_nothing": "data/value.txt",
            "bs_links": "links_value.txt"}


def capture(package: str, rcache: str, store: str) -> dict:
    """Builds scripts_ws through rcache, then records how cargo runs `package`'s script."""
    source = WORK / "scripts_ws"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO / "tests" / "fixtures" / "scripts_ws", source)
    target = WORK / "target"
    shutil.rmtree(target, ignore_errors=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RCACHE_", "RUSTC_WRAPPER", "CARGO_"))}
    env.update(RUSTC_WRAPPER=rcache, RCACHE_DIR=store, CARGO_INCREMENTAL="0",
               CARGO_TARGET_DIR=str(target))
    subprocess.run(["cargo", "build", "-q", "-p", package], cwd=source, env=env, check=True)
    build = target / "debug" / "build"
    launchers = [d / "build-script-build" for d in build.glob(f"{package}-*")
                 if any(d.glob("*.rcache-real"))]
    if len(launchers) != 1:
        sys.exit(f"expected one launcher for {package}, found {launchers}")
    launcher = launchers[0]
    # Put a recorder in front of the launcher (under both names: cargo's `build-script-build`
    # link and rustc's output name), and make cargo run the script again.
    record = WORK / f"{package}.json"
    record.unlink(missing_ok=True)
    saved = launcher.with_name("launcher-saved")
    shutil.copy2(launcher, saved)
    real = next(launcher.parent.glob("*.rcache-real"))
    for path in (launcher, real.with_name(real.name.removesuffix(".rcache-real"))):
        path.unlink()
        path.write_text(f"#!/bin/sh\n{sys.executable} {__file__} --record {record} \"$@\"\n"
                        f"exec {saved} \"$@\"\n")
        path.chmod(0o755)
    (source / package / TRIGGERS[package]).touch()
    subprocess.run(["cargo", "build", "-q", "-p", package], cwd=source, env=env, check=True)
    recorded = json.loads(record.read_text())
    recorded["launcher"] = str(saved)
    recorded["real"] = str(real)
    return recorded


def record_mode(path: str) -> None:
    """Run by the recorder in front of the launcher: saves the environment, args and cwd."""
    Path(path).write_text(json.dumps({"env": dict(os.environ), "args": sys.argv[3:],
                                      "cwd": os.getcwd()}))


def measure(recorded: dict, store: str, runs: int) -> dict:
    """Times /bin/true, the real script and the launcher hitting, with cargo's environment."""
    env = dict(recorded["env"])
    env["RCACHE_DIR"] = store

    def run(command: list) -> float:
        start = time.perf_counter()
        done = subprocess.run(command + recorded["args"], cwd=recorded["cwd"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{command[0]} failed with {done.returncode}")
        return elapsed

    floor = statistics.median(run(["/bin/true"]) for _ in range(20))
    scripts = [run([recorded["real"]]) for _ in range(3)]
    run([recorded["launcher"]])
    run([recorded["launcher"]])
    timed = sorted(run([recorded["launcher"]]) for _ in range(runs))
    stats = json.loads(subprocess.run([env["RUSTC_WRAPPER"], "stats", "--json"], env=env,
                                      capture_output=True, check=True).stdout)
    restored = stats["build_scripts"]["hits"]
    if restored < runs:
        sys.exit(f"expected {runs} restored runs, rcache stats says {restored}")
    script_ms = statistics.median(scripts) * 1000
    hit_ms = statistics.median(timed) * 1000
    return {
        "package": recorded["env"].get("CARGO_PKG_NAME"),
        "spawn_true_ms": round(floor * 1000, 2),
        "script_run_ms": round(script_ms, 1),
        "launcher_hit_ms": round(hit_ms, 2),
        "launcher_hit_p90_ms": round(timed[int(len(timed) * 0.9)] * 1000, 2),
        "script_over_hit": round(script_ms / hit_ms, 1),
        "runs": runs,
    }


def main() -> None:
    """Parses the options, captures the run, measures and prints one JSON line."""
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        record_mode(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="bs_cc", choices=sorted(TRIGGERS))
    parser.add_argument("--rcache", default=str(REPO / "target" / "release" / "rcache"))
    parser.add_argument("--runs", type=int, default=50)
    options = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    store = tempfile.mkdtemp(prefix="rcache-run-latency-")
    try:
        recorded = capture(options.package, str(Path(options.rcache).resolve()), store)
        print(json.dumps(measure(recorded, store, options.runs)))
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
