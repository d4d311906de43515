#!/usr/bin/env bash
# The one device script: everything that needs a CUDA GPU, in one call that fits the 10-minute limit.
#
# Prepare here (no GPU needed), from the repository root, in one command (~3 min):
#   bash bench/gpu/prepare.sh      # .gpu/eval (Set5, Set14), .gpu/train_sub (what fits), .whl (py3.12 wheels)
# Run on the GPU box (device tool): carry .gpu/train_sub .gpu/eval .gpu/bin .whl, timeout_s 600:
#   bash bench/gpu/run_gpu.sh
# Every step runs under a timeout taken from one deadline (DEADLINE s after the start), so the results are
# packed even when a step overruns. What comes back under $OUT: results.tgz.part-* (weights, cards, logs,
# bench tables) and summary.txt.
# Here: cat results.tgz.part-* | tar xz
#       python -m model_store.complete_cards runs/gpu        (measures BSD100, which stayed here)
#       python -m model_store.install_weights runs/gpu       (copies a model only where it measures better)
#       python -m model_store.results_table; copy runs/gpu/bench/*.{json,md} to bench/results/ (named
#       after the GPU); redraw the figures from the installed weights (here: shipped cards' names win
#       over runs/gpu's, so the GPU side can't), e.g. srserve compare --models bicubic,srresnet_x4,srgan_x4
#       --dataset Set14 --image img_001 --scale 4 --at 140,40 --out docs/figures/srgan_x4_set14_img_001.png
#       and the zoo_x4_set5_img_003 line in the README; commit.
# PHASES picks what runs (default "tests bench e2e train"), e.g. PHASES="tests bench" bash ...
# Dry run without a GPU (checks the plumbing, minutes): DEVICE=cpu BUDGET=20 EVAL_SETS=Set5 DEADLINE=900 \
#   BENCH_MODELS=fsrcnn_x4 BENCH_SIZES=64 E2E_JOBS=16 E2E_MODEL=fsrcnn_x4 ZOO=gpu-small OUT=/tmp/out \
#   PYTHON=.venv/bin/python bash bench/gpu/run_gpu.sh
set -uo pipefail
start=$(date +%s)
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
DEADLINE=${DEADLINE:-565}   # the call's limit is 600 s; leave room to pack and copy back
PY=${PYTHON:-python3}
mkdir -p "$OUT" runs/gpu/logs
log() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/summary.txt"; }
# step RESERVE CMD...: run CMD, killed (with its children) if it would eat into the last RESERVE seconds
step() {
  local reserve=$1; shift
  local t=$(( DEADLINE - ($(date +%s) - start) - reserve ))
  if (( t < 10 )); then log "skipped, no time left: $*"; return 1; fi
  timeout -k 5 "$t" "$@"
  local rc=$?
  (( rc == 124 || rc == 137 )) && log "timed out after ${t} s: $*"
  return $rc
}

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 SRSERVE_LOG_FORMAT=text
if [ -d .gpu/eval ]; then
  export SRSERVE_DATA_DIR=/tmp/data
  $PY bench/gpu/pack_data.py unpack --src .gpu/train_sub --out /tmp/data/train &
  $PY bench/gpu/pack_data.py unpack --src .gpu/eval --out /tmp/data/eval &
  wait
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; } | tee -a "$OUT/summary.txt"
log "data ready"

# PHASES (in this order): tests, bench (naive/pure/engine), e2e (API + Redis + worker, batching on/off),
# train (ZOO profile of scripts/train_zoo.sh: gpu-deep by default). Training takes what the deadline
# leaves after the phases behind it.
PHASES=" ${PHASES:-tests bench e2e train} "
has() { [[ $PHASES == *" $1 "* ]]; }
# what the bench and e2e phases leave for the phases after them (training wants the most)
if has train; then reserve_bench=340 reserve_e2e=250; else reserve_bench=120 reserve_e2e=60; fi

if has tests; then  # 1. CUDA-only engine tests: tiled == untiled, interleaved jobs through the staging buffers, OOM
  step 480 $PY -m pytest -q -p no:cacheprovider -m gpu tests/engine/test_engine_gpu.py 2>&1 | tail -8 \
    | tee -a "$OUT/summary.txt"
  log "gpu tests done"
fi

if has bench; then  # 2. naive vs pure vs engine, x4 models, 4 input sizes (rows written after each model)
  models=""  # a model without a card (e.g. not trained) is left out rather than stopping the run
  for m in $(echo "${BENCH_MODELS:-fsrcnn_x4,edsr_baseline_x4,srresnet_x4,espcn_x4,lapsrn_x4}" | tr , ' '); do
    if [ "$m" = bicubic ] || [ -f "model_store/weights/$m.json" ]; then models="$models${models:+,}$m"; fi
  done
  step $reserve_bench $PY -m srserve.cli bench models --device "$DEVICE" --models "$models" \
    --sizes "${BENCH_SIZES:-128,256,512,1920x1080}" --seconds 0.3 --out runs/gpu/bench --tag "$DEVICE-models" \
    --profile runs/gpu/bench/profiles 2>&1 | grep -v WARNING | tail -4 | tee -a "$OUT/summary.txt"
  # one extra, untimed engine pass per case under torch.profiler: how busy the device was, and where the rest went
  grep -H "device busy" runs/gpu/bench/profiles/*.txt 2>/dev/null | tee -a "$OUT/summary.txt"
  log "bench done"
fi

if has e2e && [ -x .gpu/bin/redis-server ]; then  # 3. end to end, 256² inputs at x4, batching on vs off
  .gpu/bin/redis-server --port 6399 --save '' --appendonly no --daemonize yes --logfile /tmp/redis.log
  REDIS_URL=redis://127.0.0.1:6399/0 step $reserve_e2e $PY -m srserve.cli bench e2e \
    --device "$DEVICE" --clients "${E2E_CLIENTS:-1,64}" --model "${E2E_MODEL:-edsr_baseline_x4}" --size 256 --scale 4 \
    --jobs "${E2E_JOBS:-256}" --out runs/gpu/bench --tag "$DEVICE-e2e" 2>&1 | grep -v WARNING | tail -12 \
    | tee -a "$OUT/summary.txt"
  log "e2e done"
fi

if has train; then  # 4. train: the budget is what the deadline leaves after the final evaluations (~50 s),
  # and the packing
  BUDGET=${BUDGET:-$(( DEADLINE - ($(date +%s) - start) - 110 ))}
  log "training budget ${BUDGET} s"
  if (( BUDGET >= 60 )); then
    BUDGET=$BUDGET PYTHON=$PY step 50 bash scripts/train_zoo.sh "${ZOO:-gpu-deep}" runs/gpu 2>&1 | tee -a "$OUT/summary.txt"
  fi
  log "training done"
fi


grep -h -E "FAILED|done|Set5" runs/gpu/logs/*.log 2>/dev/null | tail -40 >> "$OUT/summary.txt"
cat runs/gpu/bench/*.md >> "$OUT/summary.txt" 2>/dev/null
tar czf - --exclude='*.ckpt.*' runs/gpu | split -b 15m - "$OUT/results.tgz.part-"
log "all done"
