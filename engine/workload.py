"""The workload every engine runs alike: prompts as token ids, drawn from a seed or read from a file.

The bundled engine and the runners of external engines (engine/external/) take their prompts from
here, so one experiment point means the same token ids for every engine.
"""

from __future__ import annotations

import math
from typing import Any


def random_prompts(batch_size: int, prompt_len: int, vocab_size: int, seed: int) -> Any:
    """Prompt token ids drawn on the CPU from `seed` (a torch tensor [batch, prompt_len]), so every
    rank, every device and every engine sees the same ones."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch_size, prompt_len), generator=gen)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default) without needing numpy."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
