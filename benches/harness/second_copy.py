"""The second-copy modes of e2e.py: warm builds of another copy of the workload (issue 15).

A hit that does not depend on paths serves a second checkout of the same sources, at another
path, from what the first checkout stored. These modes measure that:

- `rcache-second-copy`: the workload's tree, as the first copy has it after `cargo fetch` (same
  Cargo.lock), copied to another path of another length and depth,
  `<work>/second-copy/<name>/b/deeper/dir/<name>`, and built there with a target dir of its own
  (`<copy>/target`, where cargo puts it by default), against rcache's store of the run: the one
  `rcache-cold` filled from the first copy (or its untimed primer), which `rcache-warm` then read.
- `rcache-second-copy-home`: a third copy, `<work>/second-copy/<name>/c/<name>`, with a target
  dir of its own too and also a CARGO_HOME of its own, `<work>/second-copy/<name>/cargo-home`,
  filled before the timed builds (not timed) by `cargo fetch --locked` of the same Cargo.lock,
  with the usual CARGO_HOME's `config.toml` (or `config`) copied in and nothing else; so the
  registry crates' sources sit at another path as well. The dir is kept between runs, and the
  fetch only adds what is missing. It runs after `rcache-second-copy`, against the same store;
  what the second copy stored there is keyed on its own paths, which this copy does not share.
- `rcache-remote-second-copy-home` (with `--remote` only; "a developer pulling what CI built"):
  a fourth copy, `<work>/second-copy/<name>/remote/dev/<name>`, with its own target dir and a
  CARGO_HOME of its own, `<work>/second-copy/<name>/remote-cargo-home`, made fresh (emptied) at
  each harness run and filled like the -home mode's (untimed `cargo fetch --locked`, config
  copied); built with a fresh, empty local store of its own (`caches/<name>/<mode>/cache`,
  emptied before each build, see `store_dir`) and the remote configured, the server the other
  remote modes use, as the last rcache-remote cold mode of the repetition (or its untimed primer
  `rcache-remote-cold`) filled it from the first copy. Upload `background`, as remote-warm.

The first two are warm modes of the `rcache` store, the remote one a warm mode of the
`rcache-remote` family (report.mode_class and mode_family), so they run after `rcache-warm` and
the remote one after `rcache-remote-warm` in each repetition; e2e.py adds `rcache-warm` to the
modes when one of them is asked for, because each build is compared with it. A second-copy
build's record gets a `second_copy` object: where it ran, `rcache_dir`, `x_warm` (its wall / the
wall of `rcache-warm` in the same repetition), the modes that used the store since it was last
emptied (None for the remote one: its store is its own, empty), and from its RCACHE_EVENTS log:
`path_bound`, its units by the `path_bound` reason rcache gives a unit whose cache entry
depends on a path, `path_bound_outcomes`, the same split by outcome, and `not_path_bound`, the
rustc units without the field (probes of rustc left out), and `events_in_first_copy`, the
invocations whose cwd is inside the first copy (a miswired run: that must be 0). The remote
one's also has `remote_filled_by` (the mode whose build of the first copy filled the remote),
`remote_before` (objects and bytes on the server just before the build), `units_by_remote` and
`script_runs_by_remote` (rustc units and build-script runs by the event's `remote` answer,
`not_asked` for null), and `x_remote_warm` (its wall / the same repetition's
`rcache-remote-warm` wall, when that ran). Its remote counters (hits, bytes down, ...) are in
`stats_summary.remote` as for the other remote modes, and in e2e.py's remote table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from report import REMOTE_SECOND_COPY, SECOND_COPY, _fmt, _median, mib, mode_family

LOCAL = SECOND_COPY  # `rcache-second-copy`, `rcache-second-copy-home`: the local rcache store
REMOTE = REMOTE_SECOND_COPY  # `rcache-remote-second-copy-home`: an empty store and the remote
MODES = (*LOCAL, REMOTE)
COMPARED_WITH = "rcache-warm"  # the first copy's warm build, the denominator of x_warm
REMOTE_COMPARED_WITH = "rcache-remote-warm"  # the first copy from the remote: x_remote_warm


@dataclass
class Copy:
    """Where a second-copy mode builds: its source tree, target dir and CARGO_HOME."""

    src: Path
    target_dir: Path
    cargo_home: Path | None  # None: the usual one, as the first copy
    remote: bool = False  # an empty local store of its own, and the remote

    def env(self) -> dict[str, str]:
        """What the build's environment changes: the target dir, and CARGO_HOME if its own."""
        env = {"CARGO_TARGET_DIR": str(self.target_dir)}
        if self.cargo_home is not None:
            env["CARGO_HOME"] = str(self.cargo_home)
        return env


