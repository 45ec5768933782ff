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

Both are warm modes of the `rcache` store (report.mode_class and mode_family), so they run after
`rcache-warm` in each repetition; e2e.py adds `rcache-warm` to the modes when one of them is
asked for, because each build is compared with it. A second-copy build's record gets a
`second_copy` object: where it ran, `x_warm` (its wall / the wall of `rcache-warm` in the same
repetition), the modes that used the store since it was last emptied, and from its RCACHE_EVENTS
log: `path_bound`, its units by the `path_bound` reason rcache gives a unit whose cache entry
depends on a path, `path_bound_outcomes`, the same split by outcome, and `not_path_bound`, the rustc
units without the field (probes of rustc left out), and `events_in_first_copy`, the invocations whose cwd is inside the first copy (a
miswired run: that must be 0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from report import SECOND_COPY, _fmt, _median

MODES = SECOND_COPY  # `rcache-second-copy`, `rcache-second-copy-home`
COMPARED_WITH = "rcache-warm"  # the first copy's warm build, the denominator of x_warm


@dataclass
class Copy:
    """Where a second-copy mode builds: its source tree, target dir and CARGO_HOME."""

    src: Path
    target_dir: Path
    cargo_home: Path | None  # None: the usual one, as the first copy

    def env(self) -> dict[str, str]:
        """What the build's environment changes: the target dir, and CARGO_HOME if its own."""
        env = {"CARGO_TARGET_DIR": str(self.target_dir)}
        if self.cargo_home is not None:
            env["CARGO_HOME"] = str(self.cargo_home)
        return env


def usual_cargo_home() -> Path:
    """The CARGO_HOME the first copy builds with: the inherited one, or ~/.cargo."""
    return Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")


def layout(mode: str, work_dir: Path, name: str, first_src: Path) -> Copy:
    """The paths of a second-copy mode; its tree's path differs from the first copy's in length
    and depth (a dir is added in the rare case that it would not)."""
    root = work_dir.absolute() / "second-copy" / name
    parts = ["b", "deeper", "dir"] if mode == "rcache-second-copy" else ["c"]
    src = root.joinpath(*parts, name)
    first = first_src.absolute()
    while len(str(src)) == len(str(first)) or len(src.parts) == len(first.parts):
        parts.append("x")
        src = root.joinpath(*parts, name)
    home = root / "cargo-home" if mode == "rcache-second-copy-home" else None
    return Copy(src, src / "target", home)


def prepare(mode: str, work_dir: Path, name: str, first_src: Path, env: dict[str, str]) -> Copy:
    """Copy the first copy's tree (after its fetch: same Cargo.lock), without build output or VCS
    data, to the mode's path; for the -home mode fill its CARGO_HOME. Raises RuntimeError."""
    copy = layout(mode, work_dir, name, first_src)
    if copy.src.exists():
        shutil.rmtree(copy.src)
    copy.src.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(first_src, copy.src, ignore=shutil.ignore_patterns("target", ".git"),
                    symlinks=True)
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


def annotate(record: dict, runs: list[dict], copy: Copy, first_src: Path, first_target: Path,
             events: list[dict] | None) -> None:
    """Attach the `second_copy` object (see the module docstring) to a second-copy build's record;
    `runs` are the builds before it."""
    warm = [r for r in runs if r["mode"] == COMPARED_WITH and r["rep"] == record["rep"]
            and not r["primer"] and r["exit_code"] == 0]
    wall = record.get("wall_s") if record["exit_code"] == 0 else None
    warm_wall = warm[-1]["wall_s"] if warm else None
    events = events or []
    record["second_copy"] = {
        "src": str(copy.src), "target_dir": str(copy.target_dir),
        "cargo_home": str(copy.cargo_home or usual_cargo_home()),
        "own_cargo_home": copy.cargo_home is not None,
        "first_src": str(first_src), "first_target_dir": str(first_target),
        "first_cargo_home": str(usual_cargo_home()),
        "warm_wall_s": warm_wall,
        "x_warm": wall / warm_wall if wall is not None and warm_wall else None,
        "store_used_by": _store_history(record, runs),
        **path_bound_counts(events),
        "events_in_first_copy": sum(_inside(e.get("cwd"), first_src.absolute()) for e in events),
    }


def _units(record: dict, outcome: str) -> int | None:
    """How many compiles of a build ended in outcome, from its events log."""
    counts = record.get("event_outcomes")
    return None if counts is None else counts.get(outcome, 0)


def summarize(runs: list[dict], modes: list[str]) -> list[dict]:
    """One row per second-copy mode: medians of wall, of the same repetition's rcache-warm wall and
    of x_warm, of units hit and missed and of `others`; the path-bound counts of the last build."""
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
    return rows


def _bound_text(path_bound: dict | None, unbound: int | None) -> str:
    """`reason n, reason n; not bound n`, or `none; not bound n`."""
    if path_bound is None:
        return ""
    bound = ", ".join(f"{k} {v}" for k, v in path_bound.items()) or "none"
    return f"{bound}; not bound {unbound}"


def table(rows: list[dict]) -> str:
    """The second-copy rows as a Markdown table."""
    lines = ["| mode | wall | rcache-warm wall | x rcache-warm | units hit | units missed "
             "| path-bound units (last rep) | others | ok/reps |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} "
                     f"| {_fmt(r['warm_wall_s'], '.2f', ' s')} | {_fmt(r['x_warm'], '.2f')} "
                     f"| {_fmt(r['units_hit'], '.0f')} | {_fmt(r['units_missed'], '.0f')} "
                     f"| {_bound_text(r['path_bound'], r['not_path_bound'])} "
                     f"| {_fmt(r['others_cores'], '.2f')} | {r['ok']}/{r['reps']} |")
    places = [f"- {r['mode']}: built in {r['src']}, CARGO_HOME {r['cargo_home']}"
              for r in rows if r["src"]]
    return "\n".join(lines + ([""] + places if places else []))


def progress_line(record: dict) -> str | None:
    """The second line of a second-copy build on the console: units, path-bound, x rcache-warm."""
    s = record.get("second_copy")
    if s is None or record["exit_code"] is None:
        return None
    return (f"units hit {_units(record, 'hit')} missed {_units(record, 'miss')}; path-bound: "
            f"{_bound_text(s['path_bound'], s['not_path_bound'])}; x {COMPARED_WITH} "
            f"{_fmt(s['x_warm'], '.2f') or '?'}; in {s['src']}")


def failures(runs: list[dict]) -> list[str]:
    """Faults of the second-copy modes: a build that ran (partly) in the first copy."""
    out = []
    for r in runs:
        s = r.get("second_copy") or {}
        if s.get("events_in_first_copy"):
            out.append(f"{r['mode']} rep {r['rep']}: {s['events_in_first_copy']} rcache "
                       f"invocations ran in the first copy {s['first_src']}")
    return out
