"""Latency of one rcache C/C++ hit, as a whole process, against the compile it replaces.

Usage:
    python3 benches/harness/cc_latency.py [--rcache PATH] [--compiler gcc|clang|g++|clang++]
                                          [--hits N] [--misses N]

It writes two sources into a temp dir: a C file with a local header that includes a few libc
headers, and a C++ file that includes <vector>, <string>, <map> and <algorithm> (the case where
depend mode pays most: many system headers). For each, in the same run, it times:
- spawning /bin/true (the floor of any process-per-invocation wrapper);
- the compiler itself, `-O2 -c` (3 times);
- `rcache <compiler> ...` hitting (N times, after two runs that fill the cache and the memos).
The object is deleted before every timed run (untimed), as after `cargo clean`.

Then what a miss costs beyond the compiler: N pairs of the same compile, each pair with a new
`-DRCACHE_BENCH_RUN=<n>` (a new key), the plain compiler and `rcache <compiler>` in alternating
order. It prints the median of the pairs' differences, and the wrapper's own time before and
after the compile from its `RCACHE_LOG=debug` lines (stamped from the process's start), which
the machine's other load moves far less than it moves a whole compile.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

C_SOURCE = """#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "local.h"
int twice(int x) { return x * FACTOR; }
int main(int argc, char **argv) { printf("%d %s\\n", twice(argc), strchr(argv[0], '/')); return 0; }
"""

CXX_SOURCE = """#include <algorithm>
#include <map>
#include <string>
#include <vector>
#include "local.h"
int count(const std::vector<std::string> &words) {
    std::map<std::string, int> seen;
    for (const auto &w : words) seen[w] += FACTOR;
    return std::count_if(seen.begin(), seen.end(), [](auto &p) { return p.second > 1; });
}
"""


def timed(argv, cwd, env, before=None):
    if before:
        before()
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rcache", default=str(REPO / "target/release/rcache"))
    parser.add_argument("--compiler", default=None,
                        help="one compiler; default: gcc for C and g++ for C++, then clang/clang++")
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--misses", type=int, default=20)
    args = parser.parse_args()
    rcache = str(Path(args.rcache).resolve())

    with tempfile.TemporaryDirectory(prefix="rcache-cc-latency-") as tmp:
        work = Path(tmp)
        (work / "local.h").write_text("#define FACTOR 2\n")
        (work / "main.c").write_text(C_SOURCE)
        (work / "words.cpp").write_text(CXX_SOURCE)
        env = dict(os.environ)
        env["RCACHE_DIR"] = str(work / "store")
        for name in [n for n in env if n.startswith("RCACHE_") and n != "RCACHE_DIR"]:
            del env[name]
        cases = [("gcc", "main.c"), ("g++", "words.cpp"), ("clang", "main.c"),
                 ("clang++", "words.cpp")]
        if args.compiler:
            cases = [c for c in cases if c[0] == args.compiler]
        floor = statistics.median(timed(["/bin/true"], work, env) for _ in range(20))
        print(f"spawn /bin/true: {floor:.2f} ms (median of 20)")
        print(f"{'compiler':<9} {'source':<10} {'compile ms':>11} {'hit ms':>8} {'hit p90':>8}  speed-up")
        for compiler, source in cases:
            obj = work / "out.o"
            argv = [compiler, "-O2", "-c", source, "-o", str(obj)]
            remove = lambda: obj.unlink(missing_ok=True)  # noqa: E731
            compile_ms = statistics.median(timed(argv, work, env, remove) for _ in range(3))
            for _ in range(2):
                timed([rcache, *argv], work, env, remove)
            hits = sorted(timed([rcache, *argv], work, env, remove) for _ in range(args.hits))
            hit = statistics.median(hits)
            p90 = hits[int(len(hits) * 0.9) - 1]
            print(f"{compiler:<9} {source:<10} {compile_ms:>11.1f} {hit:>8.2f} {p90:>8.2f}"
                  f"  {compile_ms / hit:>6.0f}x")
        print(f"\nmisses, {args.misses} pairs each:")
        print(f"{'compiler':<9} {'source':<10} {'compile ms':>11} {'miss - compile':>15}"
              f" {'wrapper before':>15} {'wrapper after':>14}")
        for compiler, source in cases:
            miss_overhead(rcache, compiler, source, work, env, args.misses)
        stats = subprocess.run([rcache, "stats", "--json"], env=env, check=True,
                               capture_output=True, text=True).stdout
        print("rcache stats languages:", json.dumps(json.loads(stats)["languages"]))


def miss_overhead(rcache, compiler, source, work, env, pairs):
    """Prints one line: medians of a miss's cost beyond the compiler, over `pairs` pairs."""
    debug_env = dict(env, RCACHE_LOG="rcache=debug")
    plain, differences, before, after = [], [], [], []
    for n in range(pairs):
        argv = [compiler, "-O2", "-c", source, "-o", str(work / "miss.o"),
                f"-DRCACHE_BENCH_RUN={n}"]
        runs = [("plain", argv), ("rcache", [rcache, *argv])]
        times = {}
        for name, command in (runs if n % 2 else runs[::-1]):
            start = time.perf_counter()
            done = subprocess.run(command, cwd=work, env=debug_env, check=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times[name] = (time.perf_counter() - start) * 1000.0
            if name == "rcache":
                ran = re.search(r"([\d.]+)s DEBUG the program ran .*compile_ms=(\d+)", done.stderr)
                end = re.search(r"([\d.]+)s DEBUG done outcome=\"miss\"", done.stderr)
                if not (ran and end):
                    raise SystemExit(f"rcache {compiler} {source}: not a miss:\n{done.stderr}")
                ran_s, compile_ms = float(ran.group(1)), int(ran.group(2))
                before.append(ran_s * 1000.0 - compile_ms)
                after.append((float(end.group(1)) - ran_s) * 1000.0)
        plain.append(times["plain"])
        differences.append(times["rcache"] - times["plain"])
    median = statistics.median
    print(f"{compiler:<9} {source:<10} {median(plain):>11.1f} {median(differences):>12.2f} ms"
          f" {median(before):>12.2f} ms {median(after):>11.2f} ms")


if __name__ == "__main__":
    main()
