"""Measuring one build: wall, user and sys time, and where the time went per unit.

User and sys come from `os.wait4` on the cargo process, which covers cargo and every process it
waited for (rustc, the wrapper, build scripts, the C compilers they run). A peer's daemon is not
cargo's child: its rustc children are counted in its own rusage. So the CPU time of every live
process carrying this harness's marker variable is read from /proc before and after the build,
and the difference is reported apart (`daemon_user_s`, `daemon_sys_s`) and added to the totals.

Per unit: cargo's `--timings` report (the `UNIT_DATA` array in its HTML; stable cargo has no
`--timings=json`), and for rcache its `RCACHE_EVENTS` log, one JSON line per invocation.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MARKER_VAR = "RCACHE_BENCH_MARKER"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class BuildResult:
    """What one timed cargo build cost."""

    exit_code: int
    wall_s: float
    user_s: float  # cargo and its waited-for descendants, plus daemons
    sys_s: float
    daemon_user_s: float = 0.0
    daemon_sys_s: float = 0.0
    daemons: list[int] = field(default_factory=list)
    foreign_cpu_s: float | None = None  # CPU the rest of the machine used meanwhile: noise


def _busy_cpu() -> float | None:
    """Seconds of CPU the whole machine has been busy since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _proc_cpu(pid: int) -> tuple[float, float] | None:
    """(user, sys) seconds of a live process including its reaped children, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + cutime) / _TICK, (stime + cstime) / _TICK


def daemon_cpu(marker: str) -> dict[int, tuple[float, float]]:
    """CPU time of every live process (other than this one) whose environment has the marker."""
    needle = b"\0" + f"{MARKER_VAR}={marker}".encode() + b"\0"
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in b"\0" + environ + b"\0":
            cpu = _proc_cpu(int(entry))
            if cpu is not None:
                found[int(entry)] = cpu
    return found


def run_build(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> BuildResult:
    """Run one cargo build with its output in `log`, and measure it."""
    marker = env[MARKER_VAR]
    before = daemon_cpu(marker)
    busy_before = _busy_cpu()
    with open(log, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: take the whole build down with us
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    busy_after = _busy_cpu()
    after = daemon_cpu(marker)
    d_user = d_sys = 0.0
    for pid, (user, sys_) in after.items():
        u0, s0 = before.get(pid, (0.0, 0.0))
        d_user += user - u0
        d_sys += sys_ - s0
    user, sys_ = usage.ru_utime + d_user, usage.ru_stime + d_sys
    foreign = None
    if busy_before is not None and busy_after is not None:
        foreign = max(0.0, busy_after - busy_before - user - sys_)
    return BuildResult(proc.returncode, wall, user, sys_, d_user, d_sys, sorted(after), foreign)


def find_timings(target_dir: Path) -> Path | None:
    """The newest `cargo-timing-*.html` that cargo wrote under the target dir."""
    reports = list(target_dir.glob("**/cargo-timings/cargo-timing-*.html"))
    return max(reports, key=lambda p: p.stat().st_mtime) if reports else None


def parse_unit_data(html: str) -> list[dict]:
    """The `UNIT_DATA` array of a cargo --timings HTML report, as cargo wrote it."""
    anchor = html.find("UNIT_DATA")
    if anchor < 0:
        return []
    start = html.find("[", anchor)
    units, _ = json.JSONDecoder().raw_decode(html, start)
    return units


def unit_kind(unit: dict) -> str:
    """A short name for what a timing unit did: lib, build-script, build-script-run, bin ..."""
    target = (unit.get("target") or "").strip()
    if unit.get("mode") == "run-custom-build":
        return "build-script-run"
    if target.startswith("build-script"):
        return "build-script"
    if not target:
        return "lib"
    quoted = re.search(r'"([^"]+)"$', target)  # cargo writes ` demo_bin "bin"`
    return quoted.group(1) if quoted else target.split()[0]


def units_from_timings(path: Path | None) -> list[dict]:
    """Every unit of a build, from its timings report: name, version, kind, start, duration."""
    if path is None:
        return []
    units = []
    for u in parse_unit_data(path.read_text(errors="replace")):
        units.append({"name": u.get("name"), "version": u.get("version"), "kind": unit_kind(u),
                      "start_s": u.get("start"), "duration_s": u.get("duration")})
    return units


def read_events(path: Path) -> list[dict]:
    """rcache's RCACHE_EVENTS log: one JSON object per line; unreadable lines are skipped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _is_script(event: dict) -> bool:
    """Whether an rcache event is the compile of a build script."""
    return str(event.get("crate") or "").startswith("build_script")


