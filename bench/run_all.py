"""Run every CPU benchmark in turn and print each one's table; GPU benchmarks are listed, not run.

Each benchmark prints its own table and documents its method; the numbers kept for the record live in
bench/RESULTS.md. GPU benchmarks need the GPU machine (see bench/RESULTS.md for how they were run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not p.stem.endswith("_gpu"))
    gpu = sorted(p.name for p in HERE.glob("*_gpu.py"))
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], cwd=ROOT)
        print(
            f"--- {script.stem}: exit {done.returncode}, {time.perf_counter() - start:.1f} s wall", flush=True
        )
        if done.returncode != 0:
            failed.append(script.stem)
    if gpu:
        print("\nGPU benchmarks (run them on a GPU machine): " + ", ".join(gpu))
    ran = len(scripts) - len(failed)
    print(f"\n{ran} of {len(scripts)} CPU benchmarks ran; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
