"""The wrappers under test: no wrapper, rcache, and the peers sccache and kache.

Each tool knows:
- the environment a build needs to use it with a given cache dir (RUSTC_WRAPPER and the tool's own
  cache-dir variable);
- how to get a fresh, empty cache;
- what to do just before and just after a timed build (start and stop its daemon, zero its stats);
- how to read its stats, and how to boil them down to requests, hits and misses.

Everything a tool starts is started with the build's environment, so its daemon carries the
harness's marker variable and `measure.daemon_cpu` can find it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

# The variables a tool reads. They are removed from the inherited environment, so that a user's
# own settings (a shared sccache server, a global kache config) never leak into a measurement.
FOREIGN_PREFIXES = ("RCACHE_", "SCCACHE_", "KACHE_")
FOREIGN_VARS = (
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_INCREMENTAL",
    "CARGO_BUILD_INCREMENTAL",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
)
DEFAULT_PEER_ROOT = Path.home() / ".cache" / "rcache-bench" / "peers"


def _run(cmd: list[str], env: dict[str, str], check: bool = True, timeout: float = 120) -> str:
    """Run a tool command outside the timed part and return its stdout."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _json_or_none(text: str) -> dict | None:
    """Parse a tool's JSON output, or return None when it printed something else."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class Tool:
    """No wrapper at all: the `none` mode, and the base class of the real wrappers."""

    name = "none"

    def __init__(self, binary: Path | None = None):
        """Remember the tool's binary (None for `none`)."""
        self.binary = binary

    def version(self) -> str | None:
        """The tool's version line, for the JSON record."""
        if self.binary is None:
            return None
        proc = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True)
        return (proc.stdout or proc.stderr).strip().splitlines()[0] if proc.returncode == 0 else None

    def env(self, cache_dir: Path) -> dict[str, str]:
        """The variables that make a cargo build (and the daemon) use this tool and this cache."""
        return {"RUSTC_WRAPPER": str(self.binary) if self.binary else ""}

    def reset(self, env: dict[str, str], cache_dir: Path) -> None:
        """Make the cache empty: stop anything still using it, then delete it."""
        self.stop(env)
        if cache_dir.exists():
            shutil.rmtree(cache_dir)

    def start(self, env: dict[str, str], warm: bool) -> None:
        """Prepare for a timed build: start a daemon, zero the stats. Not timed."""

    def stats(self, env: dict[str, str]) -> dict | None:
        """The tool's own stats after a build, as it reports them (raw JSON)."""
        return None

    def stop(self, env: dict[str, str]) -> None:
        """Stop whatever `start` or the build started. Must be safe to call when nothing runs."""

    def summarize(self, stats: dict | None, env: dict[str, str], since: float) -> dict | None:
        """Boil one build's stats down to {requests, hits, misses, hit_rate}.

        hit_rate = hits / (hits + misses). `since` is the build's start (epoch seconds), for a tool
        whose counters cannot be zeroed.
        """
        return None


def _summary(requests: int | None, hits: int, misses: int, **extra) -> dict:
    """Build the common stats summary, with the hit rate over cacheable requests."""
    looked_up = hits + misses
    return {"requests": requests, "hits": hits, "misses": misses,
            "hit_rate": (hits / looked_up) if looked_up else None, **extra}


