#!/usr/bin/env bash
# The one device script: everything that needs a CUDA GPU, in one call that fits a 10-minute limit.
#
# Prepare here (no GPU needed), from the repository root, in one command (~3 min):
#   bash bench/gpu/prepare.sh      # .gpu/eval (Set5, Set14), .gpu/train_sub (what fits), .whl (py3.12 wheels)
# Run on the GPU box (device tool): carry .gpu/train_sub .gpu/eval .whl, timeout_s 590:
#   bash bench/gpu/run_gpu.sh
# What comes back under $OUT: results.tgz.part-* (weights, cards, logs, bench tables, figures) and summary.txt.
# Here: cat results.tgz.part-* | tar xz
#       python -m model_store.complete_cards runs/gpu        (measures BSD100, which stayed here)
#       python -m model_store.install_weights runs/gpu       (copies a model only where it measures better)
#       python -m model_store.results_table; copy runs/gpu/figures/*.png to docs/figures/; commit.
set -uo pipefail
start=$(date +%s)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export SRSERVE_DATA_DIR=/tmp/data PYTHONUNBUFFERED=1 SRSERVE_LOG_FORMAT=text
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/summary.txt"
python3 bench/gpu/pack_data.py unpack --src .gpu/train_sub --out /tmp/data/train &
python3 bench/gpu/pack_data.py unpack --src .gpu/eval --out /tmp/data/eval &
wait
echo "data ready after $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"

# 1. train every zoo model at once (budget leaves room for evaluation and the benchmark)
BUDGET=${BUDGET:-300} PYTHON=python3 bash scripts/train_zoo.sh gpu runs/gpu 2>&1 | tee -a "$OUT/summary.txt"
# burst models (supervised + self-supervised shift-and-pool, MISR-GRU), after the zoo: they share the GPU
for spec in "shift_pool supervised" "misr_gru supervised" "shift_pool self"; do
  set -- $spec
  timeout 150 python3 -m model_store.burst.train_burst --arch "$1" --scale 4 --frames 8 --supervision "$2" \
    --time-budget 90 --out runs/gpu > "runs/gpu/logs/burst_$1_$2.log" 2>&1 &
done
wait
echo "training done after $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"

# 2. the engine benchmark on the trained weights: naive vs pure vs engine (x4 models, 4 input sizes)
mkdir -p model_store/weights_gpu && cp runs/gpu/*.json runs/gpu/*.safetensors model_store/weights_gpu/ 2>/dev/null
rm -f model_store/weights_gpu/*.ckpt.*
SRSERVE_MODELS_DIR=$PWD/model_store/weights_gpu timeout 150 python3 -m srserve.cli bench models --device cuda \
  --models bicubic,fsrcnn_x4,espcn_x4,edsr_baseline_x4,srresnet_x4,swinir_s_x4 --sizes 128,256,512,1920x1080 \
  --seconds 1 --out runs/gpu/bench --tag h200-models 2>&1 | tail -5
# 3. GPU-only tests: tiled == untiled on CUDA, OOM back-off on real CUDA memory, engine batching
SRSERVE_MODELS_DIR=$PWD/model_store/weights_gpu timeout 60 python3 -m pytest -q -p no:cacheprovider \
  -m gpu tests/engine/test_engine_gpu.py 2>&1 | tail -5 | tee -a "$OUT/summary.txt"

# 4. the SRGAN texture figure: bicubic / SRResNet / SRGAN / ground truth crops (commit under docs/figures/)
for img in img_001 img_003; do
  timeout 60 python3 -m srserve.cli --log-level WARNING compare --models bicubic,srresnet_x4,srgan_x4 \
    --dataset Set14 --image $img --scale 4 --weights runs/gpu --device cuda \
    --out runs/gpu/figures/srgan_x4_set14_$img.png >> "$OUT/summary.txt" 2>&1
done

cat runs/gpu/bench/*.md >> "$OUT/summary.txt" 2>/dev/null
tar czf - --exclude='*.ckpt.*' runs/gpu | split -b 15m - "$OUT/results.tgz.part-"
echo "all done after $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
