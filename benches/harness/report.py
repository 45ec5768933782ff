"""Summaries of a harness run: the per-mode table, the slowest units, and the JSON record.

The table is Markdown, so it can be pasted into benches/README.md as it is printed.
- wall, user, sys: medians over the repetitions (user and sys include a peer daemon's CPU);
- x none: median wall / median wall of `none`;
- x best peer: median wall / the best (lowest) median wall of a peer in the same class, cold
  against cold and warm against warm, a remote mode against the peers' remote modes, a local one
  against their local ones, naming that peer;
- hit rate: hits / (hits + misses) from the tool's own stats, median over the repetitions;
- others: the CPU the rest of the machine used during the build, in cores (other users' load,
  i.e. noise), median over the repetitions.

The remote modes get a second table (`remote_table`): the flush after the build, and the medians of
the `remote` object of `rcache stats --json` (see README.md, "Remote storage").
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

from tools import PEERS


SECOND_COPY = ("rcache-second-copy", "rcache-second-copy-home")
"""Warm builds of another copy of the workload from the `rcache` store (see second_copy.py)."""
REMOTE_SECOND_COPY = "rcache-remote-second-copy-home"
"""A warm build of another copy from the remote the first copy filled, through an empty local
store (see second_copy.py)."""


def mode_class(mode: str) -> str:
    """`cold`, `warm`, or `none`: `rcache-remote-cold-sync` is a cold mode, the second-copy
    modes are warm."""
    if mode in SECOND_COPY or mode == REMOTE_SECOND_COPY:
        return "warm"
    parts = mode.split("-")
    return "cold" if "cold" in parts else "warm" if "warm" in parts else "none"


def mode_family(mode: str) -> str:
    """What a mode's cold and warm runs share (one cache): `rcache`, `rcache-remote`, `kache`;
    the second-copy modes read the `rcache` store, the remote one the `rcache-remote` remote."""
    if mode in SECOND_COPY:
        return "rcache"
    if mode == REMOTE_SECOND_COPY:
        return "rcache-remote"
    return "-".join(p for p in mode.split("-") if p not in ("cold", "warm", "sync"))


def machine_info() -> dict:
    """Cores, memory, CPU model and kernel of this machine, and the Rust toolchain."""
    mem_kib = 0
    model = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "cpu": model, "kernel": platform.release(), "rustc": rustc}


def repo_state(root: Path) -> dict:
    """The repo's commit and whether the work tree differs from it: which rcache was measured."""
    def git(*argv: str) -> str:
        """Run git in the repo; empty output when git or the repo is missing."""
        proc = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"))}