def _is_run(event: dict) -> bool:
    """Whether an rcache event is a build-script run (not a rustc invocation)."""
    return event.get("kind") == "build_script_run"


def _closest(candidates: list[dict], unit: dict, build_start: float | None) -> dict | None:
    """Among several events, the one closest in time to the unit's start or end."""
    if len(candidates) > 1 and build_start is not None and unit.get("start_s") is not None:
        begin_ms = (build_start + unit["start_s"]) * 1000
        end_ms = begin_ms + (unit.get("duration_s") or 0) * 1000

        def distance(e: dict) -> float:
            """How far the event's time is from the unit's start or end, in ms."""
            ts = e.get("ts_ms") or 0
            return min(abs(ts - begin_ms), abs(ts - end_ms))

        return min(candidates, key=distance)
    return candidates[0] if candidates else None


def _run_event_for(unit: dict, events: list[dict], build_start: float | None) -> dict | None:
    """The build-script run event of a cargo `build-script-run` unit: same package name."""
    runs = [e for e in events if _is_run(e) and e.get("crate") == unit["name"]]
    return _closest(runs, unit, build_start)


def _event_for(unit: dict, events: list[dict], build_start: float | None) -> dict | None:
    """The rcache event that belongs to a cargo unit.

    Cargo runs rustc for a registry crate in the crate's source dir (`<name>-<version>`), so the
    event's cwd names the package; a build script compiles as crate `build_script_*`. For a
    workspace member the cwd is the workspace root, so the crate name has to do, and among several
    candidates (every member's build script is `build_script_build`) the one closest in time to
    the unit, from the build's start (epoch seconds) and the unit's start and duration.
    """
    want_script = unit["kind"] == "build-script"
    pool = [e for e in events if e.get("reason") != "probe" and not _is_run(e)
            and _is_script(e) == want_script]
    dir_name = f"{unit['name']}-{unit['version']}"
    candidates = [e for e in pool if os.path.basename(e.get("cwd") or "") == dir_name]
    if not candidates:
        local = [e for e in pool if "/registry/src/" not in (e.get("cwd") or "")]
        crate = (unit["name"] or "").replace("-", "_")
        candidates = [e for e in local if want_script or e.get("crate") == crate] or local
    return _closest(candidates, unit, build_start)


def slowest_units(units: list[dict], events: list[dict] | None, n: int = 10,
                  build_start: float | None = None) -> list[dict]:
    """The n longest units, each with rcache's outcome and reason when there is an events log.

    A build-script run unit gets the event of its run (rcache caches runs through its launcher);
    every other unit the event of its rustc invocation.
    """
    top = sorted(units, key=lambda u: u.get("duration_s") or 0, reverse=True)[:n]
    out = []
    for unit in top:
        row = dict(unit)
        if events is not None:
            if unit["kind"] == "build-script-run":
                event = _run_event_for(unit, events, build_start)
            else:
                event = _event_for(unit, events, build_start)
            row.update(outcome=event.get("outcome") if event else None,
                       reason=event.get("reason") if event else None,
                       wrapper_ms=event.get("duration_ms") if event else None)
        out.append(row)
    return out


def slowest_events(events: list[dict], n: int = 10) -> list[dict]:
    """The n longest rcache invocations, straight from its events log."""
    top = sorted(events, key=lambda e: e.get("duration_ms") or 0, reverse=True)[:n]
    return [{"crate": e.get("crate"), "crate_types": e.get("crate_types"),
             "outcome": e.get("outcome"), "reason": e.get("reason"),
             "duration_ms": e.get("duration_ms"), "cwd": e.get("cwd")} for e in top]


def outcome_counts(events: list[dict]) -> dict[str, int]:
    """How many invocations ended in each outcome (hit, miss, passthrough, error); build-script
    runs apart, as `build_script_run.<outcome>`."""
    counts: dict[str, int] = {}
    for e in events:
        key = str(e.get("outcome"))
        if _is_run(e):
            key = f"build_script_run.{key}"
        counts[key] = counts.get(key, 0) + 1
    return counts
