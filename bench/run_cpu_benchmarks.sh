#!/usr/bin/env bash
# The CPU benchmarks recorded in bench/results/, in one go (needs a Redis: REDIS_URL or :6379).
# Run on a quiet machine: every figure is relative to a baseline measured in the same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
# 1. ours vs OpenCV dnn_superres (needs: pip install -e .[anchors], OpenCV 5.0)
$PY -m srserve.cli --log-level WARNING bench anchors --families fsrcnn,espcn --repeats 3 --tag cpu-anchors
# 1b. the CPU inference rewrites, before / after on the same images
$PY -m bench.cpu_paths_bench --tag cpu-paths
# 2. end to end through API + Redis + one worker vs RQ's stock SimpleWorker on no-op jobs
$PY -m srserve.cli --log-level WARNING bench e2e --clients 1,8,64 --model bicubic --size 64 --jobs 256 --tag cpu-e2e
# 3. naive vs pure vs engine per model (x4) on this CPU
$PY -m srserve.cli --log-level WARNING bench models --device cpu --models bicubic,fsrcnn_x4,espcn_x4 \
  --sizes 128,256,512,1920x1080 --seconds 1 --tag cpu-models
# 4. the engine's CPU bf16 choice (needs a CPU with native bf16, else both runs are fp32): off vs auto
for hp in off auto; do
  SRSERVE_HALF_PRECISION=$hp $PY -m srserve.cli --log-level WARNING bench models --device cpu \
    --models srcnn_x4,lapsrn_x4,edsr_baseline_x4,fsrcnn_x4 --sizes 128,256 --seconds 1 --tag cpu-bf16-$hp
done
# 5. training step time: fp32 NCHW / fp32 NHWC / bf16 NHWC (bf16 only where the CPU runs it natively)
$PY -m bench.train_step_bench --threads 2 --tag cpu-train-steps
