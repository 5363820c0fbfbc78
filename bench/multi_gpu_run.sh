#!/usr/bin/env bash
# One device call on a machine of two or more GPUs (kind nvidia-h200-x2 or larger), everything that needs
# several real GPUs, each step under its own time limit and logged to $OUT/multi.log:
#   1. the engine's TP=2 over NCCL gives TP=1's greedy tokens (4-layer 8B shape, fp32);
#   2. Llama-3.1-8B bf16 decode at TP=2 with each decode all-reduce (nccl, one-shot, two-shot, nvrar);
#   3. NVRAR correctness with one PE per GPU (1x2: intra-node path over NVLink; 2x1: inter-node path);
#   4. collectives.bench of nccl, nvrar, one-shot and two-shot across the GPUs, plain and in CUDA graphs
#      (in place, maximum over ranks: the conventions of the tables in bench/RESULTS-collectives.md).
# Usage: OUT=dir bench/multi_gpu_run.sh   (from the repository root)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/multi}; mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
export NVSHMEM_DISABLE_NVLS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LOG=$OUT/multi.log
N=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
step() { echo "== $*" | tee -a "$LOG"; }
{
  nvidia-smi --query-gpu=index,name,clocks.sm,clocks.mem --format=csv
  nvidia-smi topo -m
} >>"$LOG" 2>&1
TR="python3 -m torch.distributed.run --standalone --nproc-per-node"

step "1. engine TP=1 vs TP=2 (nccl), fp32, greedy tokens"
ARGS="--model llama3.1-8b-4l --dtype fp32 --batch-size 4 --prompt-len 64 --decode-len 32 --warmup 0"
CUDA_VISIBLE_DEVICES=0 timeout 60 python3 -m engine.run $ARGS --results "$OUT/tp1.json" --tokens-out "$OUT/tp1.txt" \
  >>"$LOG" 2>&1
timeout 90 $TR 2 -m engine.run $ARGS --tp 2 --allreduce nccl --results "$OUT/tp2.json" --tokens-out "$OUT/tp2.txt" \
  >>"$LOG" 2>&1
if cmp -s "$OUT/tp1.txt" "$OUT/tp2.txt"; then step "TP2 tokens == TP1 tokens"; else step "TP2 TOKENS DIFFER"; fi

step "2. Llama-3.1-8B bf16 TP=2 decode, batch 1, prompt 512, decode 128, compiled with CUDA graphs"
for ar in nccl one-shot two-shot nvrar; do
  timeout 150 $TR 2 -m engine.run --model llama3.1-8b --tp 2 --batch-size 1 --prompt-len 512 --decode-len 128 \
    --compile --allreduce "$ar" --results "$OUT/tp2-$ar.json" >>"$LOG" 2>&1 || step "engine tp2 $ar FAILED ($?)"
  grep -h "engine.run:" "$LOG" | tail -1
done

step "3. NVRAR correctness, one PE per GPU"
NVRAR_TOPOLOGIES="1x$N ${N}x1" NVRAR_SKIP_TIMEOUT_TEST=1 NVRAR_CHECK_TIMEOUT=90 \
  tools/nvrar_check.sh full --dtypes bf16,fp16,fp32 --calls 16 --graph-calls 4 2>&1 | tee -a "$LOG"

step "4. collectives.bench across $N GPUs"
export NVSHMEM_REMOTE_TRANSPORT=none
for mode in plain graphs; do
  extra=(); [ "$mode" = graphs ] && extra=(--graphs --graph-calls 50)
  MASTER_PORT=$((29000 + RANDOM % 500)) timeout 150 mpirun --oversubscribe -n "$N" -x PYTHONPATH -x PYTHONUNBUFFERED \
    -x NVSHMEM_DISABLE_NVLS -x NVSHMEM_REMOTE_TRANSPORT -x MASTER_PORT -x NCCL_NVLS_ENABLE \
    -x TORCH_SYMM_MEM_DISABLE_MULTICAST python3 -m collectives.bench -b 8K -e 16M -f 2 -n 200 -w 50 \
    --algo nccl,nvrar,one-shot,two-shot --dtype bf16 -a 3 --in-place --gpus-per-node "$N" "${extra[@]}" \
    --results "$OUT/coll-$mode.json" 2>&1 | tee -a "$LOG" || step "collectives.bench $mode FAILED"
done
