"""The peers over the same remote (issue 18): sccache's (and kache's) remote modes in e2e.py.

rcache's remote modes (`rcache-remote-*`, e2e.py and remote.py) measure rcache against the server
the harness starts for `--remote redis|s3`, over loopback or a shaped `--link`. This module owns
the same measurement for the peers, against the same server across the same link, in the same run:

- the modes: `sccache-remote-cold` and `sccache-remote-warm` (Redis or S3), `kache-remote-cold`
  and `kache-remote-warm` (S3 only: kache's remotes are S3, GCS, a filesystem and OCI, no Redis).
  Cold: an empty local cache dir, the peer's part of the remote emptied, then the build (the peer
  writes to the remote as it goes). Warm: an empty local cache dir again, the remote as the cold
  mode just before it left it (or an untimed primer `<peer>-remote-cold`), then the build;
- pointing each peer at the server (`env`): sccache with `SCCACHE_REDIS_ENDPOINT=redis://HOST:PORT`
  or `SCCACHE_BUCKET`, `SCCACHE_ENDPOINT`, `SCCACHE_REGION`, `SCCACHE_S3_USE_SSL=false` and a key
  prefix of its own (`SCCACHE_S3_KEY_PREFIX`; opendal addresses the bucket path style unless told
  otherwise); kache with `KACHE_S3_*`, which tools.Kache.start writes into its config file (a
  daemon kache starts drops those variables from its environment). Both sign with the dummy
  credentials remote.py gives rcache (moto takes any);
- the peer's part of the server (`scope`): on S3 the prefix `<rcache's prefix>-<peer>`, emptied
  before each cold build and sized after each build; on Redis the whole server (FLUSHALL, as
  rcache's cold modes do: every cold remote mode starts from an empty server, and the modes run
  one after another, rcache's first);
- what is read around every remote build, rcache's too (`wire`): the bytes that crossed the link,
  from the qdisc counters of a shaped link (`to_client` = down, `to_server` = up, IP and TCP
  headers included), or, on loopback with Redis, from the server's own `total_net_output_bytes`
  and `total_net_input_bytes` (RESP included, headers not). Read after rcache's flush and kache's
  drain, so uploads still running when cargo exits are counted; none on loopback with S3;
- after a peer's build (`after_build`): the server's CPU (as for rcache), kache's drain
  (`kache daemon stop` lets its upload queue go out, up to 30 s; timed as `drain_s`, the analogue
  of rcache's flush after build; sccache answers a compile only after its cache write has
  finished, so it has nothing left to drain), what the remote holds, and the files in the local
  cache dir (`local_files`: sccache with one remote backend and no SCCACHE_MULTILEVEL_CHAIN has no
  local disk cache at all, so this is 0);
- the faults (`failures`: a warm peer build that hit nothing, sccache's cache read or write
  errors and timeouts) and a table of every remote mode, rcache's and the peers', side by side.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import remote
from report import _fmt, mib, mode_class

PEER_MODES = {"sccache": ("sccache-remote-cold", "sccache-remote-warm"),
              "kache": ("kache-remote-cold", "kache-remote-warm")}
MODES = tuple(m for modes in PEER_MODES.values() for m in modes)
BACKENDS = {"sccache": ("redis", "s3"), "kache": ("s3",)}
"""The `--remote` backends each peer can use."""


def modes(tool: str) -> list[str]:
    """A tool's remote modes, in run order (after its local ones)."""
    return list(PEER_MODES.get(tool, ()))


def default_modes(tool: str, backend: str | None) -> list[str]:
    """A found peer's remote modes that run by default with this `--remote` (none without)."""
    return modes(tool) if backend in BACKENDS.get(tool, ()) else []


def unsupported(mode: str, backend: str | None) -> str | None:
    """Why a peer's remote mode cannot run with this `--remote`, or None."""
    tool = mode.split("-")[0]
    if mode not in MODES or backend is None or backend in BACKENDS[tool]:
        return None
    return (f"{mode}: {tool} has no {backend} backend (its remotes: "
            f"{', '.join(BACKENDS[tool])}); see benches/README.md")


def scope(server: remote.Server, mode: str) -> remote.Server:
    """The part of the server a mode empties and sizes: a peer's own prefix on S3 (a shallow
    copy of the server object with that prefix), else the server itself."""
    if mode not in MODES or server.backend != "s3":
        return server
    view = object.__new__(type(server))
    view.__dict__.update(server.__dict__, prefix=f"{server.prefix}-{mode.split('-')[0]}")
    return view


