"""The engine's parameters, defined once: `python -m engine.run`'s flags, the run configuration
(engine.config.RunConfig) and the harness's parameter table (study/parameters.py PARAMETERS["inference"])
are all made from FLAGS.

Plain data and the standard library only (no torch): study/ reads this module to check experiment
files, and the engine builds its parser and its RunConfig from it. A flag with a `study` name is a
parameter an experiment may set; jobs/templates/commands/inference.j2 renders each such parameter to
its flag, and tests/test_flags.py renders every one of them and parses the line with the engine's own
parser, so a parameter cannot name a flag the engine does not take.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from collectives.dtypes import FLOAT_DTYPES

DECODE_KERNELS = ("auto", "torch", "attention", "fused")


def int_list(text: str) -> list[int]:
    """`--pp-split 3,3,2`: layers per stage."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from exc


@dataclass(frozen=True)
class Flag:
    """One engine parameter.

    `kind`: `value` (takes an argument of `type`), `switch` (present or not, default off) or
    `negatable` (`--x` / `--no-x`). `minimum` bounds an integer; `choices` lists the accepted words;
    `study` is the experiment parameter's name (None: the harness never sets it from an experiment).
    """

    name: str  # the RunConfig field; the flag is --name with '_' as '-'
    default: Any
    help: str
    kind: str = "value"
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    study: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


FLAGS: tuple[Flag, ...] = (
    Flag(
        "model",
        "tiny",
        "preset name (llama3.1-8b, llama3.1-70b, llama3.1-405b, tiny…)",
        study="model",
    ),
    Flag(
        "weights",
        None,
        "Hugging Face checkpoint folder (config.json + *.safetensors); its config.json sets the shape",
        study="weights",
    ),
    Flag("tp", 1, "tensor-parallel degree (contiguous ranks)", type=int, minimum=1, study="tp"),
    Flag("pp", 1, "pipeline stages", type=int, minimum=1, study="pp"),
    Flag(
        "pp_split", None, "layers per stage, comma-separated (default: even, remainder first)", type=int_list
    ),
    Flag(
        "micro_batches",
        1,
        "micro-batches per step (divides --batch-size)",
        type=int,
        minimum=1,
        study="micro_batches",
    ),
    Flag("batch_size", 1, "sequences per step", type=int, minimum=1, study="batch_size"),
    Flag("prompt_len", 16, "prompt tokens per sequence", type=int, minimum=1, study="prompt_len"),
    Flag(
        "decode_len",
        8,
        "tokens generated per prompt (the first by prefill)",
        type=int,
        minimum=1,
        study="decode_len",
    ),
    Flag("prompt_file", None, "token ids, one prompt a line (else random ids from --seed)"),
    Flag(
        "allreduce",
        None,
        "decode all-reduce: nccl, gloo, nvrar, one-shot, two-shot, reference "
        "(default: the process group's backend)",
        study="allreduce",
    ),
    Flag("prefill_allreduce", None, "prefill all-reduce (default: the process group's backend)"),
    Flag("vocab_parallel", False, "shard the LM head over TP ranks", kind="switch"),
    Flag("dtype", None, "default bf16 on GPUs, fp32 on CPUs", choices=FLOAT_DTYPES, study="dtype"),
    Flag("device", None, "default cuda when available", choices=("cuda", "cpu")),
    Flag("compile", False, "torch.compile the decode step", kind="negatable", study="compile"),
    Flag(
        "cuda_graphs",
        True,
        "with --compile: mode reduce-overhead (CUDA graphs)",
        kind="negatable",
        study="cuda_graphs",
    ),
    Flag(
        "decode_kernels",
        "auto",
        "decode step: torch (SDPA, cuBLAS), attention (our Triton decode attention), fused (also our "
        "matrix-vector products for the attention-output and down projections, SwiGLU and residual adds "
        "fused in; up to 16 sequences per micro-batch); auto = fused for one sequence per micro-batch and "
        "attention for more on GPUs with Triton, torch elsewhere",
        choices=DECODE_KERNELS,
        study="decode_kernels",
    ),
    Flag(
        "breakdown",
        False,
        "time each part of a layer (eager; max/mean over ranks)",
        kind="switch",
        study="breakdown",
    ),
    Flag("seed", 0, "seed of random weights and prompts", type=int, minimum=0, study="seed"),
    Flag(
        "warmup",
        1,
        "untimed generate passes first (compile, caches)",
        type=int,
        minimum=0,
        study="warmup",
    ),
    Flag("gpus_per_node", None, "ranks per node (default: from the launcher)", type=int, minimum=1),
    Flag("results", None, "results.json path (default: $STUDY_RESULTS, else ./results.json)"),
)
BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}
# What the command line takes that is not part of the run's configuration (where outputs go).
OUTPUT_FLAGS = (Flag("tokens_out", None, "write the generated token ids here, one sequence a line (rank 0)"),)
# Fields of RunConfig kept out of a result's `params` (a path, not a parameter of the run).
NOT_PARAMS = ("results",)


def add_flags(
    parser: argparse.ArgumentParser,
    only: tuple[str, ...] | None = None,
    helps: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> argparse.ArgumentParser:
    """The flags of FLAGS and OUTPUT_FLAGS on `parser`, in table order: all of them, or those named in
    `only` (an external engine's runner takes the ones whose meaning it shares), with its own words and
    defaults where its engine differs."""
    for flag in (*FLAGS, *OUTPUT_FLAGS):
        if only is not None and flag.name not in only:
            continue
        flag = replace(
            flag,
            help=(helps or {}).get(flag.name, flag.help),
            default=(defaults or {}).get(flag.name, flag.default),
        )
        if flag.kind == "switch":
            parser.add_argument(flag.option, action="store_true", help=flag.help)
        elif flag.kind == "negatable":
            parser.add_argument(
                flag.option, action=argparse.BooleanOptionalAction, default=flag.default, help=flag.help
            )
        else:
            parser.add_argument(
                flag.option, type=flag.type, default=flag.default, choices=flag.choices, help=flag.help
            )
    return parser


def study_parameters() -> dict[str, Flag]:
    """Experiment parameter name -> its flag, for the parameters an experiment may set."""
    return {f.study: f for f in FLAGS if f.study}
