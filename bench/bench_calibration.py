"""Time the grounded model's calibration: one fit, the held-out validation, bootstrap draws, and
predictions over every bootstrap draw at once.

Not a test: run `.venv/bin/python -m bench.bench_calibration [--draws N]` and read the table; numbers
and method are kept in bench/RESULTS-costmodel.md ("Calibration of the grounded model").
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    from collectives.costmodel import grounded as gm
    from study import calibration as cal
    from study.measurements import CALIBRATION_FILE, load_corpus, load_platforms, load_priors

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=10, help="bootstrap refits to time (default 10)")
    args = parser.parse_args(argv)

    rows = []
    t0 = time.perf_counter()
    platforms, priors = load_platforms(), load_priors()
    df = load_corpus(platforms=platforms)
    rows.append(
        (f"load {len(df)} published points, {len(platforms)} platforms", time.perf_counter() - t0, len(df))
    )
    t0 = time.perf_counter()
    full = cal.fit(df, platforms, priors)
    rows.append((f"fit {len(full.free)} free parameters to every source", time.perf_counter() - t0, 1))
    t0 = time.perf_counter()
    validation = cal.leave_one_source_out(df, platforms, priors)
    sources = validation.table["source_id"].nunique()
    rows.append((f"hold out each of {sources} sources (one fit each)", time.perf_counter() - t0, sources))
    t0 = time.perf_counter()
    cal.bootstrap(df, platforms, priors, full.theta, draws=args.draws, seed=0)
    rows.append((f"bootstrap: {args.draws} refits", time.perf_counter() - t0, args.draws))
    calibration = cal.load_calibration(CALIBRATION_FILE)
    draws = calibration.theta_draws()
    sizes = np.asarray([1 << k for k in range(10, 30)], dtype=float)
    t0 = time.perf_counter()
    count = 0
    for nodes in (2, 4, 8, 16, 32, 64, 128, 256):
        for algorithm in ("nccl", "nvrar"):
            out = gm.predict(platforms["perlmutter"], algorithm, nodes, 4, sizes, "graph", draws)
            count += out.size
    rows.append(
        ("predict nccl + nvrar, 8 node counts × 20 sizes × every draw", time.perf_counter() - t0, count)
    )

    width = max(len(r[0]) for r in rows)
    print(f"{'stage'.ljust(width)}  {'seconds':>8}  {'items':>8}  {'items/s':>10}")
    for label, seconds, items in rows:
        print(f"{label.ljust(width)}  {seconds:8.3f}  {items:8d}  {items / seconds:10,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
