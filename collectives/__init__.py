"""NVRAR and the all-reduce family: schedules, the CPU reference, the GPU build, the benchmark, the cost model.

Runs on compute nodes with torch alone (numpy, mpi4py optional); never imports pydantic or study/
beyond the results contract.
"""
