#!/usr/bin/env bash
# SDK conformance: drive `volley sim` with the official provider SDKs, unchanged.
#
# Creates (or reuses) a venv with the pinned SDKs, starts the simulator as a separate process,
# runs scripts/conformance/<sdk>_sdk.py against it for each SDK, and stops the simulator on exit.
#
# Environment:
#   VOLLEY_BIN          the volley binary (default target/debug/volley, rebuilt first so it
#                       matches the working tree; an explicit VOLLEY_BIN is used as is)
#   VOLLEY_VENV         venv location (default target/conformance-venv)
#   VOLLEY_SIM_PORT     port for the simulator (default: a free one)
#   VOLLEY_CONFORMANCE  space-separated SDK modules to run (default: all known)
#   PYTHON              interpreter used to create the venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

# SDK module -> pip requirement; each has its scripts/conformance/<module>_sdk.py.
declare -A PIP_SPEC=(
  [anthropic]="anthropic==2.12.0"
  [openai]="openai==3.54.0"
  [google_genai]="google-genai==3.4.0"
)
ALL_SDKS="anthropic openai google_genai"
SDKS="${VOLLEY_CONFORMANCE:-$ALL_SDKS}"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="${VOLLEY_BIN:-$TARGET_DIR/debug/volley}"
VENV="${VOLLEY_VENV:-$TARGET_DIR/conformance-venv}"
PYTHON="${PYTHON:-python3}"

log() { printf 'conformance: %s\n' "$*" >&2; }

if [[ -n "${VOLLEY_BIN:-}" ]]; then
  if [[ ! -x "$BIN" ]]; then
    log "VOLLEY_BIN=$BIN is not an executable"
    exit 2
  fi
else
  # Always (incrementally) rebuilt: a stale binary would check an old simulator.
  log "building $BIN"
  cargo build -p volley-cli --bin volley
fi

# --- venv with the pinned SDKs (reused when already satisfied) ---------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
missing=()
for sdk in $SDKS; do
  spec="${PIP_SPEC[$sdk]:-}"
  if [[ -z "$spec" ]]; then
    log "unknown SDK module '$sdk' (known: ${!PIP_SPEC[*]})"
    exit 2
  fi
  installed="$("$VENV/bin/python" -m pip show "${spec%%==*}" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [[ "$installed" != "${spec##*==}" ]]; then
    missing+=("$spec")
  fi
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

# --- simulator --------------------------------------------------------------------------
PORT="${VOLLEY_SIM_PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE="http://127.0.0.1:$PORT"
SIM_LOG="$(mktemp "${TMPDIR:-/tmp}/volley-sim.XXXXXX")"
"$BIN" sim --port "$PORT" --processing-ms 300 >"$SIM_LOG" 2>&1 &
SIM_PID=$!
cleanup() {
  if kill -0 "$SIM_PID" 2>/dev/null; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  rm -f "$SIM_LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 300); do
  if ! kill -0 "$SIM_PID" 2>/dev/null; then
    log "the simulator exited early:"
    cat "$SIM_LOG" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  log "the simulator did not listen on port $PORT within 30 s:"
  cat "$SIM_LOG" >&2
  exit 1
fi
log "simulator pid $SIM_PID at $BASE"

# --- one module per SDK -----------------------------------------------------------------
status=0
for sdk in $SDKS; do
  log "running $sdk checks"
  if ! "$VENV/bin/python" "scripts/conformance/${sdk}_sdk.py" "$BASE"; then
    status=1
  fi
done
if ((status)); then
  log "FAILED (simulator log follows)"
  cat "$SIM_LOG" >&2
fi
exit "$status"
