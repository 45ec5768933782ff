#!/usr/bin/env python3
"""End-to-end benchmark of rcache against no wrapper, sccache and kache, on real crates.

    python3 benches/harness/e2e.py <workload> [--reps N] [--modes ...] [--quick] [--json OUT]
                                              [--install-peers] [--rcache PATH] [--release]

For one workload (webrender, stylo, fixture, or a path) it fetches the dependencies once, then
runs every mode as a clean build (`cargo clean`, then `cargo build --offline --locked --timings`),
all with CARGO_INCREMENTAL=0, LIBZ_SYS_STATIC=1 and a target dir of the workload's own:

- `none`: no wrapper;
- `<tool>-cold`: the tool with a fresh, empty cache dir;
- `<tool>-warm`: the cache the cold run of the same repetition left;
- with `--remote redis|s3` (a server the harness starts on a loopback port, see remote.py, or
  with `--link 1gbit-5ms|100mbit-30ms` behind a shaped link of the run's own, see link.py):
  `rcache-remote-cold` (empty local store and empty remote, background upload, then
  `rcache remote flush` timed apart), `rcache-remote-cold-sync` (the same with synchronous
  upload), `rcache-remote-warm` (empty local store, the remote the cold mode before it filled),
  and the peers' `sccache-remote-cold|warm`, `kache-remote-cold|warm` alike (peer_remote.py);
- `rcache-second-copy` (and `rcache-second-copy-home`, with a CARGO_HOME of its own too): a warm
  build of a copy of the workload at another path, with its own target dir, from the store that
  `rcache-cold` filled from the first copy; compared with `rcache-warm`, which it brings along,
  and its units counted by `path_bound` reason (issue 15, see second_copy.py);
- with `--remote`, `rcache-remote-second-copy-home`: such a copy (its own path and CARGO_HOME)
  built with an empty local store of its own from the remote the first copy filled.

With --reps N the whole cycle runs N times, modes interleaved, so that a noisy machine drifts
every mode alike. It prints a Markdown table of medians and writes everything to JSON.
See benches/README.md for what each figure means. Standard library only, so CI needs nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))

import link  # noqa: E402
import measure  # noqa: E402
import peer_remote  # noqa: E402
import remote  # noqa: E402
import report  # noqa: E402
import second_copy  # noqa: E402
import tools  # noqa: E402
import workloads  # noqa: E402

TOOL_ORDER = ("none", "rcache", "sccache", "kache")
DEFAULT_REMOTE_MODES = ("rcache-remote-cold", "rcache-remote-cold-sync", "rcache-remote-warm")
"""The remote modes run by default with --remote."""
REMOTE_MODES = (*DEFAULT_REMOTE_MODES, second_copy.REMOTE)
"""rcache with a remote store, run after rcache's local modes; `rcache-remote` means all four."""
UPLOAD = {"rcache-remote-cold-sync": "sync"}  # RCACHE_REMOTE_UPLOAD; the others: background
DEFAULT_WORK_DIR = Path.home() / ".cache" / "rcache-bench" / "work"
RESULTS_DIR = workloads.HARNESS_DIR / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", nargs="?", help="webrender, stylo, fixture, or a dir with Cargo.toml")
    p.add_argument("--path", help="build this cargo workspace dir (copied to the work dir) "
                                  "under the workload's name")
    p.add_argument("--reps", type=int, help="repetitions of the whole cycle "
                                            "(default 3; 1 for stylo and --quick)")
    p.add_argument("--modes", nargs="+", help="modes to run, space- or comma-separated: none, "
                   "rcache-cold, rcache-warm, sccache-cold, ..., and with --remote "
                   "rcache-remote-cold, rcache-remote-cold-sync, rcache-remote-warm, "
                   "rcache-remote-second-copy-home, and rcache-second-copy, "
                   "rcache-second-copy-home (the second-copy ones bring rcache-warm along); "
                   "sccache-remote-cold|warm, kache-remote-cold|warm (s3); a bare tool name "
                   "means its cold and warm modes, `<tool>-remote` its remote ones. "
                   "Default: none, rcache (and rcache-remote with --remote) and every peer found")
    p.add_argument("--remote", choices=remote.BACKENDS,
                   help="start this server on a free loopback port for the run (redis-server, or "
                        "moto's S3 server) and run the remote modes against it")
    p.add_argument("--link", choices=link.LINKS, default="loopback",
                   help="the network to the --remote server: loopback (default), or a namespace "
                        "behind a shaped veth pair (1gbit-5ms: 1 Gbit/s, 5 ms round trip; "
                        "100mbit-30ms: 100 Mbit/s, 30 ms), measured at the start (link.py)")
    p.add_argument("--quick", action="store_true", help="CI mode: fixture, 1 rep, none and rcache "
                   "(and peers if present); fails unless every build passed and rcache-warm hit")
    p.add_argument("--json", type=Path, help="where to write the JSON record "
                   "(default benches/harness/results/<workload>-<timestamp>.json)")
    p.add_argument("--install-peers", action="store_true",
                   help="cargo install sccache and kache into --peer-root first")
    p.add_argument("--peer-root", type=Path, default=tools.DEFAULT_PEER_ROOT,
                   help="scratch install root of the peers (default %(default)s)")
    p.add_argument("--rcache", type=Path, help="rcache binary to use as is "
                   "(default: `cargo build --release` in the repo, then its target/release/rcache)")
    p.add_argument("--release", action="store_true", help="build the workload with --release")
    p.add_argument("--jobs", "-j", type=int, help="cargo -j for the workload builds")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                   help="scratch dir for target dirs, caches and logs (default %(default)s)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set a variable for every build (repeatable)")
    p.add_argument("--rcache-env", action="append", default=[], metavar="KEY=VALUE",
                   help="set a variable for rcache's builds only (repeatable); {rcache} in VALUE "
                        "is the rcache binary, e.g. CC='{rcache} cc'")
    p.add_argument("--show", type=Path, metavar="JSON",
                   help="print the tables of an earlier run's JSON record, and exit")
    p.add_argument("--top", type=int, default=10, help="slowest units to report (default 10)")
    args = p.parse_args(argv)
    if args.quick:
        args.workload = args.workload or "fixture"
        args.reps = args.reps or 1
    if args.workload is None and args.path is None and not (args.install_peers or args.show):
        p.error("a workload is required")
    if args.reps is None:
        args.reps = 1 if args.workload == "stylo" else 3
    if args.link != "loopback" and not args.remote:
        p.error("--link shapes the way to the remote: pass --remote redis or --remote s3")
    return args