def usual_cargo_home() -> Path:
    """The CARGO_HOME the first copy builds with: the inherited one, or ~/.cargo."""
    return Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")


DIRS = {"rcache-second-copy": ["b", "deeper", "dir"], "rcache-second-copy-home": ["c"],
        REMOTE: ["remote", "dev"]}
"""The dirs between `<work>/second-copy/<name>` and a mode's copy: each its own depth and length."""
HOMES = {"rcache-second-copy-home": "cargo-home", REMOTE: "remote-cargo-home"}
"""The CARGO_HOME of a mode that has its own, in `<work>/second-copy/<name>`."""


def layout(mode: str, work_dir: Path, name: str, first_src: Path) -> Copy:
    """The paths of a second-copy mode; its tree's path differs from the first copy's in length
    and depth, and the remote one's from the other copies' too (a dir is added in the rare case
    that it would not)."""
    root = work_dir.absolute() / "second-copy" / name
    parts = list(DIRS[mode])
    src = root.joinpath(*parts, name)
    others = [first_src.absolute()]
    if mode == REMOTE:
        others += [layout(m, work_dir, name, first_src).src for m in LOCAL]
    while any(len(str(src)) == len(str(o)) or len(src.parts) == len(o.parts) for o in others):
        parts.append("x")
        src = root.joinpath(*parts, name)
    home = root / HOMES[mode] if mode in HOMES else None
    return Copy(src, src / "target", home, remote=mode == REMOTE)


def store_dir(mode: str, cache_root: Path) -> Path:
    """A mode's RCACHE_DIR (or peer cache dir): its family's, `<cache_root>/<family>/cache`, and
    the remote second copy's own, `<cache_root>/<mode>/cache`."""
    return cache_root / (mode if mode == REMOTE else mode_family(mode)) / "cache"


