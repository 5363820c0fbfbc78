"""Mutation fuzzing of the shipped experiment files: 10,000 cases, counts by outcome and mutation.

Not a test: run `python -m bench.bench_fuzz [--cases N] [--seed S]` and read the table. Each case
(bench/mutations.py) is one shipped experiment file with one mutation, checked with `study validate`
in this process under a 20 s alarm. Target: 0 `traceback`, 0 `hang`, 0 `unlocated` (an error that
names no FILE:LINE). The slowest case is printed too: bounded work means no case comes near the
alarm. Numbers are kept in bench/RESULTS-running.md.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mutations import MUTATIONS, case_from_random, run_case  # noqa: E402

OUTCOMES = ("ok", "located", "unlocated", "traceback", "hang")
BAD = ("unlocated", "traceback", "hang")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    table: dict[str, collections.Counter] = {m: collections.Counter() for m in MUTATIONS}
    examples: list[str] = []
    slowest = (0.0, None)
    started = time.perf_counter()
    for _ in range(args.cases):
        case = case_from_random(rng)
        t0 = time.perf_counter()
        _, outcome, message = run_case(case)
        took = time.perf_counter() - t0
        if took > slowest[0]:
            slowest = (took, case)
        table[case.mutation][outcome] += 1
        if outcome in BAD and len(examples) < 20:
            examples.append(f"{outcome}: {case}: {message}")
    wall = time.perf_counter() - started
    print(f"{args.cases:,} mutated experiment files, seed {args.seed}, `study validate` in process")
    print(f"{'mutation':<12}" + "".join(f"{o:>11}" for o in OUTCOMES))
    totals: collections.Counter = collections.Counter()
    for mutation in MUTATIONS:
        row = table[mutation]
        totals.update(row)
        print(f"{mutation:<12}" + "".join(f"{row[o]:>11,}" for o in OUTCOMES))
    print(f"{'all':<12}" + "".join(f"{totals[o]:>11,}" for o in OUTCOMES))
    per_case_ms = 1e3 * wall / max(1, args.cases)
    print(f"wall {wall:.1f} s ({per_case_ms:.1f} ms a case); slowest {slowest[0]:.2f} s: {slowest[1]}")
    for line in examples:
        print(line)
    bad = sum(totals[o] for o in BAD)
    verdict = "met" if not bad else f"NOT met ({bad})"
    print(f"target 0 tracebacks, 0 hangs, 0 errors without file:line: {verdict}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