def select_modes(args: argparse.Namespace, peers: dict[str, Path]) -> list[str]:
    """The modes to run, in interleaving order; exits when a requested peer is missing."""
    if args.modes:
        wanted = []
        for item in args.modes:
            for name in filter(None, item.split(",")):
                if name.endswith("-remote"):
                    wanted += REMOTE_MODES if name == "rcache-remote" else \
                        peer_remote.modes(name[:-7]) or [name]
                else:
                    wanted += [f"{name}-cold", f"{name}-warm"] if name in TOOL_ORDER[1:] else [name]
    else:
        wanted = ["none", "rcache-cold", "rcache-warm",
                  *(DEFAULT_REMOTE_MODES if args.remote else ())]
        for peer in peers:
            wanted += [f"{peer}-cold", f"{peer}-warm",
                       *peer_remote.default_modes(peer, args.remote)]
    if any(m in second_copy.MODES for m in wanted):
        wanted.append(second_copy.COMPARED_WITH)  # each second-copy build is compared with it
    order = []
    for t in TOOL_ORDER:
        order += [t] if t == "none" else [f"{t}-cold", f"{t}-warm"]
        order += [*second_copy.LOCAL, *REMOTE_MODES] if t == "rcache" else peer_remote.modes(t)
    for mode in wanted:
        tool = mode.split("-")[0]
        if mode not in order:
            sys.exit(f"e2e: unknown mode {mode!r}")
        if (mode in REMOTE_MODES or mode in peer_remote.MODES) and not args.remote:
            sys.exit(f"e2e: {mode} needs a remote: pass --remote redis or --remote s3")
        if peer_remote.unsupported(mode, args.remote):
            sys.exit(f"e2e: {peer_remote.unsupported(mode, args.remote)}")
        if tool in tools.PEERS and tool not in peers:
            sys.exit(f"e2e: {tool} not found on PATH or in {args.peer_root}/bin "
                     f"(use --install-peers)")
    return [m for m in order if m in wanted]


