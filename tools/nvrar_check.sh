#!/usr/bin/env bash
# NVRAR correctness on one host: several NVSHMEM PEs per GPU arranged as virtual nodes (bench/nvrar_gpu.py).
# Usage: tools/nvrar_check.sh [quick|full] [extra args for bench/nvrar_gpu.py]
# NVRAR_TOPOLOGIES="2x2 3x2" picks topologies (nodes x gpus_per_node); NVRAR_SKIP_TIMEOUT_TEST=1 skips the
# test that one PE missing a call makes the others raise.
# Needs mpirun (Open MPI), a CUDA GPU, nvcc and NVSHMEM (nvidia-nvshmem-cu13 or $NVSHMEM_HOME).
# Timings of these runs measure nothing about networks; the script prints only PASS/FAIL.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-full}"; shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NVSHMEM_REMOTE_TRANSPORT="${NVSHMEM_REMOTE_TRANSPORT:-none}"  # one host: peer-to-peer only
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PY="${PYTHON:-python3}"
"$PY" -m collectives.build >/dev/null || exit 1
case "$mode" in
  quick) extra=(--dtypes bf16 --calls 16 --graph-calls 4 --max-bytes 1048576) ;;
  full) extra=() ;;
  *) echo "usage: $0 [quick|full] [args...]" >&2; exit 2 ;;
esac
status=0
# nodes x gpus_per_node: 2x2 and 3x2 (non-power-of-two nodes, folded) with 4 and 6 PEs, 2x4 and 4x2 with 8.
for topo in ${NVRAR_TOPOLOGIES:-2x2 2x4 4x2 3x2}; do
  nodes="${topo%x*}"; gpn="${topo#*x}"; np=$((nodes * gpn))
  port=$((29600 + RANDOM % 1000))
  MASTER_PORT=$port timeout "${NVRAR_CHECK_TIMEOUT:-240}" mpirun --oversubscribe -n "$np" \
    -x PYTHONPATH -x PYTHONUNBUFFERED -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST \
    -x NVSHMEM_DISABLE_NVLS -x NVSHMEM_REMOTE_TRANSPORT -x MASTER_PORT \
    "$PY" bench/nvrar_gpu.py --gpus-per-node "$gpn" "${extra[@]}" "$@" || { echo "FAIL: $topo (exit $?)"; status=1; }
done
[ "${NVRAR_SKIP_TIMEOUT_TEST:-0}" = 1 ] && exit $status
port=$((29600 + RANDOM % 1000))
MASTER_PORT=$port timeout 120 mpirun --oversubscribe -n 4 -x PYTHONPATH -x PYTHONUNBUFFERED -x NVSHMEM_DISABLE_NVLS \
  -x NVSHMEM_REMOTE_TRANSPORT -x MASTER_PORT "$PY" bench/nvrar_gpu.py --gpus-per-node 2 --timeout-test \
  || { echo "FAIL: timeout test"; status=1; }
exit $status