class Rcache(Tool):
    """rcache: one process per invocation, no daemon; RCACHE_DIR is the store."""

    name = "rcache"

    def env(self, cache_dir: Path) -> dict[str, str]:
        """RUSTC_WRAPPER=rcache with its store in cache_dir."""
        return {**super().env(cache_dir), "RCACHE_DIR": str(cache_dir)}

    def start(self, env: dict[str, str], warm: bool) -> None:
        """Zero the stats left by the cold run, so the warm run's stats are its own.

        A cold store is left untouched (not even created): creating it is part of the cold run.
        """
        if warm:
            _run([str(self.binary), "stats", "--zero"], env)

    def stats(self, env: dict[str, str]) -> dict | None:
        """`rcache stats --json`."""
        return _json_or_none(_run([str(self.binary), "stats", "--json"], env, check=False))

    def summarize(self, stats: dict | None, env: dict[str, str], since: float) -> dict | None:
        """rcache's stats keys are documented in README.md; they were zeroed before the build."""
        if not stats:
            return None
        runs = stats.get("build_scripts") or {}
        remote = stats.get("remote")  # only with a remote configured (RCACHE_REMOTE)
        return _summary(stats.get("requests"), stats.get("hits", 0), stats.get("misses", 0),
                        passthrough=stats.get("passthrough"), errors=stats.get("errors"),
                        build_scripts={key: runs.get(key) for key in (
                            "requests", "hits", "misses", "passthrough", "errors",
                            "passthrough_reasons", "not_stored", "error_reasons")},
                        languages=stats.get("languages"),
                        build_scripts_cc_routed=stats.get("build_scripts_cc_routed"),
                        remote={key: remote.get(key) for key in (
                            "hits", "misses", "errors", "error_reasons", "skipped", "rejected",
                            "rejected_reasons", "bytes_down", "bytes_up", "uploads",
                            "pending_uploads", "prefetch")} if isinstance(remote, dict) else None)


def sccache_port(workload: str) -> int:
    """A server port of the workload's own, never sccache's default 4226.

    So the harness never talks to a developer's sccache server, and two harness runs on different
    workloads do not share a server.
    """
    return 14226 + zlib.crc32(workload.encode()) % 1000


class Sccache(Tool):
    """sccache: a server that must be started before the build; SCCACHE_DIR is the local cache."""

    name = "sccache"
    port = 14226

    def env(self, cache_dir: Path) -> dict[str, str]:
        """Its own cache dir, its own port, and a server that never exits on its own."""
        return {**super().env(cache_dir), "SCCACHE_DIR": str(cache_dir),
                "SCCACHE_IDLE_TIMEOUT": "0", "SCCACHE_SERVER_PORT": str(self.port),
                "SCCACHE_ERROR_LOG": str(cache_dir.parent / "sccache-server.log")}

    def start(self, env: dict[str, str], warm: bool) -> None:
        """Start the server with this run's environment, and zero its stats."""
        self.stop(env)
        _run([str(self.binary), "--start-server"], env)
        _run([str(self.binary), "--zero-stats"], env)

    def stats(self, env: dict[str, str]) -> dict | None:
        """`sccache --show-stats --stats-format=json`."""
        return _json_or_none(_run([str(self.binary), "--show-stats", "--stats-format=json"], env,
                                  check=False))

    def stop(self, env: dict[str, str]) -> None:
        """`sccache --stop-server`; fails harmlessly when no server runs."""
        if self.binary is not None:
            _run([str(self.binary), "--stop-server"], env, check=False)

    def summarize(self, stats: dict | None, env: dict[str, str], since: float) -> dict | None:
        """Hits and misses summed over languages (Rust, and C/C++ from build scripts via cc-rs)."""
        if not stats:
            return None
        s = stats.get("stats", stats)

        def total(key: str) -> int:
            """Sum a per-language counter."""
            return sum((s.get(key) or {}).get("counts", {}).values())

        # With a remote backend (peer_remote.py) every hit is a remote hit: no local cache then.
        return _summary(s.get("compile_requests"), total("cache_hits"), total("cache_misses"),
                        not_cacheable=s.get("requests_not_cacheable"),
                        cache_location=stats.get("cache_location"), writes=s.get("cache_writes"),
                        errors=total("cache_errors"), read_errors=s.get("cache_read_errors"),
                        write_errors=s.get("cache_write_errors"), timeouts=s.get("cache_timeouts"))


KACHE_REMOTE_FIELDS = {"KACHE_S3_BUCKET": "bucket", "KACHE_S3_ENDPOINT": "endpoint",
                       "KACHE_S3_REGION": "region", "KACHE_S3_PREFIX": "prefix"}
"""kache's S3 variables and the `[cache.remote]` fields they stand for (peer_remote.py)."""


