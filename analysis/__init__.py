"""Analyses of a collected study: dataset loading, scaling, breakdowns, bottlenecks, figures, report.

Reads data only (the dataset and timers tables written by `study collect`, results.json files and
NCCL logs); never imports torch. Heavy libraries (pandas, matplotlib, hatchet) are imported by the
submodules that need them, so importing this package is cheap.
"""
