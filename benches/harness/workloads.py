"""Workloads: which cargo package each benchmark builds, and fetching its dependencies.

A named workload (`webrender`, `stylo`) is a tiny package under `workloads/<name>/` whose only
dependency is the crate under test, pinned with `=` and with a committed `Cargo.lock`, so the
versions never drift between runs. It is built in place: with `--locked` cargo writes nothing there.

`fixture` is the test fixture workspace under `tests/fixtures/`, and any other directory holding a
`Cargo.toml` can be passed as a path. Those are copied into the scratch work dir first, because
cargo writes a `Cargo.lock` beside a manifest that has none, and the harness must not write into
`tests/` or the user's tree.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parents[1]
NAMED = {
    "webrender": HARNESS_DIR / "workloads" / "webrender",
    "stylo": HARNESS_DIR / "workloads" / "stylo",
}
# What a workload's own build needs in the environment. demo_lib reads DEMO_GREETING with `env!`;
# the integration tests (tests/integration/harness/) set it to "hello" on every build.
WORKLOAD_ENV = {"fixture": {"DEMO_GREETING": "hello"}}


class WorkloadError(Exception):
    """A workload could not be found or prepared."""


@dataclass
class Workload:
    """A cargo package or workspace to build, and where it came from."""

    name: str
    src: Path  # the manifest dir the builds run in
    origin: Path  # where it came from (same as src unless copied)
    committed_lock: bool  # built in place from a committed Cargo.lock
    env: dict[str, str] = field(default_factory=dict)  # variables its build needs


def find_fixture(repo: Path = REPO_ROOT) -> Path | None:
    """Return the shallowest dir under tests/fixtures/ whose Cargo.toml has a [workspace] table."""
    manifests = sorted(
        (repo / "tests" / "fixtures").glob("**/Cargo.toml"),
        key=lambda p: (len(p.parts), str(p)),
    )
    for manifest in manifests:
        if "target" in manifest.relative_to(repo).parts:
            continue
        if re.search(r"^\s*\[workspace\]", manifest.read_text(errors="replace"), re.M):
            return manifest.parent
    return None


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a source tree into the scratch dir, leaving out build output and VCS data."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target", ".git"), symlinks=True)


_locks = []  # open lock files, held until the process exits


def lock(work_dir: Path, name: str) -> None:
    """Own the workload's copy, target dir and caches under work_dir for this run.

    Two runs on one workload would delete each other's target dir in the middle of a build. The
    lock (flock) goes away with the process, however it ends.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    handle = open(work_dir / f"{name}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise WorkloadError(f"another run (pid {handle.read().strip() or '?'}) is using {work_dir} "
                            f"for {name}; wait for it to end, or pass another --work-dir") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _locks.append(handle)


def resolve(name: str | None, path: str | None, work_dir: Path) -> Workload:
    """Turn the command line's workload name and optional --path into a ready Workload.

    Takes the workload's lock in work_dir first (see `lock`).
    """
    if path is None and name in NAMED:
        src = NAMED[name]
        if not (src / "Cargo.lock").is_file():
            raise WorkloadError(f"{src}/Cargo.lock is missing: run `cargo generate-lockfile` there")
        lock(work_dir, name)
        return Workload(name, src, src, committed_lock=True)
    if path is not None:
        origin = Path(path).resolve()
        name = name or origin.name
    elif name == "fixture":
        origin = find_fixture()
        if origin is None:
            raise WorkloadError(
                "no Cargo.toml with a [workspace] table under tests/fixtures/ yet; "
                "pass the workspace with --path DIR"
            )
    elif name and Path(name).is_dir():
        origin = Path(name).resolve()
        name = origin.name
    else:
        raise WorkloadError(f"unknown workload {name!r}: use webrender, stylo, fixture or a path")
    if not (origin / "Cargo.toml").is_file():
        raise WorkloadError(f"{origin} has no Cargo.toml")
    lock(work_dir, name)
    dest = work_dir / "src" / name
    _copy_tree(origin, dest)
    return Workload(name, dest, origin, committed_lock=False, env=dict(WORKLOAD_ENV.get(name, {})))


def fetch(workload: Workload, env: dict[str, str]) -> None:
    """Download every dependency once, outside the timed part; later builds run --offline."""
    cmd = ["cargo", "fetch"]
    if workload.committed_lock:
        cmd.append("--locked")
    proc = subprocess.run(cmd, cwd=workload.src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WorkloadError(f"`{' '.join(cmd)}` failed in {workload.src}:\n{proc.stderr[-3000:]}")
