#!/usr/bin/env bash
# The one device script: everything that needs a CUDA GPU, in one call that fits the 10-minute limit.
#
# Prepare here (no GPU needed), from the repository root, in one command (~3 min):
#   bash bench/gpu/prepare.sh      # .gpu/eval (Set5, Set14), .gpu/train_sub (what fits), .whl (py3.12 wheels)
# Run on the GPU box (device tool): carry .gpu/train_sub .gpu/eval .whl, timeout_s 600:
#   bash bench/gpu/run_gpu.sh
# Every step runs under a timeout taken from one deadline (DEADLINE s after the start), so the results are
# packed even when a step overruns. What comes back under $OUT: results.tgz.part-* (weights, cards, logs,
# bench tables, figures) and summary.txt.
# Here: cat results.tgz.part-* | tar xz
#       python -m model_store.complete_cards runs/gpu        (measures BSD100, which stayed here)
#       python -m model_store.install_weights runs/gpu       (copies a model only where it measures better)
#       python -m model_store.results_table; copy runs/gpu/figures/*.png to docs/figures/; commit.
# Dry run without a GPU (checks the plumbing, minutes): DEVICE=cpu BUDGET=20 EVAL_SETS=Set5 DEADLINE=900 \
#   BENCH_MODELS=fsrcnn_x4,edsr_baseline_x4 BENCH_SIZES=64 OUT=/tmp/out PYTHON=.venv/bin/python bash bench/gpu/run_gpu.sh
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

# 1. GPU-only tests on the shipped weights (tiled == untiled on CUDA, OOM back-off on real CUDA memory)
step 480 $PY -m pytest -q -p no:cacheprovider -m gpu tests/engine/test_engine_gpu.py 2>&1 | tail -8 \
  | tee -a "$OUT/summary.txt"
log "gpu tests done"

# 2. train: the zoo (scripts/train_zoo.sh gpu) and the burst model, all at once on the one GPU
# the training budget is what the deadline leaves after the final evaluations (~50 s), the benchmark, the
# figures and the packing (~200 s)
BUDGET=${BUDGET:-$(( DEADLINE - ($(date +%s) - start) - 250 ))}
log "training budget ${BUDGET} s"
step 200 $PY -m model_store.burst.train_burst --arch shift_pool --scale 4 --frames 8 --supervision supervised \
  --batch 32 --patch 32 --lr 1e-4 --seed 6 --init model_store/weights/shift_pool_x4.safetensors \
  --eval-sets "$(echo "${EVAL_SETS:-Set5 Set14}" | tr ' ' ,)" --time-budget "$BUDGET" --device "$DEVICE" \
  --out runs/gpu > runs/gpu/logs/shift_pool_x4.log 2>&1 &
BUDGET=$BUDGET PYTHON=$PY step 200 bash scripts/train_zoo.sh gpu runs/gpu 2>&1 | tee -a "$OUT/summary.txt"
wait
log "training done"

# 3. the engine benchmark on the trained weights: naive vs pure vs engine, x4 models, 4 input sizes
#    (results are rewritten after every model, so a timeout keeps what was measured)
mkdir -p model_store/weights_gpu && cp model_store/weights/*.json model_store/weights/*.safetensors model_store/weights_gpu/
cp runs/gpu/*.json runs/gpu/*.safetensors model_store/weights_gpu/ 2>/dev/null
rm -f model_store/weights_gpu/*.ckpt.*
models=""  # a model whose training failed has no card: bench the others
for m in $(echo "${BENCH_MODELS:-fsrcnn_x4,edsr_baseline_x4,swinir_s_x4,srresnet_x4,espcn_x4,lapsrn_x4,srcnn_x4,bicubic}" | tr , ' '); do
  if [ "$m" = bicubic ] || [ -f "model_store/weights_gpu/$m.json" ]; then models="$models${models:+,}$m"; fi
done
SRSERVE_MODELS_DIR=$PWD/model_store/weights_gpu step 60 $PY -m srserve.cli bench models --device "$DEVICE" \
  --models "$models" \
  --sizes "${BENCH_SIZES:-128,256,512,1920x1080}" --seconds 0.5 --out runs/gpu/bench --tag "$DEVICE-models" 2>&1 \
  | tail -4 | tee -a "$OUT/summary.txt"
log "bench done"

# 4. the SRGAN texture figure: bicubic / SRResNet / SRGAN / ground truth crops (commit under docs/figures/)
mkdir -p runs/gpu/figures
for img in img_001 img_003; do
  step 25 $PY -m srserve.cli --log-level WARNING compare --models bicubic,srresnet_x4,srgan_x4 \
    --dataset Set14 --image $img --scale 4 --weights runs/gpu --device "$DEVICE" \
    --out runs/gpu/figures/srgan_x4_set14_$img.png >> "$OUT/summary.txt" 2>&1
done
log "figures done"

grep -h -E "FAILED|done|Set5" runs/gpu/logs/*.log 2>/dev/null | tail -40 >> "$OUT/summary.txt"
cat runs/gpu/bench/*.md >> "$OUT/summary.txt" 2>/dev/null
tar czf - --exclude='*.ckpt.*' runs/gpu | split -b 15m - "$OUT/results.tgz.part-"
log "all done"
