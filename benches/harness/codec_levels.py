#!/usr/bin/env python3
"""The table that chooses the zstd level of remote blobs (benches/README.md, "Remote blobs
compressed"), from a run of `cargo bench --bench compression`.

    cargo bench --bench compression 2>&1 | tee /tmp/codec.log
    python3 benches/harness/codec_levels.py /tmp/codec.log [--gbit 1.0]

It reads the compressed sizes the bench prints ("codec size ...") from the log, and the median
times from criterion's estimates (target/criterion/<group>/<input>/<level>/new/estimates.json),
and prints for each input and level: the ratio, compress and decompress speed in MB/s of
uncompressed bytes, and the two costs the level trades:

- upload: compressing the blob (the publisher's CPU; off the build's critical path with the
  background uploader), with 1 and with 2 zstd worker threads;
- fetch: what a fresh machine pays for the blob at the link speed: the frame's bytes on the
  wire plus decompressing them (uncompressed, the fetch is the raw bytes on the wire).

Standard library only.
"""

import argparse
import json
import re
import sys
from pathlib import Path

SIZE_LINE = re.compile(
    r"codec size (\S+) level (\d+): (\d+) -> (\d+) bytes .*workers: (\d+) bytes"
)


def median_seconds(criterion: Path, group: str, label: str, level: int):
    estimates = criterion / group / label / str(level) / "new" / "estimates.json"
    try:
        data = json.loads(estimates.read_text())
    except OSError:
        return None
    return data["median"]["point_estimate"] / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="the output of cargo bench --bench compression")
    parser.add_argument("--gbit", type=float, default=1.0, help="link speed, Gbit/s (default 1)")
    parser.add_argument(
        "--criterion",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "target" / "criterion",
        help="criterion's output dir (default: the repo's target/criterion)",
    )
    args = parser.parse_args()
    link = args.gbit * 1e9 / 8  # bytes per second
    sizes = {}
    for line in args.log.read_text().splitlines():
        match = SIZE_LINE.search(line)
        if match:
            label, level, raw, frame, threaded = match.groups()
            sizes[(label, int(level))] = (int(raw), int(frame), int(threaded))
    if not sizes:
        print(f"no 'codec size' lines in {args.log}", file=sys.stderr)
        return 1
    print(
        f"| input | level | MB | ratio | compress MB/s | compress MB/s, 2 workers "
        f"| decompress MB/s | upload: compress ms (2 workers) "
        f"| fetch at {args.gbit:g} Gbit/s: wire + decompress ms | fetch uncompressed ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (label, level), (raw, frame, _threaded) in sorted(sizes.items()):
        mb = raw / 1e6
        compress = median_seconds(args.criterion, "compress", label, level)
        threaded = median_seconds(args.criterion, "compress_mt2", label, level)
        decompress = median_seconds(args.criterion, "decompress", label, level)
        if None in (compress, threaded, decompress):
            print(f"| {label} | {level} | missing criterion estimates |")
            continue
        wire = frame / link
        print(
            f"| {label} | {level} | {mb:.1f} | {raw / frame:.2f} | {mb / compress:.0f} "
            f"| {mb / threaded:.0f} | {mb / decompress:.0f} "
            f"| {compress * 1e3:.0f} ({threaded * 1e3:.0f}) "
            f"| {wire * 1e3:.0f} + {decompress * 1e3:.0f} = {(wire + decompress) * 1e3:.0f} "
            f"| {raw / link * 1e3:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