LAUNCHER = "rcache-launcher"
"""The build-script launcher binary, which rcache expects beside itself."""


def build_rcache(explicit: Path | None) -> Path:
    """The rcache binary: --rcache as given, or a fresh `cargo build --release` of the repo."""
    if explicit is not None:
        if not explicit.is_file():
            sys.exit(f"e2e: --rcache {explicit} does not exist")
        return explicit.resolve()
    print("building rcache (cargo build --release) ...", flush=True)
    proc = subprocess.run(["cargo", "build", "--release", "--bin", "rcache", "--bin", LAUNCHER,
                           "--message-format=json-render-diagnostics"],
                          cwd=workloads.REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"e2e: rcache does not build:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        msg = json.loads(line) if line.startswith("{") else {}
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg.get("target", {}).get("name") == "rcache":
            return Path(msg["executable"])
    sys.exit("e2e: cargo built no rcache executable")



def wait_for_prefetchers(store: Path, limit_s: float = 30.0) -> float:
    """Waits until the prefetchers the build started have counted and left (their markers in
    `v2/prefetch/` are gone: a prefetcher counts once cargo has exited), so that the stats read
    next hold their figures; returns the seconds waited (at most `limit_s`)."""
    start = time.monotonic()
    markers = store / "v2" / "prefetch"
    while time.monotonic() - start < limit_s:
        if not markers.is_dir() or not any(markers.iterdir()):
            break
        time.sleep(0.05)
    return time.monotonic() - start

class Bench:
    """One harness run: a workload, its modes and tools, and the records of every build."""

    def __init__(self, args: argparse.Namespace, workload: workloads.Workload,
                 tool_set: dict[str, tools.Tool], modes: list[str], stamp: str):
        """Lay out the scratch dirs and the environment shared by every build."""
        self.args, self.workload, self.tools, self.modes = args, workload, tool_set, modes
        root = args.work_dir
        self.target_dir = root / "target" / workload.name
        self.cache_root = root / "caches" / workload.name
        self.log_dir = root / "logs" / f"{workload.name}-{stamp}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = {
            **tools.clean_env(dict(os.environ)),
            "CARGO_INCREMENTAL": "0",
            "LIBZ_SYS_STATIC": "1",
            "CARGO_TARGET_DIR": str(self.target_dir),
            "CARGO_TERM_COLOR": "never",
            "CARGO_TERM_PROGRESS_WHEN": "never",
            **workload.env,
            **dict(item.split("=", 1) for item in args.env),
            measure.MARKER_VAR: f"{os.getpid()}-{stamp}",
        }
        self.runs: list[dict] = []
        self.server: remote.Server | None = None  # set by main() when a remote mode runs
        self.link: link.Link | None = None  # the way to the server, idem
        self.copies: dict[str, second_copy.Copy] = {}  # set by prepare_copies()
        self.label_width = max([13, *(len(m) for m in modes)])

    def prepare_copies(self) -> None:
        """Lay out the tree (and CARGO_HOME) of each second-copy mode, after the fetch; untimed."""
        for mode in self.modes:
            if mode in second_copy.MODES:
                start = time.monotonic()
                copy = self.copies[mode] = second_copy.prepare(
                    mode, self.args.work_dir, self.workload.name, self.workload.src, self.base_env)
                home = f", CARGO_HOME {copy.cargo_home} fetched" if copy.cargo_home else ""
                print(f"{mode}: copied to {copy.src}{home} in {time.monotonic() - start:.1f} s "
                      f"(not timed)", flush=True)

    def where(self, mode: str) -> tuple[Path, Path, dict[str, str]]:
        """Where a mode builds: its source dir, its target dir, and what that changes in the env."""
        copy = self.copies.get(mode)
        if copy is None:
            return self.workload.src, self.target_dir, {}
        return copy.src, copy.target_dir, copy.env()

    def cargo_build_cmd(self) -> list[str]:
        """The timed command."""
        cmd = ["cargo", "build", "--offline", "--locked", "--timings"]
        if self.args.release:
            cmd.append("--release")
        if self.args.jobs:
            cmd += ["-j", str(self.args.jobs)]
        return cmd

    def run_all(self) -> None:
        """Every repetition of every mode, interleaved."""
        for rep in range(1, self.args.reps + 1):
            filled_by: dict[str, str] = {}  # cache family -> the cold mode that filled it
            for mode in self.modes:
                family = report.mode_family(mode)
                if report.mode_class(mode) == "warm" and family not in filled_by:
                    self.run_one(rep, f"{family}-cold", primer=True)  # fills the cache, untimed
                    filled_by[family] = f"{family}-cold (primer)"
                warm = report.mode_class(mode) == "warm"
                self.run_one(rep, mode, filled_by=filled_by.get(family) if warm else None)
                if not warm and mode != "none":
                    filled_by[family] = mode

    def run_one(self, rep: int, mode: str, primer: bool = False, filled_by: str | None = None) -> dict:
        """Clean, prepare the tool, run and measure one build, read stats and timings; record it.

        A remote mode has a local store of its own (`caches/<workload>/rcache-remote`; the remote
        second copy `caches/<workload>/<mode>`, see second_copy.store_dir), always emptied first;
        a cold one empties the remote too, and `rcache remote flush` follows its build, timed
        apart.
        """
        tool_name = mode.split("-")[0]
        tool = self.tools[tool_name]
        cls = report.mode_class(mode)
        is_remote = mode in REMOTE_MODES or mode in peer_remote.MODES
        cache_dir = second_copy.store_dir(mode, self.cache_root)
        src, target_dir, where_env = self.where(mode)
        env = {**self.base_env, **where_env, **tool.env(cache_dir)}
        if mode in REMOTE_MODES:
            env.update(self.server.env(), RCACHE_REMOTE_UPLOAD=UPLOAD.get(mode, "background"))
        env.update(peer_remote.env(mode, self.server) if is_remote else {})
        stem = f"rep{rep}-{mode}" + ("-primer" if primer else "")
        events_path = self.log_dir / f"{stem}.events.jsonl"
        if tool_name == "rcache":
            env["RCACHE_EVENTS"] = str(events_path)
            for item in self.args.rcache_env:
                key, value = item.split("=", 1)
                env[key] = value.replace("{rcache}", str(tool.binary))
        record = {"rep": rep, "mode": mode, "tool": tool_name, "class": cls, "primer": primer,
                  "started": None, "exit_code": None, "error": None,
                  "log": str(self.log_dir / f"{stem}.log")}
        if is_remote:
            record.update(remote_upload=env.get("RCACHE_REMOTE_UPLOAD"), filled_by=filled_by)
        try:
            subprocess.run(["cargo", "clean"], cwd=src, env={**self.base_env, **where_env},
                           capture_output=True, check=False)
            shutil.rmtree(target_dir, ignore_errors=True)
            if cls == "cold" or is_remote:
                tool.reset(env, cache_dir)
            if cls == "cold" and is_remote:
                peer_remote.scope(self.server, mode).empty()
            if mode == second_copy.REMOTE:
                record["remote_before"] = self.server.usage()  # what the first copy's build left
            cache_dir.parent.mkdir(parents=True, exist_ok=True)
            tool.start(env, warm=(cls == "warm" and not is_remote))
            server_before = (self.server.cpu(), self.link.cpu(),
                             peer_remote.wire(self.server, self.link)) if is_remote else None
            started = record["started"] = time.time()
            result = measure.run_build(self.cargo_build_cmd(), src, env, Path(record["log"]))
            record.update(exit_code=result.exit_code, wall_s=result.wall_s, user_s=result.user_s,
                          sys_s=result.sys_s, daemon_user_s=result.daemon_user_s,
                          daemon_sys_s=result.daemon_sys_s, foreign_cpu_s=result.foreign_cpu_s)
            if is_remote:
                self._remote_after_build(record, tool, env, server_before, cache_dir)
            record["stats"] = tool.stats(env)
            record["stats_summary"] = tool.summarize(record["stats"], env, started)
        except Exception as exc:  # a tool that fails to start is a failed mode, not a crash
            record["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            tool.stop(env)
        events = self._add_units(record, tool_name == "rcache", events_path, target_dir)
        if mode in self.copies:
            second_copy.annotate(record, self.runs, self.copies[mode], self.workload.src,
                                 self.target_dir, events, cache_dir)
        self.runs.append(record)
        self._print_progress(record)
        return record

    def _remote_after_build(self, record: dict, tool: tools.Tool, env: dict[str, str],
                            before: tuple, cache_dir: Path) -> None:
        """The CPU of the server and of the link's delay process during the build (taken out of
        `others`), the remote counters as the build left them, then `rcache remote flush`, timed,
        what the remote holds after it and the bytes on the wire (a peer: peer_remote.py)."""
        server_user, server_sys = (a - b for a, b in zip(self.server.cpu(), before[0]))
        link_cpu = self.link.cpu() - before[1]
        record.update(server_user_s=server_user, server_sys_s=server_sys, link_cpu_s=link_cpu)
        if record["foreign_cpu_s"] is not None:
            record["foreign_cpu_s"] = max(0.0, record["foreign_cpu_s"] - server_user - server_sys
                                          - link_cpu)
        if tool.name != "rcache":
            return peer_remote.after_build(record, tool, env, self.server, self.link, before[2],
                                           cache_dir)
        record["remote_at_build_end"] = (tool.stats(env) or {}).get("remote")
        start = time.monotonic()
        try:
            proc = subprocess.run([str(tool.binary), "remote", "flush"], env=env, capture_output=True,
                                  text=True, timeout=900, stdin=subprocess.DEVNULL)
            record.update(flush_exit=proc.returncode,
                          flush_output=(proc.stdout + proc.stderr).strip()[-2000:])
        except subprocess.TimeoutExpired:
            record.update(flush_exit=None, flush_output="timed out after 900 s")
        record["flush_s"] = time.monotonic() - start
        record["prefetch_wait_s"] = wait_for_prefetchers(Path(env["RCACHE_DIR"]))
        record["remote_usage"] = self.server.usage()
        record["wire"] = peer_remote.wire(self.server, self.link, before[2])

    def _add_units(self, record: dict, is_rcache: bool, events_path: Path,
                   target_dir: Path) -> list[dict] | None:
        """Attach the timings report's slowest units (and rcache's events) to a record; return
        the events (None without rcache)."""
        units = measure.units_from_timings(measure.find_timings(target_dir))
        events = measure.read_events(events_path) if is_rcache else None
        record["units"] = len(units)
        per_kind: dict[str, float] = {}
        for u in units:
            per_kind[u["kind"]] = per_kind.get(u["kind"], 0.0) + (u["duration_s"] or 0.0)
        record["unit_seconds_by_kind"] = {k: round(v, 2) for k, v in per_kind.items()}
        record["slowest_units"] = measure.slowest_units(units, events, self.args.top,
                                                        record["started"])
        if events is not None:
            record["event_outcomes"] = measure.outcome_counts(events)
            record["slowest_events"] = measure.slowest_events(events, self.args.top)
        return events

    def _print_progress(self, r: dict) -> None:
        """One line per build on the console."""
        label = f"[rep {r['rep']}/{self.args.reps}] {r['mode']:<{self.label_width}}"
        label += " (primer)" if r["primer"] else ""
        if r["exit_code"] is None:
            print(f"{label} FAILED: {r['error']}", flush=True)
            return
        s = r.get("stats_summary") or {}
        hits = f"  hits {s.get('hits')}/{s.get('hits', 0) + s.get('misses', 0)}" if s else ""
        print(f"{label} {r['wall_s']:7.2f} s wall  user {r['user_s']:7.2f} s  sys {r['sys_s']:6.2f} s"
              f"{hits}  exit {r['exit_code']}", flush=True)
        if "flush_s" in r:
            rs = s.get("remote") or {}
            print(f"{' ' * len(label)} remote hits {rs.get('hits')} misses {rs.get('misses')} "
                  f"errors {rs.get('errors')} skipped {rs.get('skipped')} uploads {rs.get('uploads')} "
                  f"up {report.mib(rs.get('bytes_up'))} down {report.mib(rs.get('bytes_down'))}; "
                  f"flush {r['flush_s']:.2f} s exit {r['flush_exit']}; stored "
                  f"{(r.get('remote_usage') or {}).get('objects')} objects", flush=True)
            prefetch = rs.get("prefetch") or {}
            if prefetch:
                print(f"{' ' * len(label)} prefetch: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(prefetch.items())), flush=True)
            if r["flush_exit"] != 0:
                said = " / ".join(line for line in r["flush_output"].splitlines() if line.strip())
                print(f"{' ' * len(label)} flush: {said[-500:]}", flush=True)
        if second_copy.progress_line(r):
            print(f"{' ' * len(label)} {second_copy.progress_line(r)}", flush=True)
        if r["exit_code"] != 0:
            tail = Path(r["log"]).read_text(errors="replace").splitlines()[-15:]
            print("\n".join("    " + line for line in tail), flush=True)


def quick_failures(runs: list[dict], json_path: Path) -> list[str]:
    """Why a --quick run fails: a build that did not pass, no JSON, or no rcache-warm hits."""
    failures = [f"{r['mode']} rep {r['rep']}: exit {r['exit_code']} {r['error'] or ''}".strip()
                for r in runs if r["exit_code"] != 0]
    if not json_path.is_file():
        failures.append(f"JSON not written to {json_path}")
    warm = [r for r in runs if r["mode"] == "rcache-warm" and not r["primer"]]
    if not warm:
        failures.append("rcache-warm did not run")
    for r in warm:
        summary = r.get("stats_summary") or {}
        if (summary.get("hits") or 0) <= 0:
            failures.append(f"rcache-warm rep {r['rep']}: no hits in `rcache stats --json`")
        if ((summary.get("build_scripts") or {}).get("hits") or 0) <= 0:
            failures.append(f"rcache-warm rep {r['rep']}: no build-script run restored")
    return failures


def remote_failures(runs: list[dict]) -> list[str]:
    """Faults of the remote modes: a flush that failed or left uploads queued, a remote error,
    and a remote-warm build that got no hit from the remote."""
    failures = []
    for r in runs:
        if "flush_s" not in r or r["exit_code"] != 0:
            continue
        name = f"{r['mode']} rep {r['rep']}" + (" (primer)" if r["primer"] else "")
        rs = (r.get("stats_summary") or {}).get("remote")
        if r["flush_exit"] != 0:
            said = " / ".join(line for line in r["flush_output"].splitlines() if line.strip())
            failures.append(f"{name}: `rcache remote flush` exited {r['flush_exit']}: {said[-300:]}")
        if rs is None:
            failures.append(f"{name}: `rcache stats --json` has no `remote` object")
            continue
        if rs.get("errors"):
            failures.append(f"{name}: {rs['errors']} remote errors {rs.get('error_reasons')}")
        if rs.get("pending_uploads"):
            failures.append(f"{name}: {rs['pending_uploads']} uploads still pending after the flush")
        if r["class"] == "warm" and not rs.get("hits"):
            failures.append(f"{name}: no hit from the remote")
    return failures


def _raise_interrupt(signum: int, frame) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that it unwinds like Ctrl-C."""
    raise KeyboardInterrupt


def print_tables(runs: list[dict], modes: list[str], top: int) -> None:
    """The summary table, then the slowest units of the last repetition of each warm mode."""
    print()
    rows = report.summarize(runs, modes)
    print(report.table(rows))
    if any(r.get("remote") is not None for r in rows):
        print("\nremote (medians; rcache stats' `remote` object after the flush):")
        print(report.remote_table(rows))
    peer_remote.print_table(runs, modes)
    copy_rows = second_copy.summarize(runs, modes)
    if copy_rows:
        print("\nsecond copy at another path (medians; x rcache-warm: median over the reps of "
              "wall / the same rep's rcache-warm wall; units from RCACHE_EVENTS):")
        print(second_copy.table(copy_rows))
    script_lines = report.build_script_lines(runs, modes)
    if script_lines:
        print("\nbuild-script runs (rcache, last repetition of each mode):")
        print("\n".join(script_lines))
    c_lines = report.c_compile_lines(runs, modes)
    if c_lines:
        print("\nC/C++ compiles through rcache (last repetition of each mode):")
        print("\n".join(c_lines))
    for mode in modes:
        last = [r for r in runs if r["mode"] == mode and not r["primer"] and r.get("slowest_units")]
        if report.mode_class(mode) == "warm" and last and top > 0:
            print(f"\nslowest {top} units of {mode} (rep {last[-1]['rep']}):")
            print(report.slowest_table(last[-1], top))


def main(argv: list[str]) -> int:
    """Run the harness; the exit code says whether every build passed (and, with --quick, hit)."""
    args = parse_args(argv)
    if args.show:
        record = json.loads(args.show.read_text())
        print(f"{record['workload']['name']}, {record['date']}, {record['machine']['cores']} cores, "
              f"{record['machine']['memory_gib']} GiB, reps {record['settings']['reps']}")
        if record["settings"].get("link"):
            print(link.describe(record["settings"]["link"]))
        print_tables(record["runs"], record["settings"]["modes"], args.top)
        return 0
    if args.install_peers:
        failed = tools.install_peers(args.peer_root)
        if failed:
            print(f"e2e: could not install {', '.join(failed)}", file=sys.stderr)
        if args.workload is None and args.path is None:
            return 1 if failed else 0
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        workload = workloads.resolve(args.workload, args.path, args.work_dir)
    except workloads.WorkloadError as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 2
    peers = {p: b for p in tools.PEERS if (b := tools.find_peer(p, args.peer_root))}
    modes = select_modes(args, peers)
    tool_set: dict[str, tools.Tool] = {"none": tools.Tool()}
    if any(m.startswith("rcache") for m in modes):
        # A private copy: the repo's binary may be rebuilt while a long run is going on. The
        # build-script launcher, installed beside rcache, comes with it.
        snapshot = args.work_dir / "bin" / workload.name / "rcache"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        binary = build_rcache(args.rcache)
        shutil.copy2(binary, snapshot)
        launcher = binary.with_name(LAUNCHER)
        if not launcher.is_file():
            print(f"e2e: {launcher} is missing: build-script runs will not be cached", file=sys.stderr)
        else:
            shutil.copy2(launcher, snapshot.with_name(LAUNCHER))
        tool_set["rcache"] = tools.Rcache(snapshot)
    for name, binary in peers.items():
        tool_set[name] = tools.TOOLS[name](binary)
    if "sccache" in tool_set:
        tool_set["sccache"].port = tools.sccache_port(workload.name)

    bench = Bench(args, workload, tool_set, modes, stamp)
    print(f"workload {workload.name} ({workload.src}), modes {' '.join(modes)}, reps {args.reps}",
          flush=True)
    fetch_start = time.monotonic()
    workloads.fetch(workload, bench.base_env)
    print(f"fetched dependencies in {time.monotonic() - fetch_start:.1f} s (not timed)", flush=True)
    try:
        bench.prepare_copies()
    except (OSError, RuntimeError) as exc:
        print(f"e2e: second copy: {exc}", file=sys.stderr)
        return 2

    # SIGTERM unwinds like Ctrl-C: the build is killed, daemons stopped, what ran is written.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    remote_info = None
    try:
        if any(m in REMOTE_MODES or m in peer_remote.MODES for m in modes):
            server_env = {k: v for k, v in bench.base_env.items() if k != measure.MARKER_VAR}
            bench.link = link.Link(args.link, bench.log_dir)
            try:
                bench.link.open()
                bench.link.measure()
                print(bench.link.summary(), flush=True)
                bench.server = remote.start(args.remote, bench.log_dir, server_env,
                                            prefix=f"{workload.name}-{stamp}", link=bench.link)
            except (link.LinkError, remote.RemoteError) as exc:
                print(f"e2e: --remote {args.remote} --link {args.link}: {exc}", file=sys.stderr)
                return 2
            remote_info = {"backend": args.remote, "server": bench.server.version(),
                           "env": bench.server.env(), "log": str(bench.server.log)}
            print(f"remote: {remote_info['server']} on {bench.server.host}:{bench.server.port} "
                  f"({remote_info['env']['RCACHE_REMOTE']})", flush=True)
        bench.run_all()
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not lose the record
        print("e2e: interrupted; writing what ran", file=sys.stderr)
    finally:
        if bench.server is not None:
            bench.server.stop()
        if bench.link is not None:
            bench.link.close()  # after the server, which runs in its namespace
    rows = report.summarize(bench.runs, modes)
    json_path = args.json or RESULTS_DIR / f"{workload.name}-{stamp}.json"
    record = {
        "harness": "benches/harness/e2e.py", "format": 1, "date": stamp,
        "workload": {"name": workload.name, "origin": str(workload.origin)},
        "machine": report.machine_info(),
        "settings": {"reps": args.reps, "modes": modes, "profile": "release" if args.release else "dev",
                     "jobs": args.jobs, "command": bench.cargo_build_cmd(),
                     "env": {k: bench.base_env[k] for k in
                             ("CARGO_INCREMENTAL", "LIBZ_SYS_STATIC", *workload.env,
                              *(item.split("=", 1)[0] for item in args.env))},
                     "rcache_env": args.rcache_env,
                     "remote": remote_info, "link": bench.link.info() if bench.link else None,
                     "rustflags": os.environ.get("RUSTFLAGS")},
        "tools": {name: {"path": str(t.binary) if t.binary else None, "version": t.version()}
                  for name, t in tool_set.items()},
        "repo": report.repo_state(workloads.REPO_ROOT),
        "interrupted": interrupted,
        "summary": rows,
        "second_copy": second_copy.summarize(bench.runs, modes) or None,
        "runs": bench.runs,
    }
    report.write_json(json_path, record)
    print_tables(bench.runs, modes, args.top)
    if bench.link is not None and bench.link.shaped:
        print(f"\n{bench.link.summary()}")
    print(f"\nJSON: {json_path}\nlogs: {bench.log_dir}")

    failures = quick_failures(bench.runs, json_path) if args.quick else \
        [f"{r['mode']} rep {r['rep']} failed" for r in bench.runs if r["exit_code"] != 0]
    failures += remote_failures(bench.runs) + peer_remote.failures(bench.runs)
    failures += second_copy.failures(bench.runs)
    if interrupted:
        failures.append("interrupted before every build ran")
    for failure in failures:
        print(f"e2e: FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
