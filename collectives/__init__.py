"""NVRAR and the all-reduce family: schedules, CPU reference, GPU build, benchmark, cost model.

Runs on compute nodes with torch alone (numpy, mpi4py optional); never imports pydantic or study/
beyond the results contract.
"""
