"""The bundled inference engine: Llama-family models with tensor, pipeline and hybrid parallelism.

Runs on compute nodes with torch alone (numpy optional); it talks to the harness only through its
command line (`python -m engine.run`) and `results.json`, written through `study/results.py`.

Modules: `flags` (the engine's parameters in one table, from which the command line, the run
configuration and the harness's parameter checks are made), `config` (model presets, the run
configuration and its checks), `model` (one pipeline stage of one tensor-parallel shard), `parallel`
(process groups, all-reduce, point to point: every line that knows about other ranks), `weights`
(random shard-by-shard weights, safetensors checkpoints), `generate` (prefill / decode schedule and
greedy sampling), `timers` (CUDA-event timer tree), `run` (command line), `workload` (the prompts,
shared with the runners of external engines in `external/`).
"""
