#!/usr/bin/env bash
# The engine benchmark on an H200 machine, in one go (about 7-9 minutes):
#   the engine at batch 1/16/64 (torch.compile + CUDA graphs, --decode-kernels auto) and at batch 1 with
#   torch's kernels, the decode kernels alone (attention, matvec), Hugging Face generate at the same batches,
#   the breakdown timers' overhead, the GPU's read bandwidth and bf16 matmul rate;
#   with 2 GPUs, Hugging Face runs on the second one meanwhile, and TP=2 over NCCL is checked against
#   TP=1 on a 4-layer model in fp32 (same greedy tokens).
# Usage: bench/bench_engine_gpu.sh OUTDIR   (run from the repository root; PYTHONPATH is set here)
set -u
OUT=${1:?usage: bench/bench_engine_gpu.sh OUTDIR}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-python3}
B="$PY bench/bench_engine_gpu.py"
LOG=$OUT/bench.log
TMP=$(mktemp -d)
GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=index,name,memory.used,clocks.sm,clocks.mem --format=csv >>"$LOG" 2>&1

hf() { timeout 100 $B hf --out "$OUT/hf.json"; }
if [ "$GPUS" -ge 2 ]; then
  CUDA_VISIBLE_DEVICES=1 hf >>"$OUT/hf.log" 2>&1 &
fi
{
  CUDA_VISIBLE_DEVICES=0 timeout 330 $B engine --batches 1,16,64 --out "$OUT/engine.json"
  CUDA_VISIBLE_DEVICES=0 timeout 120 $B engine --batches 1 --decode-kernels torch --out "$OUT/engine-torch.json"
  CUDA_VISIBLE_DEVICES=0 timeout 60 $B attention --out "$OUT/attention.json"
  CUDA_VISIBLE_DEVICES=0 timeout 90 $B matvec --batches 1 --out "$OUT/matvec.json"
  if [ "$GPUS" -lt 2 ]; then CUDA_VISIBLE_DEVICES=0 hf; fi
  CUDA_VISIBLE_DEVICES=0 timeout 45 $B overhead --batches 1 --decode-len 16 --out "$OUT/overhead.json"
  CUDA_VISIBLE_DEVICES=0 timeout 30 $B ceilings --out "$OUT/ceilings.json"
} >>"$LOG" 2>&1
wait
$B report "$OUT/ceilings.json" "$OUT/engine.json" "$OUT/hf.json" "$OUT/overhead.json" >"$OUT/table.txt" 2>&1

if [ "$GPUS" -ge 2 ]; then
  {
    echo "== TP=1 vs TP=2 (nccl), fp32, greedy tokens"
    ARGS="--model llama3.1-8b-4l --dtype fp32 --batch-size 4 --prompt-len 64 --decode-len 32 --warmup 0"
    CUDA_VISIBLE_DEVICES=0 timeout 40 $PY -m engine.run $ARGS --results "$TMP/tp1.json" --tokens-out "$TMP/tp1.txt"
    timeout 60 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m engine.run $ARGS --tp 2 \
      --allreduce nccl --results "$TMP/tp2.json" --tokens-out "$TMP/tp2.txt"
    if cmp -s "$TMP/tp1.txt" "$TMP/tp2.txt"; then echo "TP2 tokens == TP1 tokens"; else echo "TP2 TOKENS DIFFER"; fi
  } >>"$LOG" 2>&1
fi
cat "$OUT/table.txt"