def _median(values: list) -> float | None:
    """Median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _peer_class(mode: str) -> tuple[str, bool]:
    """What `x best peer` compares a mode with: the peers' modes of its class, over a remote
    (`sccache-remote-warm` for `rcache-remote-warm`) or not."""
    return mode_class(mode), "remote" in mode.split("-")


def summarize(runs: list[dict], modes: list[str]) -> list[dict]:
    """One row per mode with the medians and ratios described in the module docstring."""
    rows = []
    for mode in modes:
        timed = [r for r in runs if r["mode"] == mode and not r["primer"]]
        ok = [r for r in timed if r["exit_code"] == 0]
        rows.append({
            "mode": mode,
            "reps": len(timed),
            "ok": len(ok),
            "wall_s": _median([r["wall_s"] for r in ok]),
            "user_s": _median([r["user_s"] for r in ok]),
            "sys_s": _median([r["sys_s"] for r in ok]),
            "hit_rate": _median([(r.get("stats_summary") or {}).get("hit_rate") for r in ok]),
            "others_cores": _median([r["foreign_cpu_s"] / r["wall_s"] for r in ok
                                     if r.get("foreign_cpu_s") is not None and r["wall_s"]]),
        })
        if any("flush_s" in r for r in ok):
            rows[-1]["remote"] = _remote_medians(ok)
    by_mode = {row["mode"]: row for row in rows}
    base = (by_mode.get("none") or {}).get("wall_s")
    best: dict[tuple[str, bool], tuple[float, str]] = {}
    for row in rows:
        tool = row["mode"].split("-")[0]
        if tool in PEERS and row["wall_s"] is not None:
            cls = _peer_class(row["mode"])
            if cls not in best or row["wall_s"] < best[cls][0]:
                best[cls] = (row["wall_s"], row["mode"])
    for row in rows:
        wall = row["wall_s"]
        row["ratio_none"] = wall / base if wall is not None and base else None
        peer = best.get(_peer_class(row["mode"]))
        row["best_peer"] = peer[1] if peer and row["mode"] != "none" else None
        row["ratio_best_peer"] = wall / peer[0] if peer and wall is not None and row["best_peer"] else None
    return rows


REMOTE_COUNTERS = ("hits", "misses", "errors", "skipped", "rejected", "bytes_down", "bytes_up",
                   "uploads", "pending_uploads")
PREFETCH_COUNTERS = ("fetched", "used", "unused")


def _remote_medians(ok: list[dict]) -> dict:
    """Medians over the builds of a remote mode: flush time, build + flush, the remote counters
    (after the flush, and uploads as the build left them), what the server holds, its CPU."""
    def med(get) -> float | None:
        """Median of get(run) over the runs, None values left out."""
        return _median([get(r) for r in ok])

    out = {"flush_s": med(lambda r: r.get("flush_s")),
           "build_flush_s": med(lambda r: r["wall_s"] + r["flush_s"] if "flush_s" in r else None),
           "uploads_at_build_end": med(lambda r: (r.get("remote_at_build_end") or {}).get("uploads")),
           "stored_objects": med(lambda r: (r.get("remote_usage") or {}).get("objects")),
           "stored_bytes": med(lambda r: (r.get("remote_usage") or {}).get("bytes")),
           "server_cpu_s": med(lambda r: r["server_user_s"] + r["server_sys_s"]
                               if "server_user_s" in r else None)}
    for key in REMOTE_COUNTERS:
        out[key] = med(lambda r: ((r.get("stats_summary") or {}).get("remote") or {}).get(key))
    for key in PREFETCH_COUNTERS:
        out[f"prefetch_{key}"] = med(lambda r: (((r.get("stats_summary") or {}).get("remote") or {})
                                               .get("prefetch") or {}).get(key))
    return out


def mib(n: float | None) -> str:
    """Bytes as MiB, or `?`."""
    return "?" if n is None else f"{n / 1048576:.1f} MiB"


def remote_table(rows: list[dict]) -> str:
    """The remote modes as a Markdown table."""
    lines = ["| mode | wall | x none | hit rate | flush after build | build + flush | remote hits "
             "| remote misses | errors | skipped | down | up | uploads (at build end) "
             "| prefetched: used / unused | stored | server CPU | ok/reps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        x = r.get("remote")
        if x is None:
            continue
        hit = _fmt(r["hit_rate"] * 100 if r["hit_rate"] is not None else None, ".1f", " %")
        count = lambda v: _fmt(v, ".0f")  # noqa: E731
        at_end = "" if x["uploads_at_build_end"] is None else f" ({x['uploads_at_build_end']:.0f})"
        stored = "" if x["stored_objects"] is None else \
            f"{x['stored_objects']:.0f} / {mib(x['stored_bytes'])}"
        lines.append(f"| {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} | {_fmt(r['ratio_none'], '.2f')} "
                     f"| {hit} | {_fmt(x['flush_s'], '.2f', ' s')} | {_fmt(x['build_flush_s'], '.2f', ' s')} "
                     f"| {count(x['hits'])} | {count(x['misses'])} | {count(x['errors'])} "
                     f"| {count(x['skipped'])} | {'' if x['bytes_down'] is None else mib(x['bytes_down'])} "
                     f"| {'' if x['bytes_up'] is None else mib(x['bytes_up'])} "
                     f"| {count(x['uploads'])}{at_end} "
                     f"| {count(x['prefetch_used'])} / {count(x['prefetch_unused'])} | {stored} "
                     f"| {_fmt(x['server_cpu_s'], '.2f', ' s')} | {r['ok']}/{r['reps']} |")
    return "\n".join(lines)


def _fmt(value: float | None, fmt: str, unit: str = "") -> str:
    """Format a number, or an empty cell for None."""
    return "" if value is None else f"{value:{fmt}}{unit}"


def table(rows: list[dict]) -> str:
    """The summary as a Markdown table."""
    lines = ["| mode | wall | user | sys | x none | x best peer | hit rate | others | ok/reps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peer = ""
        if r["ratio_best_peer"] is not None:
            peer = f"{r['ratio_best_peer']:.2f} ({r['best_peer']})"
        hit = _fmt(r["hit_rate"] * 100 if r["hit_rate"] is not None else None, ".1f", " %")
        lines.append(f"| {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} | "
                     f"{_fmt(r['user_s'], '.2f', ' s')} | {_fmt(r['sys_s'], '.2f', ' s')} | "
                     f"{_fmt(r['ratio_none'], '.2f')} | {peer} | {hit} | "
                     f"{_fmt(r['others_cores'], '.2f')} | {r['ok']}/{r['reps']} |")
    return "\n".join(lines)


def slowest_table(run: dict, top: int = 10) -> str:
    """The slowest units of one build, as a Markdown table (with rcache's outcome if known)."""
    has_events = any("outcome" in u for u in run["slowest_units"])
    head = "| unit | kind | duration |" + (" rcache outcome | reason | wrapper |" if has_events else "")
    lines = [head, "|---|---|---:|" + ("---|---|---:|" if has_events else "")]
    for u in run["slowest_units"][:top]:
        line = f"| {u['name']} {u['version']} | {u['kind']} | {_fmt(u['duration_s'], '.2f', ' s')} |"
        if has_events:
            line += (f" {u.get('outcome') or '?'} | {u.get('reason') or ''} |"
                     f" {_fmt(u.get('wrapper_ms'), '.1f', ' ms')} |")
        lines.append(line)
    return "\n".join(lines)


def build_script_lines(runs: list[dict], modes: list[str]) -> list[str]:
    """For each rcache mode: its last build's script runs restored, run, passed through (by
    reason) and failed over, from `rcache stats --json`."""
    lines = []
    for mode in modes:
        last = [r for r in runs if r["mode"] == mode and not r["primer"]
                and ((r.get("stats_summary") or {}).get("build_scripts") or {}).get("requests")]
        if not last:
            continue
        s = last[-1]["stats_summary"]["build_scripts"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((s.get("passthrough_reasons") or {}).items()))
        line = (f"- {mode} (rep {last[-1]['rep']}): {s.get('requests')} runs: restored {s.get('hits')}, "
                f"run and recorded {s.get('misses')}, passthrough {s.get('passthrough')}"
                + (f" ({reasons})" if reasons else "") + f", errors {s.get('errors')}")
        not_stored = s.get("not_stored") or {}
        if not_stored:
            line += "; not recorded: " + ", ".join(f"{k} {v}" for k, v in sorted(not_stored.items()))
        lines.append(line)
    return lines


def c_compile_lines(runs: list[dict], modes: list[str]) -> list[str]:
    """For each rcache mode: its last build's C/C++ compiles (`languages` other than rust in
    `rcache stats --json`) and the script runs whose compilers rcache routed (zero config)."""
    lines = []
    for mode in modes:
        last = [r for r in runs if r["mode"] == mode and not r["primer"]
                and (r.get("stats_summary") or {}).get("languages")]
        if not last:
            continue
        summary = last[-1]["stats_summary"]
        parts = []
        for name, counts in sorted(summary["languages"].items()):
            if name == "rust" or not counts.get("requests"):
                continue
            parts.append(f"{name} {counts.get('requests')} (hits {counts.get('hits')}, misses "
                         f"{counts.get('misses')}, passthrough {counts.get('passthrough')}, "
                         f"errors {counts.get('errors')})")
        routed = summary.get("build_scripts_cc_routed")
        lines.append(f"- {mode} (rep {last[-1]['rep']}): " + ("; ".join(parts) or "none")
                     + (f"; script runs routed: {routed}" if routed is not None else ""))
    return lines


def write_json(path: Path, record: dict) -> None:
    """Write the run's record, creating the results dir if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
