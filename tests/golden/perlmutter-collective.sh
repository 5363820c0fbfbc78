#!/bin/bash
#SBATCH --job-name=golden-collective-493d99
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=00:40:00
#SBATCH --account=acct0
#SBATCH --qos=regular
#SBATCH --constraint=gpu
#SBATCH --comment=study:013048facbca,8ab2336aeca2
#SBATCH --output=/golden/workspace/jobs/golden-collective-493d99.%j.out
# study job golden-collective-493d99: 2 run(s) of experiment golden-collective on perlmutter.
# Rendered by `study render`; edit the experiment or the templates in jobs/templates, not this file.
# Each run takes runs/<run_id>/attempt-<k>/ with an atomic mkdir, writes start.json when it starts
# and exit.json (through a temporary file and mv) when it ends: start.json without exit.json means the
# job was killed during that run. A failing run does not stop the runs after it; the job exits 1 if any failed.

STUDY_WORKSPACE=/golden/workspace
STUDY_JOB=golden-collective-493d99
export STUDY_WORKSPACE STUDY_JOB
STUDY_SCHEDULER_JOB_ID=${SLURM_JOB_ID:-}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
study_job_number=${STUDY_SCHEDULER_JOB_ID//[^0-9]/}
MASTER_PORT=$(( 20000 + 10#${study_job_number:-$$} % 20000 ))
export MASTER_ADDR MASTER_PORT STUDY_SCHEDULER_JOB_ID
if [ -n "$STUDY_SCHEDULER_JOB_ID" ]; then study_job_json="\"$STUDY_SCHEDULER_JOB_ID\""; else study_job_json=null; fi

module load pytorch

export PYTHONPATH=@REPO@"${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_MAX_CONNECTIONS=1
export FI_CXI_OFLOW_BUF_COUNT=10
export FI_CXI_OFLOW_BUF_SIZE=1073741824
export FI_CXI_RDZV_GET_MIN=0
export FI_CXI_RDZV_THRESHOLD=0
export FI_CXI_RX_MATCH_MODE=hybrid
export FI_PROVIDER=cxi
export NCCL_CROSS_NIC=1
export NCCL_CUMEM_ENABLE=0
export NCCL_DEBUG=INFO
export NCCL_GRAPH_MIXING_SUPPORT=0
export NCCL_NET='AWS Libfabric'
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_SOCKET_IFNAME=hsn
export NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME=hsn0
export NVSHMEM_DISABLE_CUDA_VMM=1
export NVSHMEM_REMOTE_TRANSPORT=libfabric
export TORCH_NCCL_AVOID_RECORD_STREAMS=1

study_failed=0
study_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

study_begin() {  # run_id params_json: take the next attempt folder and record the start
  local run_dir="$STUDY_WORKSPACE/runs/$1" k=1
  mkdir -p "$run_dir" || return 1
  until mkdir "$run_dir/attempt-$k" 2>/dev/null; do
    k=$((k + 1))
    [ "$k" -le 10000 ] || return 1
  done
  STUDY_RUN_ID=$1
  STUDY_PARAMS=$2
  STUDY_ATTEMPT=$k
  STUDY_ATTEMPT_DIR="$run_dir/attempt-$k"
  STUDY_RESULTS="$STUDY_ATTEMPT_DIR/results.json"
  STUDY_START=$(study_now)
  export STUDY_RUN_ID STUDY_PARAMS STUDY_ATTEMPT STUDY_ATTEMPT_DIR STUDY_RESULTS
  printf '{"run_id": "%s", "attempt": %d, "job": "%s", "scheduler_job_id": %s, "host": "%s", "start": "%s"}\n' \
    "$STUDY_RUN_ID" "$k" "$STUDY_JOB" "$study_job_json" "$(hostname)" "$STUDY_START" \
    > "$STUDY_ATTEMPT_DIR/start.json.tmp" && mv -f "$STUDY_ATTEMPT_DIR/start.json.tmp" "$STUDY_ATTEMPT_DIR/start.json"
  echo "study: start $STUDY_RUN_ID attempt $k at $STUDY_START"
}

study_end() {  # exit_code: record how the run ended
  local rc=$1 end
  end=$(study_now)
  printf '{"exit_code": %d, "start": "%s", "end": "%s", "host": "%s", "scheduler_job_id": %s}\n' \
    "$rc" "$STUDY_START" "$end" "$(hostname)" "$study_job_json" \
    > "$STUDY_ATTEMPT_DIR/exit.json.tmp" && mv -f "$STUDY_ATTEMPT_DIR/exit.json.tmp" "$STUDY_ATTEMPT_DIR/exit.json"
  echo "study: end $STUDY_RUN_ID attempt $STUDY_ATTEMPT exit $rc at $end"
  [ "$rc" -eq 0 ] || study_failed=$((study_failed + 1))
}

# run 1 of 2: 013048facbca (repeat 0)
if study_begin 013048facbca '{"algorithms":["nccl"],"dtype":"bf16","gpus_per_node":4,"graphs":true,"iterations":100,"nodes":2,"sizes":{"factor":2,"from":65536,"to":2097152},"warmup":10,"world_size":8}'; then
  ( cd "$STUDY_ATTEMPT_DIR" && exec srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=32 --cpu-bind=cores python -m collectives.bench -b 65536 -e 2097152 -f 2 --algo nccl --dtype bf16 -n 100 -w 10 -a 1 --graphs --gpus-per-node 4 --device cuda --results "$STUDY_RESULTS" ) \
    > "$STUDY_ATTEMPT_DIR/stdout" 2> "$STUDY_ATTEMPT_DIR/stderr" < /dev/null
  study_end $?
else
  echo "study: cannot make an attempt folder for 013048facbca" >&2
  study_failed=$((study_failed + 1))
fi

# run 2 of 2: 8ab2336aeca2 (repeat 0)
if study_begin 8ab2336aeca2 '{"algorithms":["nvrar"],"dtype":"bf16","gpus_per_node":4,"graphs":true,"iterations":100,"nodes":2,"sizes":{"factor":2,"from":65536,"to":2097152},"warmup":10,"world_size":8}'; then
  ( cd "$STUDY_ATTEMPT_DIR" && exec srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=32 --cpu-bind=cores python -m collectives.bench -b 65536 -e 2097152 -f 2 --algo nvrar --dtype bf16 -n 100 -w 10 -a 1 --graphs --gpus-per-node 4 --device cuda --results "$STUDY_RESULTS" ) \
    > "$STUDY_ATTEMPT_DIR/stdout" 2> "$STUDY_ATTEMPT_DIR/stderr" < /dev/null
  study_end $?
else
  echo "study: cannot make an attempt folder for 8ab2336aeca2" >&2
  study_failed=$((study_failed + 1))
fi

echo "study: job $STUDY_JOB done, $study_failed of 2 run(s) failed"
[ "$study_failed" -eq 0 ]
