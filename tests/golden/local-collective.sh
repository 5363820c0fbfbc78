#!/bin/bash
# local job: plain bash on this machine; study:a7023d2b8dea,f38b8efe460a
#LOCAL --time=00:40:00
# study job golden-collective-9b95b7: 2 run(s) of experiment golden-collective on local.
# Rendered by `study render`; edit the experiment or the templates in jobs/templates, not this file.
# Each run takes runs/<run_id>/attempt-<k>/ with an atomic mkdir, writes start.json when it starts
# and exit.json (through a temporary file and mv) when it ends: start.json without exit.json means the
# job was killed during that run. A failing run does not stop the runs after it; the job exits 1 if any failed.

STUDY_WORKSPACE=/golden/workspace
STUDY_JOB=golden-collective-9b95b7
export STUDY_WORKSPACE STUDY_JOB
STUDY_SCHEDULER_JOB_ID=${STUDY_SCHEDULER_JOB_ID:-}
MASTER_ADDR=127.0.0.1
study_job_number=${STUDY_SCHEDULER_JOB_ID//[^0-9]/}
MASTER_PORT=$(( 20000 + 10#${study_job_number:-$$} % 20000 ))
export MASTER_ADDR MASTER_PORT STUDY_SCHEDULER_JOB_ID
if [ -n "$STUDY_SCHEDULER_JOB_ID" ]; then study_job_json="\"$STUDY_SCHEDULER_JOB_ID\""; else study_job_json=null; fi

export PYTHONPATH=@REPO@"${PYTHONPATH:+:$PYTHONPATH}"
export NCCL_DEBUG=INFO
export OMP_NUM_THREADS=1

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

# run 1 of 2: a7023d2b8dea (repeat 0)
if study_begin a7023d2b8dea '{"algorithms":["nccl"],"dtype":"bf16","gpus_per_node":2,"graphs":true,"iterations":100,"nodes":1,"sizes":{"factor":2,"from":65536,"to":2097152},"warmup":10,"world_size":2}'; then
  ( cd "$STUDY_ATTEMPT_DIR" && exec @PYTHON@ -m collectives.spawn --nproc-per-node=2 -m collectives.bench -b 65536 -e 2097152 -f 2 --algo nccl --dtype bf16 -n 100 -w 10 -a 1 --graphs --gpus-per-node 2 --device cpu --results "$STUDY_RESULTS" ) \
    > "$STUDY_ATTEMPT_DIR/stdout" 2> "$STUDY_ATTEMPT_DIR/stderr" < /dev/null
  study_end $?
else
  echo "study: cannot make an attempt folder for a7023d2b8dea" >&2
  study_failed=$((study_failed + 1))
fi

# run 2 of 2: f38b8efe460a (repeat 0)
if study_begin f38b8efe460a '{"algorithms":["nvrar"],"dtype":"bf16","gpus_per_node":2,"graphs":true,"iterations":100,"nodes":1,"sizes":{"factor":2,"from":65536,"to":2097152},"warmup":10,"world_size":2}'; then
  ( cd "$STUDY_ATTEMPT_DIR" && exec @PYTHON@ -m collectives.spawn --nproc-per-node=2 -m collectives.bench -b 65536 -e 2097152 -f 2 --algo nvrar --dtype bf16 -n 100 -w 10 -a 1 --graphs --gpus-per-node 2 --device cpu --results "$STUDY_RESULTS" ) \
    > "$STUDY_ATTEMPT_DIR/stdout" 2> "$STUDY_ATTEMPT_DIR/stderr" < /dev/null
  study_end $?
else
  echo "study: cannot make an attempt folder for f38b8efe460a" >&2
  study_failed=$((study_failed + 1))
fi

echo "study: job $STUDY_JOB done, $study_failed of 2 run(s) failed"
[ "$study_failed" -eq 0 ]
