"""Benchmarks: speed is measured here, never in tests. `make bench` runs the CPU ones (bench/run_all.py)."""
