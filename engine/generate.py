"""Build a rank's stage of the model and run greedy generation under the pipeline schedule.

Schedule (every rank walks the same (step, micro-batch) order, so blocking receives alone pipeline it):
step 0 is the prefill of each micro-batch, steps 1..decode_len-1 decode one token per sequence. For
micro-batch m of step t, stage 0 takes the prompt (t = 0) or the tokens that the last stage sampled for
m at step t-1, received point to point from the last stage; other stages receive stage s-1's activations;
each stage sends its output to stage s+1 with a non-blocking send, so stage s works on m+1 while s+1 works
on m. The last stage samples and sends the tokens back to stage 0. With M >= PP micro-batches the
decode pipeline stays full; with M = 1 it is a plain chain (the study's point: PP adds latency to decode).
Sends are completed at the end of each step. Each TP rank of a stage talks to the same TP rank of the
neighbouring stages; activations and tokens are replicated across a TP group, so nothing is broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from collectives.dtypes import FLOAT_DTYPES, torch_dtype
from engine.config import ModelArgs, RunConfig, cache_len, choose_decode_kernels, stage_layers
from engine.model import StageModel
from engine.parallel import Parallel, shard_of
from engine.timers import Timers
from engine.weights import load_weights

DTYPES = {name: torch_dtype(name) for name in FLOAT_DTYPES}


@dataclass
class Generation:
    """What one generate() call produced on this rank; tokens and logits only on the last stage."""

    tokens: torch.Tensor | None
    logits: list[torch.Tensor] = field(default_factory=list)
    ttft_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    e2e_ms: float = 0.0


class Engine:
    """One rank's stage: weights, static KV cache and the (optionally compiled) decode step."""

    def __init__(self, args: ModelArgs, par: Parallel, run: RunConfig) -> None:
        """`run` gives the shape of the work and the engine's switches (engine/flags.py); its dtype
        defaults to bf16 on GPUs and fp32 on CPUs, and `auto` decode kernels are chosen here unless
        the caller (engine.run) already chose."""
        lay = par.layout
        self.args, self.par = args, par
        self.batch_size, self.prompt_len, self.decode_len = run.batch_size, run.prompt_len, run.decode_len
        micro_batches = run.micro_batches
        self.micro_batches, self.mb_size = micro_batches, run.batch_size // micro_batches
        self.dtype = dtype = DTYPES[run.dtype or ("bf16" if par.device.type == "cuda" else "fp32")]
        layers = stage_layers(args.n_layers, lay.pp, run.pp_split)[lay.stage]
        shard = shard_of(args, lay.tp, lay.tp_rank, run.vocab_parallel)
        with torch.device("meta"):
            model = StageModel(args, layers, shard, par, run.vocab_parallel)
        model = model.to(dtype).to_empty(device=par.device)
        load_weights(model, seed=run.seed, folder=run.weights)
        kernels = run.decode_kernels
        self.decode_kernels = (
            choose_decode_kernels(kernels, par.device, self.mb_size) if kernels == "auto" else kernels
        )
        model.setup_cache(
            micro_batches, self.mb_size, cache_len(run.prompt_len, run.decode_len), self.decode_kernels
        )
        self.model = model.eval()
        self.weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.decode = None
        if run.compile:
            # One static graph per micro-batch (each has its own cache buffers): the micro-batch index must
            # stay a constant, never become a symbolic int, and each graph needs its own recompile slot.
            torch._dynamo.config.automatic_dynamic_shapes = False
            torch._dynamo.config.recompile_limit = max(
                torch._dynamo.config.recompile_limit, micro_batches + 8
            )
            self.decode = torch.compile(
                self._decode_step, mode="reduce-overhead" if run.cuda_graphs else None, fullgraph=True
            )

    def _decode_step(self, x: torch.Tensor, input_pos: torch.Tensor, mb: int) -> tuple[torch.Tensor, ...]:
        out = self.model(x, input_pos, mb)
        if self.model.output is None:
            return (out,)
        return out.argmax(-1), out

    def _run(self, x: torch.Tensor, input_pos: torch.Tensor | None, mb: int) -> tuple[torch.Tensor, ...]:
        if input_pos is not None and self.decode is not None:
            return tuple(t.clone() for t in self.decode(x, input_pos, mb))
        out = self.model(x, input_pos, mb)
        if self.model.output is None:
            return (out,)
        with self.par.region("sample", "compute"):
            return out.argmax(-1), out

    @torch.no_grad()
    def generate(
        self, prompts: torch.Tensor, timers: Timers | None = None, keep_logits: bool = False
    ) -> Generation:
        """Greedy generation of `decode_len` tokens per prompt; `prompts` [batch, prompt_len], every rank."""
        lay, par = self.par.layout, self.par
        timers = timers or Timers(par.device)
        m_count, mb = self.micro_batches, self.mb_size
        dev, dim = par.device, self.args.dim
        h_prefill = torch.empty(mb, self.prompt_len, dim, dtype=self.dtype, device=dev)
        h_decode = torch.empty(mb, 1, dim, dtype=self.dtype, device=dev)
        tok_buf = [torch.empty(mb, dtype=torch.long, device=dev) for _ in range(m_count)]
        prompts = prompts.to(dev)
        positions = self.model.positions
        last_tokens: list[torch.Tensor] = [torch.empty(0)] * m_count
        out_tokens: list[list[torch.Tensor]] = []
        gen = Generation(tokens=None)
        marks = []
        start = timers.mark()
        with timers.region("generate"):
            for step in range(self.decode_len):
                phase = "prefill" if step == 0 else "decode"
                par.phase(phase)
                # A slice of a tensor already on the device: no host-to-device copy stalls the stream.
                pos = None if step == 0 else positions[self.prompt_len + step - 1 : self.prompt_len + step]
                sends, row, row_logits = [], [], []
                with timers.region(phase):
                    for m in range(m_count):
                        if not lay.is_first:
                            x = par.recv_prev(h_prefill if step == 0 else h_decode)
                        elif step == 0:
                            x = prompts[m * mb : (m + 1) * mb]
                        elif lay.is_last:
                            x = last_tokens[m].view(mb, 1)
                        else:
                            x = par.recv_tokens_from_last(tok_buf[m]).view(mb, 1)
                        out = self._run(x, pos, m)
                        if not lay.is_last:
                            sends.append((par.send_next(out[0]), out[0]))
                            continue
                        last_tokens[m] = out[0]
                        row.append(out[0])
                        if keep_logits:
                            row_logits.append(out[1].clone())
                        if lay.pp > 1 and step < self.decode_len - 1:
                            sends.append((par.send_tokens_to_first(out[0]), out[0]))
                    for work, _ in sends:
                        work.wait()
                marks.append(timers.mark())
                if row:
                    out_tokens.append(row)
                if row_logits:
                    gen.logits.append(torch.cat(row_logits))
        if par.device.type == "cuda":
            torch.cuda.synchronize(par.device)
        gen.ttft_ms = timers.elapsed_ms(start, marks[0])
        gen.e2e_ms = timers.elapsed_ms(start, marks[-1])
        gen.step_ms = [timers.elapsed_ms(a, b) for a, b in zip(marks, marks[1:], strict=False)]
        if lay.is_last:
            gen.tokens = torch.stack([torch.cat(row) for row in out_tokens], dim=1)
        return gen
