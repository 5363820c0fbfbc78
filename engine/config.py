"""Model shapes (named presets or a Hugging Face config.json) and the run configuration with its checks.

Every check here runs before torch.distributed starts or any tensor is allocated, so a bad combination
of arguments costs nothing but an error naming the argument (exit code 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from engine.flags import DECODE_KERNELS, FLAGS, NOT_PARAMS


class ConfigError(ValueError):
    """Bad input: `key` names the argument or the file and key; the command line exits with code 2."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


LLAMA31_ROPE_SCALING = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


@dataclass(frozen=True)
class ModelArgs:
    """Shape of a Llama-family decoder; names follow the published Llama-3.1 configuration."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int = 128256
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: dict[str, float] | None = field(default_factory=lambda: dict(LLAMA31_ROPE_SCALING))
    head_dim: int = 0
    max_seq_len: int = 131072
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        for f in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "head_dim"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"model.{f}", f"must be positive, got {getattr(self, f)}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError("model.n_kv_heads", f"{self.n_kv_heads} does not divide n_heads {self.n_heads}")

    def weight_count(self) -> int:
        """Parameters of the whole model: embedding, layers, final norm and (untied) head."""
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        layer = attn + 3 * self.dim * self.ffn_dim + 2 * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * layer + self.dim + head


PRESETS_FILE = Path(__file__).with_name("presets.json")


def _load_presets() -> dict[str, ModelArgs]:
    """The named shapes of engine/presets.json, which the cost model reads too (one table)."""
    data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    return {name: ModelArgs(**fields_) for name, fields_ in data["presets"].items()}


PRESETS: dict[str, ModelArgs] = _load_presets()


def model_args_from_hf(folder: str | Path) -> ModelArgs:
    """Shape from a Hugging Face `config.json` (Llama architecture; rope in either spelling)."""
    path = Path(folder) / "config.json"
    try:
        cfg: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("--weights", f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("--weights", f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    scaling = None
    if rope.get("rope_type", rope.get("type")) == "llama3":
        scaling = {k: float(rope[k]) for k in LLAMA31_ROPE_SCALING}
    elif rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"{path}: rope_parameters.rope_type", f"unsupported {rope.get('rope_type')!r}")
    try:
        return ModelArgs(
            dim=int(cfg["hidden_size"]),
            n_layers=int(cfg["num_hidden_layers"]),
            n_heads=int(cfg["num_attention_heads"]),
            n_kv_heads=int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
            ffn_dim=int(cfg["intermediate_size"]),
            vocab_size=int(cfg["vocab_size"]),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
            rope_theta=theta,
            rope_scaling=scaling,
            head_dim=int(cfg.get("head_dim") or 0),
            max_seq_len=int(cfg.get("max_position_embeddings", 131072)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: {exc.args[0]}", "missing") from exc


def _as_params(self: Any) -> dict[str, Any]:
    """The run's parameters as results.json records them (every field but where the results go)."""
    return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_PARAMS}


# One engine run, as given on the command line: one field per flag of engine/flags.py FLAGS, with the
# flag's default (docs/internals.md lists the flags).
RunConfig = make_dataclass(
    "RunConfig",
    [(f.name, Any, field(default=f.default)) for f in FLAGS],
    namespace={"as_params": _as_params, "__doc__": "One engine run: a field per flag of engine/flags.py."},
)


def choose_decode_kernels(choice: str, device: Any, rows: int) -> str:
    """What `--decode-kernels` means here: `torch`, `attention` or `fused` (engine/kernels.py).

    auto takes `fused` on a GPU with Triton for one sequence per micro-batch (where it was measured
    faster), `attention` for more, and `torch` elsewhere; `fused` takes up to 16 sequences.
    """
    from engine import kernels

    if choice not in DECODE_KERNELS:
        raise ConfigError("--decode-kernels", f"{choice!r} is not one of {', '.join(DECODE_KERNELS)}")
    ok, why = kernels.available(device)
    if choice == "auto":
        if not ok or device.type != "cuda":
            return "torch"
        return "fused" if rows <= kernels.MATVEC_FAST_ROWS else "attention"
    if choice != "torch" and not ok:
        raise ConfigError("--decode-kernels", f"{choice} is not available here: {why}")
    if choice == "fused" and rows > kernels.MATVEC_MAX_ROWS:
        raise ConfigError(
            "--decode-kernels",
            f"fused takes at most {kernels.MATVEC_MAX_ROWS} sequences per micro-batch, got {rows} "
            "(use attention, or more micro-batches)",
        )
    return choice


def resolve_model(cfg: RunConfig) -> ModelArgs:
    """The model shape: a preset by name, or the config.json of --weights (which then wins)."""
    if cfg.weights:
        return model_args_from_hf(cfg.weights)
    if cfg.model not in PRESETS:
        raise ConfigError(
            "--model",
            f"unknown model {cfg.model!r}; known: {', '.join(PRESETS)} "
            "(or give --weights DIR with a Hugging Face checkpoint)",
        )
    return PRESETS[cfg.model]


