"""Fuzz the .sirz reader: seeded mutants of tiny real archives of every codec, each decoded in a
memory-limited worker process with a timeout. Prints a table of outcomes per base archive; exits 1 if any
case crashed (an exception other than ArchiveError, or a dead worker) or hung.

    python benchmarks/fuzz_archives.py --cases 20000 --seed 0

Mutations and outcomes: Testing/fuzzing.py.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

import fuzzing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000, help="in all, spread evenly over the base archives")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--memory", type=int, default=fuzzing.MEMORY_LIMIT >> 20, help="MiB of address space")
    args = parser.parse_args()
    archives = fuzzing.base_archives()
    workers = fuzzing.Workers(fuzzing.references(archives), args.memory << 20, trace=True)
    rng = random.Random(args.seed)
    rows = {name: collections.Counter() for name in archives}
    peaks, slowest, problems = collections.Counter(), collections.Counter(), []
    start = time.monotonic()
    try:
        for i in range(args.cases):
            name = list(archives)[i % len(archives)]
            case = fuzzing.mutate(name, archives[name], rng)
            outcome, detail, peak, seconds = workers.run(case, args.timeout)
            rows[name][outcome] += 1
            peaks[name], slowest[name] = max(peaks[name], peak), max(slowest[name], seconds)
            if outcome in ("crash", "hang"):
                problems.append(f"case {i} ({name}, {case.mutation}): {outcome}: {detail}")
            if (i + 1) % 1000 == 0:
                print(f"{i + 1} cases, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        workers.close()
    print(f"{args.cases} cases, seed {args.seed}, {time.monotonic() - start:.0f} s, timeout {args.timeout:g} s per "
          f"case, worker address space {args.memory} MiB\n")
    print("| base archive | bytes | cases | ArchiveError | same voxels | other valid volume | crashes | hangs "
          "| peak allocation | slowest case |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    total = collections.Counter()
    for name, counts in rows.items():
        total += counts
        print(f"| {name} | {len(archives[name]):,} | {sum(counts.values()):,} | {counts['error']:,} "
              f"| {counts['same']:,} | {counts['other']:,} | {counts['crash']} | {counts['hang']} "
              f"| {peaks[name] / 2**20:.1f} MiB | {slowest[name]:.2f} s |")
    print(f"| all | | {sum(total.values()):,} | {total['error']:,} | {total['same']:,} | {total['other']:,} "
          f"| {total['crash']} | {total['hang']} | {max(peaks.values()) / 2**20:.1f} MiB "
          f"| {max(slowest.values()):.2f} s |")
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