def env(mode: str, server: remote.Server) -> dict[str, str]:
    """The variables that point a peer's remote mode at the server ({} for any other mode)."""
    if mode not in MODES:
        return {}
    tool, s3 = mode.split("-")[0], server.backend == "s3"
    endpoint = f"http://{server.host}:{server.port}"
    creds = {k: v for k, v in server.env().items() if k.startswith("AWS_")} if s3 else {}
    if tool == "sccache" and not s3:
        return {"SCCACHE_REDIS_ENDPOINT": f"redis://{server.host}:{server.port}"}
    if tool == "sccache":
        return {**creds, "SCCACHE_BUCKET": remote.BUCKET, "SCCACHE_ENDPOINT": endpoint,
                "SCCACHE_REGION": "us-east-1", "SCCACHE_S3_USE_SSL": "false",
                "SCCACHE_S3_KEY_PREFIX": scope(server, mode).prefix}
    return {**creds, "KACHE_S3_BUCKET": remote.BUCKET, "KACHE_S3_ENDPOINT": endpoint,
            "KACHE_S3_REGION": "us-east-1", "KACHE_S3_PREFIX": scope(server, mode).prefix}


def wire(server: remote.Server, link, since: dict | None = None) -> dict | None:
    """Byte counters of the way to the server: {"source", "down", "up"}; with `since` (an
    earlier reading), what moved since then. None when nothing counts (S3 on loopback)."""
    now = None
    if link.shaped:
        counters = link._read_counters()
        down, up = (counters.get(side) or {} for side in ("to_client", "to_server"))
        if down.get("bytes") is not None and up.get("bytes") is not None:
            now = {"source": "link qdiscs", "down": down["bytes"], "up": up["bytes"]}
    elif server.backend == "redis":
        info = (server.command("INFO", "stats") or b"").decode(errors="replace")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        now = {"source": "redis net counters", "down": int(fields["total_net_output_bytes"]),
               "up": int(fields["total_net_input_bytes"])}
    if now is None or since is None:
        return now
    return {**now, "down": now["down"] - since["down"], "up": now["up"] - since["up"]}


def after_build(record: dict, tool, env_: dict[str, str], server: remote.Server, link,
                wire_before: dict | None, cache_dir: Path) -> None:
    """After a peer's remote build: kache's drain (timed), then what the remote holds, the bytes
    on the wire since the build began, and the files left in the local cache dir."""
    if tool.name == "kache":
        start = time.monotonic()
        tool.stop(env_)  # `kache daemon stop`: its upload queue goes out first (up to 30 s)
        record["drain_s"] = time.monotonic() - start
    record["remote_usage"] = scope(server, record["mode"]).usage()
    record["wire"] = wire(server, link, wire_before)
    record["local_files"] = sum(1 for p in cache_dir.rglob("*") if p.is_file()) \
        if cache_dir.is_dir() else 0


def _median(values: list) -> float | None:
    """Median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _sccache_errors(summary: dict) -> dict:
    """sccache's remote faults in a stats summary (tools.Sccache.summarize), nonzero ones only."""
    return {k: summary.get(k) for k in ("errors", "read_errors", "write_errors", "timeouts")
            if summary.get(k)}


def failures(runs: list[dict]) -> list[str]:
    """A peer's remote build that passed but hit nothing warm, or counted remote faults."""
    found = []
    for r in runs:
        if r["mode"] not in MODES or r["exit_code"] != 0:
            continue
        name = f"{r['mode']} rep {r['rep']}" + (" (primer)" if r["primer"] else "")
        summary = r.get("stats_summary") or {}
        if r["class"] == "warm" and not summary.get("hits"):
            found.append(f"{name}: no hit from the remote")
        if r["tool"] == "sccache" and _sccache_errors(summary):
            found.append(f"{name}: sccache counted remote faults {_sccache_errors(summary)}")
    return found