def prepare(mode: str, work_dir: Path, name: str, first_src: Path, env: dict[str, str]) -> Copy:
    """Copy the first copy's tree (after its fetch: same Cargo.lock), without build output or VCS
    data, to the mode's path; for the -home modes fill its CARGO_HOME (the remote one's emptied
    first: fresh). Raises RuntimeError."""
    copy = layout(mode, work_dir, name, first_src)
    if copy.src.exists():
        shutil.rmtree(copy.src)
    copy.src.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(first_src, copy.src, ignore=shutil.ignore_patterns("target", ".git"),
                    symlinks=True)
    if copy.remote and copy.cargo_home is not None and copy.cargo_home.exists():
        shutil.rmtree(copy.cargo_home)
    if copy.cargo_home is not None:
        copy.cargo_home.mkdir(parents=True, exist_ok=True)
        for config in ("config.toml", "config"):
            source = usual_cargo_home() / config
            if source.is_file():
                shutil.copy2(source, copy.cargo_home / config)
        cmd = ["cargo", "fetch", "--locked"]
        proc = subprocess.run(cmd, cwd=copy.src, env={**env, **copy.env()}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` with CARGO_HOME={copy.cargo_home} failed in "
                               f"{copy.src}:\n{proc.stderr[-3000:]}")
    return copy


def _is_unit(event: dict) -> bool:
    """Whether an rcache event is a rustc unit (not a probe of rustc, a build-script run or a C
    compile)."""
    return event.get("kind", "rustc") == "rustc" and event.get("reason") != "probe"


def path_bound_counts(events: list[dict]) -> dict:
    """The units of one build by `path_bound` reason, the same by outcome, and the rest."""
    by_reason: dict[str, int] = {}
    by_outcome: dict[str, dict[str, int]] = {}
    unbound = 0
    for e in events:
        reason = e.get("path_bound")
        if reason is None:
            unbound += _is_unit(e)
            continue
        reason = str(reason)
        by_reason[reason] = by_reason.get(reason, 0) + 1
        outcomes = by_outcome.setdefault(reason, {})
        outcomes[str(e.get("outcome"))] = outcomes.get(str(e.get("outcome")), 0) + 1
    return {"path_bound": dict(sorted(by_reason.items())),
            "path_bound_outcomes": dict(sorted(by_outcome.items())),
            "not_path_bound": unbound}


def remote_counts(events: list[dict]) -> dict:
    """The rustc units and build-script runs of one build by the remote's answer (`hit`, `miss`,
    `rejected`, `error`, `skipped`, or `not_asked`: a local hit, or a probe or passthrough)."""
    units: dict[str, int] = {}
    runs: dict[str, int] = {}
    for e in events:
        counts = units if _is_unit(e) else runs if e.get("kind") == "build_script_run" else None
        if counts is not None:
            answer = str(e.get("remote") or "not_asked")
            counts[answer] = counts.get(answer, 0) + 1
    return {"units_by_remote": dict(sorted(units.items())),
            "script_runs_by_remote": dict(sorted(runs.items()))}


def _inside(path: str | None, root: Path) -> bool:
    """Whether a path lies in root (or is root)."""
    return bool(path) and (path == str(root) or path.startswith(str(root) + os.sep))


def _store_history(record: dict, runs: list[dict]) -> list[str]:
    """The modes that built against the record's store in its repetition, since the cold one that
    emptied it (a primer named as such)."""
    used = []
    for r in reversed([r for r in runs if r["rep"] == record["rep"] and r["tool"] == "rcache"]):
        if r["mode"].startswith("rcache-remote"):
            continue  # a store of its own
        used.append(r["mode"] + (" (primer)" if r["primer"] else ""))
        if r["class"] == "cold":
            break
    return used[::-1]


def _same_rep_wall(record: dict, runs: list[dict], mode: str) -> float | None:
    """The wall of the last passed, timed build of mode in the record's repetition."""
    found = [r for r in runs if r["mode"] == mode and r["rep"] == record["rep"]
             and not r["primer"] and r["exit_code"] == 0]
    return found[-1]["wall_s"] if found else None


def annotate(record: dict, runs: list[dict], copy: Copy, first_src: Path, first_target: Path,
             events: list[dict] | None, store: Path | None = None) -> None:
    """Attach the `second_copy` object (see the module docstring) to a second-copy build's record;
    `runs` are the builds before it, `store` its RCACHE_DIR."""
    wall = record.get("wall_s") if record["exit_code"] == 0 else None
    warm_wall = _same_rep_wall(record, runs, COMPARED_WITH)
    events = events or []
    record["second_copy"] = {
        "src": str(copy.src), "target_dir": str(copy.target_dir),
        "cargo_home": str(copy.cargo_home or usual_cargo_home()),
        "own_cargo_home": copy.cargo_home is not None,
        "rcache_dir": str(store) if store is not None else None,
        "first_src": str(first_src), "first_target_dir": str(first_target),
        "first_cargo_home": str(usual_cargo_home()),
        "warm_wall_s": warm_wall,
        "x_warm": wall / warm_wall if wall is not None and warm_wall else None,
        "store_used_by": None if copy.remote else _store_history(record, runs),
        **path_bound_counts(events),
        "events_in_first_copy": sum(_inside(e.get("cwd"), first_src.absolute()) for e in events),
    }
    if copy.remote:
        remote_warm = _same_rep_wall(record, runs, REMOTE_COMPARED_WITH)
        record["second_copy"].update(
            remote=True, remote_filled_by=record.get("filled_by"),
            remote_before=record.get("remote_before"), **remote_counts(events),
            remote_warm_wall_s=remote_warm,
            x_remote_warm=wall / remote_warm if wall is not None and remote_warm else None)


def _units(record: dict, outcome: str) -> int | None:
    """How many compiles of a build ended in outcome, from its events log."""
    counts = record.get("event_outcomes")
    return None if counts is None else counts.get(outcome, 0)


def _remote_of(r: dict, key: str) -> float | None:
    """A counter of the `remote` object of a build's `rcache stats --json` summary."""
    return ((r.get("stats_summary") or {}).get("remote") or {}).get(key)


def summarize(runs: list[dict], modes: list[str]) -> list[dict]:
    """One row per second-copy mode: medians of wall, of the same repetition's rcache-warm wall and
    of x_warm, of units hit and missed and of `others`; the path-bound counts of the last build;
    for the remote one also medians of its units hit on the remote (events), of the remote hits
    and bytes down (stats, build-script runs included) and of x_remote_warm."""
    rows = []
    for mode in modes:
        if mode not in MODES:
            continue
        ok = [r for r in runs if r["mode"] == mode and not r["primer"] and r["exit_code"] == 0]
        timed = [r for r in runs if r["mode"] == mode and not r["primer"]]
        last = (ok[-1] if ok else {}).get("second_copy") or {}
        rows.append({
            "mode": mode, "reps": len(timed), "ok": len(ok),
            "wall_s": _median([r["wall_s"] for r in ok]),
            "warm_wall_s": _median([(r.get("second_copy") or {}).get("warm_wall_s") for r in ok]),
            "x_warm": _median([(r.get("second_copy") or {}).get("x_warm") for r in ok]),
            "units_hit": _median([_units(r, "hit") for r in ok]),
            "units_missed": _median([_units(r, "miss") for r in ok]),
            "others_cores": _median([r["foreign_cpu_s"] / r["wall_s"] for r in ok
                                     if r.get("foreign_cpu_s") is not None and r["wall_s"]]),
            "path_bound": last.get("path_bound"),
            "not_path_bound": last.get("not_path_bound"),
            "src": last.get("src"), "cargo_home": last.get("cargo_home"),
        })
        if mode == REMOTE:
            rows[-1].update(
                remote_unit_hits=_median([((r.get("second_copy") or {}).get("units_by_remote")
                                           or {}).get("hit", 0) for r in ok]),
                remote_hits=_median([_remote_of(r, "hits") for r in ok]),
                bytes_down=_median([_remote_of(r, "bytes_down") for r in ok]),
                x_remote_warm=_median([(r.get("second_copy") or {}).get("x_remote_warm")
                                       for r in ok]),
                remote_filled_by=last.get("remote_filled_by"))
    return rows


def _bound_text(path_bound: dict | None, unbound: int | None) -> str:
    """`reason n, reason n; not bound n`, or `none; not bound n`."""
    if path_bound is None:
        return ""
    bound = ", ".join(f"{k} {v}" for k, v in path_bound.items()) or "none"
    return f"{bound}; not bound {unbound}"


def _remote_text(r: dict) -> str:
    """`units N; hits N; down X MiB; x rcache-remote-warm X` of the remote row, else empty."""
    if r["mode"] != REMOTE:
        return ""
    x = _fmt(r["x_remote_warm"], ".2f")
    return (f"units {_fmt(r['remote_unit_hits'], '.0f')}; hits {_fmt(r['remote_hits'], '.0f')}; "
            f"down {mib(r['bytes_down'])}" + (f"; x {REMOTE_COMPARED_WITH} {x}" if x else ""))


def table(rows: list[dict]) -> str:
    """The second-copy rows as a Markdown table."""
    lines = ["| mode | wall | rcache-warm wall | x rcache-warm | units hit | units missed "
             "| path-bound units (last rep) | from the remote | others | ok/reps |",
             "|---|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} "
                     f"| {_fmt(r['warm_wall_s'], '.2f', ' s')} | {_fmt(r['x_warm'], '.2f')} "
                     f"| {_fmt(r['units_hit'], '.0f')} | {_fmt(r['units_missed'], '.0f')} "
                     f"| {_bound_text(r['path_bound'], r['not_path_bound'])} | {_remote_text(r)} "
                     f"| {_fmt(r['others_cores'], '.2f')} | {r['ok']}/{r['reps']} |")
    places = [f"- {r['mode']}: built in {r['src']}, CARGO_HOME {r['cargo_home']}"
              + (f"; empty local store, remote filled by {r['remote_filled_by']}"
                 if r["mode"] == REMOTE else "")
              for r in rows if r["src"]]
    return "\n".join(lines + ([""] + places if places else []))


def progress_line(record: dict) -> str | None:
    """The second line of a second-copy build on the console: units, path-bound, x rcache-warm."""
    s = record.get("second_copy")
    if s is None or record["exit_code"] is None:
        return None
    line = (f"units hit {_units(record, 'hit')} missed {_units(record, 'miss')}; path-bound: "
            f"{_bound_text(s['path_bound'], s['not_path_bound'])}; x {COMPARED_WITH} "
            f"{_fmt(s['x_warm'], '.2f') or '?'}; in {s['src']}")
    if s.get("remote"):
        line += (f"; remote filled by {s['remote_filled_by']} ("
                 f"{(s['remote_before'] or {}).get('objects')} objects before), units by remote "
                 f"answer: {_counts_text(s['units_by_remote'])}, script runs: "
                 f"{_counts_text(s['script_runs_by_remote'])}; x {REMOTE_COMPARED_WITH} "
                 f"{_fmt(s['x_remote_warm'], '.2f') or '?'}")
    return line


def _counts_text(counts: dict[str, int]) -> str:
    """`key n, key n`, or `none`."""
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _filler_fault(record: dict, runs: list[dict]) -> str | None:
    """Why the remote may not have held the first copy's entries when the remote second copy
    built: no filling build, a filling build or flush that failed, or an empty server."""
    s = record["second_copy"]
    filled_by = s.get("remote_filled_by")
    if not filled_by:
        return "no rcache-remote cold build filled the remote before it"
    primer = filled_by.endswith(" (primer)")
    mode = filled_by.removesuffix(" (primer)")
    filler = [r for r in runs if r["rep"] == record["rep"] and r["mode"] == mode
              and r["primer"] == primer]
    if not filler or filler[-1]["exit_code"] != 0 or filler[-1].get("flush_exit") != 0:
        return f"the build that filled the remote, {filled_by}, failed or did not flush"
    if not (s.get("remote_before") or {}).get("objects"):
        return f"the remote was empty before the build (filled by {filled_by})"
    return None


def failures(runs: list[dict]) -> list[str]:
    """Faults of the second-copy modes: a build that ran (partly) in the first copy; for the
    remote one, a remote that did not hold the first copy's entries (`_filler_fault`)."""
    out = []
    for r in runs:
        s = r.get("second_copy") or {}
        if s.get("events_in_first_copy"):
            out.append(f"{r['mode']} rep {r['rep']}: {s['events_in_first_copy']} rcache "
                       f"invocations ran in the first copy {s['first_src']}")
        fault = _filler_fault(r, runs) if s.get("remote") and r["exit_code"] is not None else None
        if fault:
            out.append(f"{r['mode']} rep {r['rep']}: {fault}")
    return out
