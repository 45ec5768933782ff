#!/usr/bin/env python3
"""Dev-loop benchmark: rcache against no wrapper in cargo's default dev profile (issue 17).

    python3 benches/harness/dev_loop.py <workload>... [--reps N] [--rcache PATH] [--work-dir DIR]
    python3 benches/harness/dev_loop.py --show JSON

Workloads: `rcache` (a `git clone` of this repository at HEAD: one package, lib and bins) and
`ripgrep` (ripgrep's workspace as published on crates.io: the .crate files of ripgrep and its
eight workspace crates, unpacked as the members of a workspace whose `[patch.crates-io]` points
each at its own dir, so they are path crates, compiled with `-C incremental` as cargo does for
workspace members; their other dependencies come from the registry).

Nothing sets CARGO_INCREMENTAL: it, CARGO_BUILD_INCREMENTAL and CARGO_PROFILE_*_INCREMENTAL are
taken out of the environment, so the workspace's own crates build incrementally, as in a
developer's `cargo build`. Two modes, each with its own copy of the workspace and its own target
dir: `none` (no wrapper) and `rcache` (RUSTC_WRAPPER=rcache, RCACHE_DIR a store of the run). Every
repetition starts both from scratch (a fresh copy, no target dir, an empty store) and times, each
step's two builds back to back (the order of the modes alternates between repetitions):

1. `first`: the first build, cold (rcache stores everything);
2. `clean`: `cargo clean`, then `cargo build` (rcache: every compile should hit);
3. `edit-leaf`: a new function appended to a source file of a crate nothing depends on;
4. `edit-deps`: the same kind of edit in a crate that other members depend on (the leaf's edit
   stays);
5. `revert`: both files restored byte for byte (rcache: every compile should hit again);
6. `edit-leaf-2`, 7. `edit-deps-2`: the two edits again, with another function. A compile that
   rcache served from its store leaves the incremental dir as it was: after the clean build, the
   rcache mode has no incremental state at all, so its first edits compile the edited crates
   from scratch where none reuses the state its own clean build left. By the second edits both
   modes have the state of their earlier compiles, so these two steps show what storing costs
   apart from that.

Every build is `cargo build --offline --locked --timings` after one `cargo fetch`, measured like
e2e.py's (measure.run_build: wall, user, sys, and `others`, the CPU the rest of the machine used
meanwhile, in cores). rcache's counters are zeroed before each build and read after it (`rcache
stats --json`), with its RCACHE_EVENTS log of the build. The goal: an edit step's wall with rcache
at most 1.05 x none's. It prints a Markdown table of medians and, per edit step, where the time
went (each rebuilt unit's duration in both modes, rcache's outcome and what it stored), and writes
everything to benches/harness/results/devloop-<workload>-<timestamp>.json.
Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402
import tools  # noqa: E402
import workloads  # noqa: E402

DEFAULT_WORK_DIR = Path.home() / ".cache" / "rcache-bench" / "devloop"
RESULTS_DIR = workloads.HARNESS_DIR / "results"
WORKLOADS = ("rcache", "ripgrep")
MODES = ("none", "rcache")
STEPS = ("first", "clean", "edit-leaf", "edit-deps", "revert", "edit-leaf-2", "edit-deps-2")
STEP_TITLES = {"first": "first build (cold)", "clean": "clean build", "edit-leaf": "edit leaf crate",
               "edit-deps": "edit crate with dependents", "revert": "revert both edits",
               "edit-leaf-2": "edit leaf crate again", "edit-deps-2": "edit crate with dependents again"}
EDIT_STEPS = ("edit-leaf", "edit-deps", "edit-leaf-2", "edit-deps-2")
SECOND_EDIT = 100  # the second edits' functions are numbered rep + this
GOAL = 1.05  # an edit step's wall with rcache, at most this times none's

# ripgrep's workspace on crates.io: ripgrep 15.2.0 and the versions of its workspace crates that
# cargo resolved from its requirements (latest compatible) when this harness was written, pinned.
RIPGREP_CRATES = {
    "ripgrep": "15.2.0",
    "grep": "0.4.1",
    "grep-cli": "0.1.12",
    "grep-matcher": "0.1.9",
    "grep-printer": "0.3.1",
    "grep-regex": "0.1.14",
    "grep-searcher": "0.1.17",
    "globset": "0.4.22",
    "ignore": "0.4.35",
}
ENV_INCREMENTAL_PREFIX, ENV_INCREMENTAL_SUFFIX = "CARGO_PROFILE_", "_INCREMENTAL"


@dataclass
class Layout:
    """A prepared workload: the pristine workspace, the files its edits touch, its binary."""

    name: str
    origin: Path  # the pristine workspace, copied for each mode at each repetition
    leaf_file: str  # relative to the workspace root
    deps_file: str
    binary: str  # relative to <target>/debug; run with --version after each build
    members: tuple[str, ...]  # package names of the workspace's own crates
    info: dict  # where it came from: commit, versions, lock hash


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                   help="rcache and/or ripgrep, run one after the other")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default %(default)s)")
    p.add_argument("--rcache", type=Path,
                   help="rcache binary, used as is, with rcache-launcher beside it "
                        "(default: `cargo build --release` in the repo, then its "
                        "target/release/rcache)")
    p.add_argument("--repo", type=Path, default=workloads.REPO_ROOT,
                   help="repository the `rcache` workload clones at its HEAD (default %(default)s)")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                   help="scratch dir: workspaces, target dirs, stores, logs (default %(default)s)")
    p.add_argument("--jobs", "-j", type=int, help="cargo -j for every build")
    p.add_argument("--json", type=Path, help="where to write the JSON record (one workload only; "
                   "default benches/harness/results/devloop-<workload>-<timestamp>.json)")
    p.add_argument("--show", type=Path, metavar="JSON",
                   help="print the tables of an earlier run's JSON record, and exit")
    args = p.parse_args(argv)
    if not args.show and not args.workloads:
        p.error("a workload is required: rcache, ripgrep, or both")
    for name in args.workloads:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}: use {' or '.join(WORKLOADS)}")
    if args.json and len(args.workloads) > 1:
        p.error("--json takes one workload")
    if args.reps < 1:
        p.error("--reps must be at least 1")
    # Absolute and without `..` or symlinks: cargo passes the target dir to rustc as it is given.
    args.work_dir = args.work_dir.resolve()
    return args


# ---------------------------------------------------------------------------------------------
# Workloads


def _git(repo: Path, *argv: str) -> str:
    """Run git and return its stdout; exits the harness when git fails."""
    proc = subprocess.run(["git", *argv], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"dev_loop: `git {' '.join(argv)}` in {repo} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def prepare_rcache(repo: Path, work_dir: Path, env: dict[str, str]) -> Layout:
    """A fresh `git clone` of the repo at its HEAD (what is committed, not the work tree)."""
    commit = _git(repo, "rev-parse", "HEAD")
    origin = work_dir / "origin" / "rcache"
    shutil.rmtree(origin, ignore_errors=True)
    origin.parent.mkdir(parents=True, exist_ok=True)
    _git(origin.parent, "clone", "--quiet", "--no-checkout", str(repo.resolve()), origin.name)
    _git(origin, "checkout", "--quiet", "--detach", commit)
    workloads.fetch(workloads.Workload("rcache", origin, repo, committed_lock=True), env)
    return Layout("rcache", origin, leaf_file="src/main.rs", deps_file="src/clock.rs",
                  binary="rcache", members=("rcache",),
                  info={"repo": str(repo.resolve()), "commit": commit,
                        "lock_sha256": _sha256(origin / "Cargo.lock")})


def _sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _registry_crate(name: str, version: str, checksum: str) -> Path:
    """The .crate file cargo downloaded into its registry cache, checked against the lock."""
    home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    for path in sorted((home / "registry" / "cache").glob(f"*/{name}-{version}.crate")):
        if _sha256(path) == checksum:
            return path
    sys.exit(f"dev_loop: {name}-{version}.crate with checksum {checksum} not found in "
             f"{home}/registry/cache after `cargo fetch`")


def prepare_ripgrep(work_dir: Path, env: dict[str, str]) -> Layout:
    """ripgrep's workspace from its published .crate files, made once and kept in the work dir.

    cargo downloads the .crate files (a throwaway package depending on each pinned version, then
    `cargo fetch`; ripgrep itself has no lib, which cargo only warns about), and each is unpacked
    after its checksum is checked against that package's Cargo.lock. The workspace's own
    Cargo.lock is generated once, when the workspace is made; later runs reuse both.
    """
    root = work_dir / "origin"
    origin = root / "ripgrep"
    stamp = origin / ".devloop-crates.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == RIPGREP_CRATES
            and (origin / "Cargo.lock").is_file()):
        shutil.rmtree(origin, ignore_errors=True)
        fetcher = root / "ripgrep-fetcher"
        shutil.rmtree(fetcher, ignore_errors=True)
        (fetcher / "src").mkdir(parents=True)
        (fetcher / "src" / "lib.rs").write_text("")
        deps = "\n".join(f'{n} = "={v}"' for n, v in RIPGREP_CRATES.items())
        (fetcher / "Cargo.toml").write_text(
            '[package]\nname = "devloop-fetcher"\nversion = "0.0.0"\nedition = "2021"\n'
            f'publish = false\n\n[workspace]\n\n[dependencies]\n{deps}\n')
        _cargo(["fetch"], fetcher, env)
        lock = tomllib.loads((fetcher / "Cargo.lock").read_text())
        checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
        crates = origin / "crates"
        crates.mkdir(parents=True)
        for name, version in RIPGREP_CRATES.items():
            path = _registry_crate(name, version, checksums[(name, version)])
            with tarfile.open(path) as tar:
                tar.extractall(crates, filter="data")
            (crates / f"{name}-{version}").rename(crates / name)
        members = "".join(f'    "crates/{n}",\n' for n in RIPGREP_CRATES)
        patches = "".join(f'{n} = {{ path = "crates/{n}" }}\n' for n in RIPGREP_CRATES
                          if n != "ripgrep")  # nothing depends on ripgrep: no patch for it
        (origin / "Cargo.toml").write_text(
            "# ripgrep's workspace as published on crates.io, made by benches/harness/dev_loop.py\n"
            f'[workspace]\nresolver = "2"\nmembers = [\n{members}]\n\n'
            f"[patch.crates-io]\n{patches}")
        _cargo(["generate-lockfile"], origin, env)
        stamp.write_text(json.dumps(RIPGREP_CRATES))
        shutil.rmtree(fetcher, ignore_errors=True)
    workloads.fetch(workloads.Workload("ripgrep", origin, origin, committed_lock=True), env)
    return Layout("ripgrep", origin, leaf_file="crates/ripgrep/crates/core/main.rs",
                  deps_file="crates/globset/src/lib.rs", binary="rg",
                  members=tuple(RIPGREP_CRATES),
                  info={"crates": RIPGREP_CRATES, "lock_sha256": _sha256(origin / "Cargo.lock")})


def _cargo(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """A cargo command outside the timed part; exits the harness when it fails."""
    proc = subprocess.run(["cargo", *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"dev_loop: `cargo {' '.join(argv)}` failed in {cwd}:\n{proc.stderr[-3000:]}")


def edit_text(kind: str, n: int) -> str:
    """The harmless edit: a new public function, documented and allowed to be unused, so that no
    lint of the workspace (missing_docs, dead_code) can turn it into an error.

    A `#[used]` static refers to it, so that it is compiled into the output like real code: an
    unused function of a binary crate is not compiled at all, and the executable would come out
    byte for byte as before (which rcache's store deduplicates). `kind` (leaf, deps) keeps the
    two edits' names apart."""
    name = f"__dev_loop_{kind}_{n}"
    return (f"\n/// Added by benches/harness/dev_loop.py: a harmless edit.\n#[allow(dead_code)]\n"
            f"pub fn {name}() -> u32 {{\n    {n}\n}}\n"
            f"#[used]\nstatic {name.upper()}: fn() -> u32 = {name};\n")


# ---------------------------------------------------------------------------------------------
# Running


def base_env(marker: str) -> dict[str, str]:
    """The inherited environment without wrappers, target dirs or any incremental setting."""
    env = tools.clean_env(dict(os.environ))
    env = {k: v for k, v in env.items()
           if not (k.startswith(ENV_INCREMENTAL_PREFIX) and k.endswith(ENV_INCREMENTAL_SUFFIX))}
    env.update(CARGO_TERM_COLOR="never", CARGO_TERM_PROGRESS_WHEN="never")
    env[measure.MARKER_VAR] = marker
    return env


def dir_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under a dir; (0, 0) when it does not exist."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


def _event_fits(unit: dict, event: dict) -> bool:
    """Whether an rcache event can be a timing unit's: a bin unit's compile is a bin, a lib's is
    not (build scripts and their runs are told apart by measure.slowest_units itself)."""
    if event.get("kind") != "rustc" or str(event.get("crate") or "").startswith("build_script"):
        return True
    is_bin = "bin" in (event.get("crate_types") or [])
    if unit["kind"] == "bin":
        return is_bin
    if unit["kind"] == "lib":
        return not is_bin
    return True


class Bench:
    """One workload's runs: both modes, every step, every repetition."""

    def __init__(self, args: argparse.Namespace, layout: Layout, rcache: tools.Rcache,
                 env: dict[str, str], stamp: str):
        """Lay out each mode's dirs: workspace copy, target dir, store; and the logs."""
        self.args, self.layout, self.env = args, layout, env
        self.tools: dict[str, tools.Tool] = {"none": tools.Tool(), "rcache": rcache}
        self.run_dir = args.work_dir / "runs" / layout.name
        self.log_dir = args.work_dir / "logs" / f"{layout.name}-{stamp}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.runs: list[dict] = []

    def src(self, mode: str) -> Path:
        """The mode's copy of the workspace."""
        return self.run_dir / mode / "src"

    def target(self, mode: str) -> Path:
        """The mode's target dir."""
        return self.run_dir / mode / "target"

    def store(self, mode: str) -> Path:
        """The mode's rcache store (RCACHE_DIR)."""
        return self.run_dir / mode / "store"

    def mode_env(self, mode: str) -> dict[str, str]:
        """The build environment of a mode: its target dir, and rcache with its store."""
        env = {**self.env, "CARGO_TARGET_DIR": str(self.target(mode))}
        env.update(self.tools[mode].env(self.store(mode)))
        return env

    def cargo_build_cmd(self) -> list[str]:
        """The timed command."""
        cmd = ["cargo", "build", "--offline", "--locked", "--timings"]
        return cmd + (["-j", str(self.args.jobs)] if self.args.jobs else [])

    def run_all(self) -> None:
        """Every repetition: fresh workspaces, then each step in both modes, back to back."""
        for rep in range(1, self.args.reps + 1):
            order = MODES if rep % 2 else tuple(reversed(MODES))
            originals: dict[str, dict[str, bytes]] = {}
            for mode in order:
                shutil.rmtree(self.run_dir / mode, ignore_errors=True)
                workloads._copy_tree(self.layout.origin, self.src(mode))
            for step in STEPS:
                for mode in order:
                    src = self.src(mode)
                    if step == "clean":
                        subprocess.run(["cargo", "clean"], cwd=src, env=self.mode_env(mode),
                                       capture_output=True, check=False)
                    elif step in EDIT_STEPS:
                        leaf = step.startswith("edit-leaf")
                        rel = self.layout.leaf_file if leaf else self.layout.deps_file
                        saved = originals.setdefault(mode, {})
                        data = saved.setdefault(rel, (src / rel).read_bytes())
                        n = rep + (SECOND_EDIT if step.endswith("-2") else 0)
                        edit = edit_text("leaf" if leaf else "deps", n)
                        (src / rel).write_bytes(data + edit.encode())
                    elif step == "revert":
                        for rel, data in originals.get(mode, {}).items():
                            (src / rel).write_bytes(data)
                    self.run_one(rep, step, mode)

    def run_one(self, rep: int, step: str, mode: str) -> dict:
        """Run and measure one build; read rcache's stats, events and cargo's timings; record."""
        env = self.mode_env(mode)
        tool = self.tools[mode]
        stem = f"rep{rep}-{step}-{mode}"
        events_path = self.log_dir / f"{stem}.events.jsonl"
        record = {"rep": rep, "step": step, "mode": mode, "exit_code": None, "error": None,
                  "log": str(self.log_dir / f"{stem}.log")}
        if mode == "rcache":
            env["RCACHE_EVENTS"] = str(events_path)
        try:
            store_before = dir_size(self.store(mode))
            if mode == "rcache" and step != "first":  # a cold store is not even created before
                tool.start(env, warm=True)  # `rcache stats --zero`
            started = record["started"] = time.time()
            result = measure.run_build(self.cargo_build_cmd(), self.src(mode), env,
                                       Path(record["log"]))
            record.update(exit_code=result.exit_code, wall_s=result.wall_s, user_s=result.user_s,
                          sys_s=result.sys_s, foreign_cpu_s=result.foreign_cpu_s)
            if mode == "rcache":
                stats = tool.stats(env) or {}
                record["stats_summary"] = tool.summarize(stats, env, started)
                # What the build added to the store, on disk (the stats' store_bytes can lag).
                files, size = dir_size(self.store(mode))
                record.update(store_bytes=size, stored_bytes=size - store_before[1],
                              stored_files=files - store_before[0])
        except Exception as exc:  # noqa: BLE001 - a failed build is recorded, not a crash
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["incremental"] = dict(zip(("files", "bytes"),
                                         dir_size(self.target(mode) / "debug" / "incremental")))
        record["program_ok"] = self._program_ok(mode)
        self._add_units(record, mode, events_path, step)
        self.runs.append(record)
        self._print_progress(record)
        return record

    def _program_ok(self, mode: str) -> bool | None:
        """Whether the workload's binary, just built, runs (`--version`); None when absent."""
        binary = self.target(mode) / "debug" / self.layout.binary
        if not binary.is_file():
            return None
        try:
            proc = subprocess.run([str(binary), "--version"], capture_output=True, timeout=60,
                                  env=tools.clean_env(dict(os.environ)), stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    def _add_units(self, record: dict, mode: str, events_path: Path, step: str) -> None:
        """The units the build ran, slowest first, from its timings report, with rcache's event
        of each (so that a cold or clean build can be compared unit by unit too).

        Cargo's report lists the fresh units too, with start and duration 0; a unit that ran
        starts after cargo's own setup (a few hundredths of a second at least). A bin's rustc
        crate is named after the bin (ripgrep's is `rg`): it is matched to its event under that
        name, and reported under its package's."""
        path = measure.find_timings(self.target(mode))
        raw = measure.parse_unit_data(path.read_text(errors="replace")) if path else []
        units = []
        for unit, data in zip(measure.units_from_timings(path), raw):
            if (unit["start_s"] or 0) <= 0 and (unit["duration_s"] or 0) <= 0:
                continue  # fresh
            bin_name = re.match(r'\s*(\S+) "bin"$', data.get("target") or "")
            if bin_name:
                unit.update(package=unit["name"], name=bin_name.group(1))
            units.append(unit)
        events = measure.read_events(events_path) if mode == "rcache" else None
        record["units_built"] = len(units)
        matched = []
        for unit in sorted(units, key=lambda u: u.get("duration_s") or 0, reverse=True):
            # A package's lib and bin can share a crate name (rcache's do): only the events of
            # the unit's own kind are candidates.
            fits = None if events is None else [e for e in events if _event_fits(unit, e)]
            matched += measure.slowest_units([unit], fits, 1, record.get("started"))
        for row in matched:  # slowest_units copies each unit, `package` included
            if "package" in row:
                row["crate"], row["name"] = row["name"], row.pop("package")
        record["units"] = matched
        if events is not None:
            record["event_outcomes"] = measure.outcome_counts(events)
            record["events_total_ms"] = round(sum(e.get("duration_ms") or 0 for e in events), 1)

    def _print_progress(self, r: dict) -> None:
        """One line per build on the console."""
        label = f"[rep {r['rep']}/{self.args.reps}] {r['step']:<9} {r['mode']:<6}"
        if r["exit_code"] is None:
            print(f"{label} FAILED: {r['error']}", flush=True)
            return
        s = r.get("stats_summary") or {}
        extra = ""
        if s:
            extra = (f"  hits {s.get('hits')} misses {s.get('misses')} passthrough "
                     f"{s.get('passthrough')}  stored {report.mib(r.get('stored_bytes'))}")
        others = r["foreign_cpu_s"] / r["wall_s"] if r.get("foreign_cpu_s") is not None else None
        print(f"{label} {r['wall_s']:7.2f} s wall  user+sys {r['user_s'] + r['sys_s']:7.2f} s"
              f"  units {r['units_built']:3d}{extra}  others {_fmt(others, '.2f')}"
              f"  exit {r['exit_code']}" + ("" if r["program_ok"] in (True, None)
                                            else "  PROGRAM FAILED"), flush=True)
        if r["exit_code"] != 0:
            tail = Path(r["log"]).read_text(errors="replace").splitlines()[-15:]
            print("\n".join("    " + line for line in tail), flush=True)


# ---------------------------------------------------------------------------------------------
# Summaries


def _median(values: list) -> float | None:
    """Median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, fmt: str, unit: str = "") -> str:
    """A number, or an empty cell for None."""
    return "" if value is None else f"{value:{fmt}}{unit}"


def summarize(runs: list[dict]) -> list[dict]:
    """One row per step and mode: medians over the repetitions, and rcache against none."""
    rows = []
    for step in STEPS:
        base = None
        for mode in MODES:
            timed = [r for r in runs if r["step"] == step and r["mode"] == mode]
            ok = [r for r in timed if r["exit_code"] == 0]
            stats = [r.get("stats_summary") or {} for r in ok]
            row = {
                "step": step, "mode": mode, "reps": len(timed), "ok": len(ok),
                "wall_s": _median([r["wall_s"] for r in ok]),
                "cpu_s": _median([r["user_s"] + r["sys_s"] for r in ok]),
                "others_cores": _median([r["foreign_cpu_s"] / r["wall_s"] for r in ok
                                         if r.get("foreign_cpu_s") is not None and r["wall_s"]]),
                "units": _median([r.get("units_built") for r in ok]),
                "programs_ok": sum(1 for r in ok if r.get("program_ok") is not False),
            }
            if mode == "rcache":
                row.update(hits=_median([s.get("hits") for s in stats]),
                           misses=_median([s.get("misses") for s in stats]),
                           passthrough=_median([s.get("passthrough") for s in stats]),
                           stored_bytes=_median([r.get("stored_bytes") for r in ok]))
            if mode == "none":
                base = row
            else:
                row["ratio_wall"] = row["wall_s"] / base["wall_s"] \
                    if base and base["wall_s"] and row["wall_s"] is not None else None
                row["ratio_cpu"] = row["cpu_s"] / base["cpu_s"] \
                    if base and base["cpu_s"] and row["cpu_s"] is not None else None
                row["paired_ratios"] = [
                    r["wall_s"] / n["wall_s"] for r in ok for n in runs
                    if n["mode"] == "none" and n["step"] == step and n["rep"] == r["rep"]
                    and n["exit_code"] == 0 and n["wall_s"]]
                if step in EDIT_STEPS and row["ratio_wall"] is not None:
                    row["goal_met"] = row["ratio_wall"] <= GOAL
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The summary as a Markdown table."""
    lines = ["| step | mode | wall | x none | user+sys | x none | units run | rcache hits / misses / "
             "passthrough | stored | others | ok/reps |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        ratio = _fmt(r.get("ratio_wall"), ".2f")
        if "goal_met" in r:
            ratio += f" {'≤' if r['goal_met'] else '>'} {GOAL}"
        counts = ""
        if r["mode"] == "rcache" and r.get("hits") is not None:
            counts = f"{r['hits']:.0f} / {r['misses']:.0f} / {r['passthrough']:.0f}"
        stored = report.mib(r["stored_bytes"]) if r.get("stored_bytes") is not None else ""
        lines.append(f"| {STEP_TITLES[r['step']]} | {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} "
                     f"| {ratio} | {_fmt(r['cpu_s'], '.2f', ' s')} | {_fmt(r.get('ratio_cpu'), '.2f')} "
                     f"| {_fmt(r['units'], '.0f')} | {counts} | {stored} | {_fmt(r['others_cores'], '.2f')} "
                     f"| {r['ok']}/{r['reps']} |")
    return "\n".join(lines)


def units_table(runs: list[dict], step: str, rep: int) -> str | None:
    """Where one step's time went in one repetition: each unit rebuilt, in both modes."""
    by_mode = {r["mode"]: r for r in runs if r["step"] == step and r["rep"] == rep}
    if set(by_mode) != set(MODES):
        return None
    keys: list[tuple] = []
    durations: dict[str, dict[tuple, dict]] = {}
    for mode in MODES:
        durations[mode] = {}
        for u in by_mode[mode].get("units") or []:
            key = (u["name"], u["version"], u["kind"], u.get("crate"))
            durations[mode][key] = u
            if key not in keys:
                keys.append(key)
    keys.sort(key=lambda k: -max((durations[m].get(k) or {}).get("duration_s") or 0 for m in MODES))
    lines = ["| unit | kind | none | rcache | rcache outcome | rcache wrapper |",
             "|---|---|---:|---:|---|---:|"]
    for key in keys:
        n, r = durations["none"].get(key) or {}, durations["rcache"].get(key) or {}
        outcome = (r.get("outcome") or "?") + (f" ({r['reason']})" if r.get("reason") else "")
        crate = f" ({key[3]})" if key[3] and key[3] != key[0] else ""
        lines.append(f"| {key[0]} {key[1]}{crate} | {key[2]} | {_fmt(n.get('duration_s'), '.2f', ' s')} "
                     f"| {_fmt(r.get('duration_s'), '.2f', ' s')} | {outcome if r else ''} "
                     f"| {_fmt(r.get('wrapper_ms'), '.0f', ' ms')} |")
    rc = by_mode["rcache"]
    inc = {m: by_mode[m].get("incremental") or {} for m in MODES}
    lines.append("")
    lines.append(f"rcache stored {report.mib(rc.get('stored_bytes'))} in "
                 f"{rc.get('stored_files')} files; incremental dir after the build: none "
                 f"{report.mib(inc['none'].get('bytes'))}, rcache {report.mib(inc['rcache'].get('bytes'))}")
    return "\n".join(lines)


def print_tables(name: str, runs: list[dict]) -> None:
    """The summary table, then the units of each edit and revert step (last repetition)."""
    print(f"\n{name}: medians over the repetitions; x none = rcache's median / none's "
          f"(goal for the edit steps: ≤ {GOAL}); others = the rest of the machine's load, in cores\n")
    print(table(summarize(runs)))
    reps = [r["rep"] for r in runs]
    if not reps:
        return
    for step in STEPS[2:]:
        text = units_table(runs, step, max(reps))
        if text:
            print(f"\n{STEP_TITLES[step]}, rep {max(reps)}: the units cargo rebuilt\n")
            print(text)


def checks(runs: list[dict]) -> list[str]:
    """What went wrong: a failed build or program, a revert or clean build with rcache misses."""
    out = []
    for r in runs:
        name = f"{r['step']} {r['mode']} rep {r['rep']}"
        if r["exit_code"] != 0:
            out.append(f"{name}: exit {r['exit_code']} {r['error'] or ''}".strip())
        elif r.get("program_ok") is False:
            out.append(f"{name}: the built program does not run")
        elif r["mode"] == "rcache" and r["step"] in ("clean", "revert"):
            misses = (r.get("stats_summary") or {}).get("misses")
            if misses:
                out.append(f"{name}: {misses} rcache misses (expected every compile to hit)")
    return out


# ---------------------------------------------------------------------------------------------


def run_workload(args: argparse.Namespace, name: str, rcache: tools.Rcache, stamp: str) -> int:
    """Prepare one workload, run every repetition, print and write the record."""
    try:
        workloads.lock(args.work_dir, f"devloop-{name}")
    except workloads.WorkloadError as exc:
        print(f"dev_loop: {exc}", file=sys.stderr)
        return 2
    env = base_env(f"{os.getpid()}-{stamp}-{name}")
    start = time.monotonic()
    layout = prepare_rcache(args.repo, args.work_dir, env) if name == "rcache" \
        else prepare_ripgrep(args.work_dir, env)
    print(f"workload {name} ({layout.origin}): prepared and fetched in "
          f"{time.monotonic() - start:.1f} s (not timed); leaf {layout.leaf_file}, "
          f"with dependents {layout.deps_file}; reps {args.reps}", flush=True)
    bench = Bench(args, layout, rcache, env, stamp)
    interrupted = False
    try:
        bench.run_all()
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not lose the record
        print("dev_loop: interrupted; writing what ran", file=sys.stderr)
    json_path = args.json or RESULTS_DIR / f"devloop-{name}-{stamp}.json"
    record = {
        "harness": "benches/harness/dev_loop.py", "format": 1, "date": stamp,
        "workload": {"name": name, "origin": str(layout.origin), "leaf_file": layout.leaf_file,
                     "deps_file": layout.deps_file, "members": list(layout.members),
                     **layout.info},
        "machine": report.machine_info(),
        "settings": {"reps": args.reps, "modes": list(MODES), "steps": list(STEPS),
                     "profile": "dev", "jobs": args.jobs, "command": bench.cargo_build_cmd(),
                     "incremental_env": {k: v for k, v in env.items() if "INCREMENTAL" in k},
                     "rustflags": env.get("RUSTFLAGS"), "goal": GOAL},
        "tools": {"rcache": {"path": str(rcache.binary), "version": rcache.version()}},
        "repo": report.repo_state(workloads.REPO_ROOT),
        "interrupted": interrupted,
        "summary": summarize(bench.runs),
        "runs": bench.runs,
    }
    report.write_json(json_path, record)
    print_tables(name, bench.runs)
    print(f"\nJSON: {json_path}\nlogs: {bench.log_dir}")
    problems = checks(bench.runs) + (["interrupted before every build ran"] if interrupted else [])
    for problem in problems:
        print(f"dev_loop: CHECK: {problem}", file=sys.stderr)
    return 130 if interrupted else 1 if any(r["exit_code"] != 0 for r in bench.runs) else 0


def main(argv: list[str]) -> int:
    """Run the harness; the exit code says whether every build passed."""
    args = parse_args(argv)
    if args.show:
        record = json.loads(args.show.read_text())
        m = record["machine"]
        print(f"{record['workload']['name']}, {record['date']}, {m['cores']} cores, "
              f"{m['memory_gib']} GiB, reps {record['settings']['reps']}")
        print_tables(record["workload"]["name"], record["runs"])
        return 0
    args.rcache = e2e.build_rcache(args.rcache)
    if not args.rcache.is_file():
        sys.exit(f"dev_loop: --rcache {args.rcache} does not exist")
    if not args.rcache.with_name(e2e.LAUNCHER).is_file():
        print(f"dev_loop: no {e2e.LAUNCHER} beside {args.rcache}: build-script runs will not be "
              f"cached", file=sys.stderr)
    rcache = tools.Rcache(args.rcache.resolve())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # SIGTERM unwinds like Ctrl-C: the build is killed, and what ran is written.
    signal.signal(signal.SIGTERM, e2e._raise_interrupt)
    code = 0
    for name in args.workloads:
        code = max(code, run_workload(args, name, rcache, stamp))
        if code == 130:
            break
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