class Kache(Tool):
    """kache 2: a daemon (`kache daemon start|stop`) and a store in KACHE_CACHE_DIR.

    Its runtime dir (socket, locks) defaults to a dir inside the store, so each fresh cache dir also
    gets its own daemon. A config file of its own, empty, keeps the user's and the host's kache
    settings out. Free-space recovery is turned off so that a nearly full disk cannot evict entries
    in the middle of a measurement; everything else is kache's default behaviour.
    """

    name = "kache"

    def env(self, cache_dir: Path) -> dict[str, str]:
        """Its own store and config, and no free-space eviction."""
        config = cache_dir.parent / "kache-config.toml"
        return {**super().env(cache_dir), "KACHE_CACHE_DIR": str(cache_dir),
                "KACHE_CONFIG": str(config), "KACHE_HOST_CONFIG": "",
                "KACHE_AUTO_RECOVER_MIN_FREE_BYTES": "0"}

    def start(self, env: dict[str, str], warm: bool) -> None:
        """Write the config (empty, or only the S3 remote of the KACHE_S3_* variables, which a
        daemon kache starts drops from its environment) and start the daemon."""
        Path(env["KACHE_CONFIG"]).parent.mkdir(parents=True, exist_ok=True)
        remote = "".join(f"{field} = {json.dumps(value)}\n" for var, field in
                         KACHE_REMOTE_FIELDS.items() if (value := env.get(var)))
        Path(env["KACHE_CONFIG"]).write_text(remote and '[cache.remote]\ntype = "s3"\n' + remote)
        self.stop(env)
        _run([str(self.binary), "daemon", "start"], env)
        self._started = time.time()

    def stats(self, env: dict[str, str]) -> dict | None:
        """`kache stats --json`, over the window since this build's daemon started."""
        since = max(1, int(time.time() - getattr(self, "_started", time.time() - 3600)) + 1)
        return _json_or_none(_run([str(self.binary), "stats", "--json", "--since", f"{since}s"],
                                  env, check=False))

    def stop(self, env: dict[str, str]) -> None:
        """`kache daemon stop`; harmless when no daemon runs."""
        if self.binary is not None and "KACHE_CACHE_DIR" in env:
            _run([str(self.binary), "daemon", "stop"], env, check=False)

    def summarize(self, stats: dict | None, env: dict[str, str], since: float) -> dict | None:
        """Count this build's outcomes in kache's own event log, `<cache dir>/events.jsonl`.

        `kache stats --since` rounds its window, so after a warm build it also counts the cold
        build's misses; the events carry exact timestamps (UTC, ISO 8601, compared as text).
        """
        path = Path(env["KACHE_CACHE_DIR"]) / "events.jsonl"
        if not path.is_file():
            return None
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since)) + f"{since % 1:.6f}"[1:]
        counts: dict[str, int] = {}
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if str(event.get("ts", ""))[:26] >= start:
                counts[event.get("result")] = counts.get(event.get("result"), 0) + 1
        hits = sum(n for result, n in counts.items() if str(result).endswith("hit"))
        return _summary(sum(counts.values()), hits, counts.get("miss", 0), outcomes=counts)


TOOLS = {"none": Tool, "rcache": Rcache, "sccache": Sccache, "kache": Kache}
PEERS = ("sccache", "kache")


def find_peer(name: str, peer_root: Path) -> Path | None:
    """A peer's binary: the scratch install root first, then PATH."""
    candidate = peer_root / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def install_peers(peer_root: Path) -> list[str]:
    """Install sccache and kache into peer_root with `cargo install`; return what failed.

    sccache with only the remote backends the harness serves (`redis`, `s3`: the
    `sccache-remote-*` modes), not its default `all` (GCS, Azure, GHA, dist client ...). Each is
    tried with --locked first, and again without it when the registry no longer has a version that
    the crate's lock names.
    """
    failed = []
    commands = {
        "sccache": ["cargo", "install", "sccache", "--no-default-features",
                    "--features", "redis,s3"],
        "kache": ["cargo", "install", "kache"],
    }
    for name, cmd in commands.items():
        cmd = cmd + ["--root", str(peer_root)]
        print(f"installing {name} into {peer_root} ...", flush=True)
        if subprocess.run(cmd + ["--locked"]).returncode == 0:
            continue
        print(f"{name}: --locked failed; retrying without it", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
    return failed


def clean_env(base: dict[str, str]) -> dict[str, str]:
    """The inherited environment without any wrapper, cache or target-dir settings."""
    return {k: v for k, v in base.items()
            if k not in FOREIGN_VARS and not k.startswith(FOREIGN_PREFIXES)}