def summarize(runs: list[dict], modes_run: list[str]) -> list[dict]:
    """Medians of every remote mode that ran, rcache's and the peers' (rcache's second copy left
    out), with each peer mode's ratio to rcache's mode of the same class."""
    rows = []
    for mode in modes_run:
        if "remote" not in mode.split("-") or mode.endswith("second-copy-home"):
            continue
        ok = [r for r in runs if r["mode"] == mode and not r["primer"] and r["exit_code"] == 0]
        if not ok:
            continue
        s = [r.get("stats_summary") or {} for r in ok]
        rs = [x.get("remote") or {} for x in s]
        rows.append({
            "mode": mode, "ok": len(ok),
            "reps": len([r for r in runs if r["mode"] == mode and not r["primer"]]),
            "wall_s": _median([r["wall_s"] for r in ok]),
            "hit_rate": _median([x.get("hit_rate") for x in s]),
            "hits": _median([y.get("hits") if mode.startswith("rcache") else x.get("hits")
                             for x, y in zip(s, rs)]),
            "faults": _median([(y.get("errors") or 0) + (y.get("skipped") or 0)
                               if mode.startswith("rcache") else sum(_sccache_errors(x).values())
                               for x, y in zip(s, rs)]),
            "payload_down": _median([y.get("bytes_down") for y in rs]),
            "payload_up": _median([y.get("bytes_up") for y in rs]),
            "wire_down": _median([(r.get("wire") or {}).get("down") for r in ok]),
            "wire_up": _median([(r.get("wire") or {}).get("up") for r in ok]),
            "after_s": _median([r.get("flush_s", r.get("drain_s")) for r in ok]),
            "stored_objects": _median([(r.get("remote_usage") or {}).get("objects") for r in ok]),
            "stored_bytes": _median([(r.get("remote_usage") or {}).get("bytes") for r in ok]),
            "server_cpu_s": _median([r.get("server_user_s", 0) + r.get("server_sys_s", 0)
                                     for r in ok if "server_user_s" in r]),
            "others": _median([r["foreign_cpu_s"] / r["wall_s"] for r in ok
                               if r.get("foreign_cpu_s") is not None and r["wall_s"]])})
    walls = {(row["mode"].split("-")[0], mode_class(row["mode"])): row["wall_s"] for row in rows}
    for row in rows:
        own = walls.get(("rcache", mode_class(row["mode"])))
        row["rcache_ratio"] = own / row["wall_s"] if own and row["wall_s"] and \
            not row["mode"].startswith("rcache") else None
    return rows


def _size(n: float | None) -> str:
    """Bytes as MiB, or as KiB below 1 MiB (a fixture's sccache entries are a few KiB)."""
    return "?" if n is None else mib(n) if n >= 1048576 else f"{n / 1024:.1f} KiB"


def table(rows: list[dict]) -> str:
    """The remote modes of every tool as a Markdown table."""
    lines = ["| mode | wall | rcache / it | hit rate | hits | faults | payload down / up "
             "| wire down / up | flush or drain | stored | server CPU | others | ok/reps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        hit = _fmt(r["hit_rate"] * 100 if r["hit_rate"] is not None else None, ".1f", " %")
        payload = "" if r["payload_down"] is None else \
            f"{_size(r['payload_down'])} / {_size(r['payload_up'])}"
        wired = "" if r["wire_down"] is None else f"{_size(r['wire_down'])} / {_size(r['wire_up'])}"
        stored = "" if r["stored_objects"] is None else \
            f"{r['stored_objects']:.0f} / {_size(r['stored_bytes'])}"
        lines.append(f"| {r['mode']} | {_fmt(r['wall_s'], '.2f', ' s')} "
                     f"| {_fmt(r['rcache_ratio'], '.2f')} | {hit} | {_fmt(r['hits'], '.0f')} "
                     f"| {_fmt(r['faults'], '.0f')} | {payload} | {wired} "
                     f"| {_fmt(r['after_s'], '.2f', ' s')} | {stored} "
                     f"| {_fmt(r['server_cpu_s'], '.2f', ' s')} | {_fmt(r['others'], '.2f')} "
                     f"| {r['ok']}/{r['reps']} |")
    return "\n".join(lines)


def print_table(runs: list[dict], modes_run: list[str]) -> None:
    """The side-by-side table, when a peer's remote mode ran."""
    rows = summarize(runs, modes_run)
    if any(row["mode"] in MODES for row in rows):
        print("\nremote modes of every tool (medians; rcache / it: rcache-remote-<class> wall / "
              "this wall; wire: bytes across the link, or Redis's net counters on loopback):")
        print(table(rows))
