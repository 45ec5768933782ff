"""Latency of one rcache C/C++ hit, as a whole process, against the compile it replaces.

Usage:
    python3 benches/harness/cc_latency.py [--rcache PATH] [--compiler gcc|clang|g++|clang++]
                                          [--hits N]

It writes two sources into a temp dir: a C file with a local header that includes a few libc
headers, and a C++ file that includes <vector>, <string>, <map> and <algorithm> (the case where
depend mode pays most: many system headers). For each, in the same run, it times:
- spawning /bin/true (the floor of any process-per-invocation wrapper);
- the compiler itself, `-O2 -c` (3 times);
- `rcache <compiler> ...` hitting (N times, after two runs that fill the cache and the memos).
The object is deleted before every timed run (untimed), as after `cargo clean`.
"""

import argparse
import json
import os
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
        stats = subprocess.run([rcache, "stats", "--json"], env=env, check=True,
                               capture_output=True, text=True).stdout
        print("rcache stats languages:", json.dumps(json.loads(stats)["languages"]))


if __name__ == "__main__":
    main()