def stage_layers(n_layers: int, pp: int, split: list[int] | None) -> list[range]:
    """Layers of each pipeline stage: `split` as given, else even with the remainder on early stages."""
    if split is None:
        base, extra = divmod(n_layers, pp)
        split = [base + (1 if s < extra else 0) for s in range(pp)]
    ranges, start = [], 0
    for count in split:
        ranges.append(range(start, start + count))
        start += count
    return ranges


def _check_flags(cfg: Any) -> None:
    """Each value against its flag's own bounds (FLAGS), for configurations not made by the parser."""
    for flag in FLAGS:
        value = getattr(cfg, flag.name)
        if value is None:
            continue
        if flag.minimum is not None and value < flag.minimum:
            raise ConfigError(flag.option, f"must be at least {flag.minimum}, got {value}")
        if flag.choices is not None and value not in flag.choices:
            raise ConfigError(flag.option, f"expected one of {', '.join(flag.choices)}, got {value!r}")


def validate(cfg: RunConfig, args: ModelArgs, world_size: int) -> None:
    """Refuse every combination the engine cannot run, naming the argument; allocates nothing."""
    _check_flags(cfg)
    if cfg.tp * cfg.pp != world_size:
        raise ConfigError(
            "--tp/--pp",
            f"tp {cfg.tp} x pp {cfg.pp} = {cfg.tp * cfg.pp} but the launcher started {world_size} rank(s)",
        )
    if args.n_heads % cfg.tp:
        raise ConfigError("--tp", f"{cfg.tp} does not divide the {args.n_heads} attention heads")
    if cfg.tp > args.n_kv_heads and cfg.tp % args.n_kv_heads:
        raise ConfigError(
            "--tp", f"{cfg.tp} is above the {args.n_kv_heads} KV heads and not a multiple of it"
        )
    if cfg.tp <= args.n_kv_heads and args.n_kv_heads % cfg.tp:
        raise ConfigError("--tp", f"{cfg.tp} does not divide the {args.n_kv_heads} KV heads")
    if args.ffn_dim % cfg.tp:
        raise ConfigError("--tp", f"{cfg.tp} does not divide the MLP width {args.ffn_dim}")
    if cfg.vocab_parallel and args.vocab_size % cfg.tp:
        raise ConfigError("--vocab-parallel", f"tp {cfg.tp} does not divide the vocabulary {args.vocab_size}")
    if cfg.pp > args.n_layers:
        raise ConfigError("--pp", f"{cfg.pp} stages but the model has only {args.n_layers} layers")
    if cfg.pp_split is not None:
        if (
            len(cfg.pp_split) != cfg.pp
            or any(n < 1 for n in cfg.pp_split)
            or sum(cfg.pp_split) != args.n_layers
        ):
            raise ConfigError(
                "--pp-split",
                f"{cfg.pp_split} must be {cfg.pp} positive layer counts summing to {args.n_layers}",
            )
    if cfg.batch_size % cfg.micro_batches:
        raise ConfigError(
            "--micro-batches", f"{cfg.micro_batches} does not divide --batch-size {cfg.batch_size}"
        )
    if cfg.prompt_len + cfg.decode_len > args.max_seq_len:
        raise ConfigError(
            "--prompt-len",
            f"prompt {cfg.prompt_len} + decode {cfg.decode_len} exceeds the "
            f"model's {args.max_seq_len} positions",
        )
    if cfg.breakdown and cfg.compile:
        raise ConfigError("--breakdown", "times each part of a layer eagerly; run it with --no-compile")


def read_prompt_file(path: str | Path, batch_size: int, prompt_len: int, vocab_size: int) -> list[list[int]]:
    """Prompts as token ids, one prompt a line, whitespace-separated; all of one length."""
    prompts: list[list[int]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("--prompt-file", f"{path}: cannot read: {exc.strerror or exc}") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ids = [int(tok) for tok in line.split()]
        except ValueError as exc:
            raise ConfigError(f"{path}:{lineno}", f"not a list of integer token ids: {exc}") from exc
        if len(ids) != prompt_len:
            raise ConfigError(f"{path}:{lineno}", f"{len(ids)} tokens, expected --prompt-len {prompt_len}")
        if any(not 0 <= t < vocab_size for t in ids):
            raise ConfigError(f"{path}:{lineno}", f"token id outside the vocabulary [0, {vocab_size})")
        prompts.append(ids)
    if len(prompts) != batch_size:
        raise ConfigError(
            "--prompt-file", f"{path}: {len(prompts)} prompts, expected --batch-size {batch_size}"
        )
    return prompts


def cache_len(prompt_len: int, decode_len: int) -> int:
    """KV-cache positions: prompt plus generated tokens, rounded up to 16 for aligned kernels."""
    return int(math.ceil((prompt_len + decode_len) / 16) * 16)
