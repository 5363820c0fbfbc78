#!/usr/bin/env bash
# The engine benchmark on an H200 machine, in one go (about 7-9 minutes):
#   the engine at batch 1/16/64 (torch.compile + CUDA graphs, --decode-kernels auto) and at batch 1 with
#   torch's kernels, the decode kernels alone (attention, matvec), Hugging Face generate at the same batches,
#   the breakdown timers' overhead, the GPU's read bandwidth and bf16 matmul rate;
#   with 2 GPUs, Hugging Face runs on the second one meanwhile. Runs that need several GPUs (TP=2
#   against TP=1, all-reduces across GPUs) are in bench/multi_gpu_run.sh.
# Usage: bench/bench_engine_gpu.sh OUTDIR   (run from the repository root; PYTHONPATH is set here)
set -u
OUT=${1:?usage: bench/bench_engine_gpu.sh OUTDIR}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-python3}
B="$PY bench/bench_engine_gpu.py"
LOG=$OUT/bench.log
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
cat "$OUT/table.txt"
