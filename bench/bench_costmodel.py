"""Time the cost model: profile building per topology, and vectorised evaluation of a million configurations.

Not a test: run `.venv/bin/python -m bench.bench_costmodel` and read the table; numbers and method are
kept in bench/RESULTS-costmodel.md. A configuration is one (algorithm, topology, message size,
parameter set); the parameter sets are a random sample around Perlmutter-like values, as a sensitivity
or uncertainty study would draw them.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    from collectives import costmodel as cm

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--max-nodes", type=int, default=1024)
    parser.add_argument("--sizes", type=int, default=20, help="message sizes, doubling from 1 KiB")
    parser.add_argument("--param-sets", type=int, default=1000)
    args = parser.parse_args(argv)

    nodes = [1 << k for k in range(0, args.max_nodes.bit_length()) if 1 << k <= args.max_nodes]
    rows = []
    t0 = time.perf_counter()
    for algorithm in cm.ALGORITHMS:
        t = time.perf_counter()
        for n in nodes:
            cm.profile(algorithm, n, args.gpus_per_node)
        rows.append(
            (
                f"profiles: {algorithm}, {len(nodes)} node counts up to {nodes[-1]}",
                time.perf_counter() - t,
                len(nodes),
            )
        )
    rows.append(("profiles: all", time.perf_counter() - t0, len(nodes) * len(cm.ALGORITHMS)))

    rng = np.random.default_rng(0)
    k = args.param_sets
    params = {
        "alpha_intra_us": rng.uniform(0.5, 2.0, k),
        "beta_intra_GBps": rng.uniform(50, 300, k),
        "gamma_intra_GBps": rng.uniform(300, 1000, k),
        "alpha_inter_us": rng.uniform(1.0, 5.0, k),
        "beta_inter_GBps": rng.uniform(10, 50, k),
        "gamma_inter_GBps": rng.uniform(300, 1000, k),
        "eta": rng.uniform(1.0, 2.0, k),
    }
    sizes = (1024.0 * 2.0 ** np.arange(args.sizes))[:, None]
    configs = 0
    t = time.perf_counter()
    for algorithm in cm.MODELS:
        for n in nodes:
            out = cm.predict(algorithm, n, args.gpus_per_node, sizes, params)
            configs += out.size
    elapsed = time.perf_counter() - t
    rows.append(
        (
            f"evaluate: {len(cm.MODELS)} models × {len(nodes)} topologies × {args.sizes} sizes × {k} params",
            elapsed,
            configs,
        )
    )

    t = time.perf_counter()
    base = cm.CostParams(cm.LinkParams(1.0, 100.0, 500.0), cm.LinkParams(2.0, 25.0, 500.0), 2.0)
    for n in nodes:
        cm.elasticities("nvrar", n, args.gpus_per_node, sizes[:, 0], base)
    rows.append(
        (
            f"elasticities: nvrar, {len(nodes)} topologies × {args.sizes} sizes × 7 parameters",
            time.perf_counter() - t,
            len(nodes) * args.sizes,
        )
    )

    width = max(len(r[0]) for r in rows)
    print(f"{'stage'.ljust(width)}  {'seconds':>8}  {'items':>10}  {'items/s':>12}")
    for label, seconds, items in rows:
        print(f"{label.ljust(width)}  {seconds:8.3f}  {items:10d}  {items / seconds:12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
