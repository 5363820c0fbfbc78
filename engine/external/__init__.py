"""Runners for external inference engines: one module per engine, run on the compute node.

Each runner (`python -m engine.external.<name>`) takes the same workload flags as `engine.run`
(model preset or checkpoint folder, tp, pp, batch, prompt and decode lengths, dtype, seed, prompt
file), imports its engine only when it runs, measures TTFT, TBT, E2E and tokens/s as close to the
bundled engine's definitions as the engine allows, and writes the same results.json through
study/results.py. It shares with the bundled engine only the workload (engine/workload.py: the
prompts; engine/config.py: model shapes and prompt files), never its model or kernels.
docs/engines.md says what is measured identically and how to add another engine.
"""
