#!/usr/bin/env bash
# One device call: full-dtype NVRAR correctness on two virtual topologies, then collectives.bench runs of
# nvrar with 2 PEs sharing one GPU (1x2: intra-node path, 2x1: inter-node path; plain and in CUDA graphs).
# Everything shares one GPU: the times the bench prints say nothing about any network.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
export NVSHMEM_DISABLE_NVLS=1 NVSHMEM_REMOTE_TRANSPORT=none OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NVRAR_TOPOLOGIES="3x2 2x4" NVRAR_SKIP_TIMEOUT_TEST=1 NVRAR_CHECK_TIMEOUT=150 \
  tools/nvrar_check.sh full --dtypes fp16,fp32 --calls 32 --graph-calls 4
bench() {
  local name="$1"; shift
  MASTER_PORT=$((29000 + RANDOM % 500)) timeout 90 mpirun --oversubscribe -n 2 -x PYTHONPATH -x PYTHONUNBUFFERED \
    -x NVSHMEM_DISABLE_NVLS -x NVSHMEM_REMOTE_TRANSPORT -x MASTER_PORT \
    python3 -m collectives.bench -b 8K -e 4M -f 8 -n 40 -w 10 --algo nvrar --dtype bf16 -a 3 --in-place \
    --results "${OUT:-/tmp}/bench-$name.json" "$@" || echo "bench FAIL: $name"
}
bench 1x2 --gpus-per-node 2
bench 2x1 --gpus-per-node 1
bench 2x1-graphs --gpus-per-node 1 --graphs --graph-calls 20
