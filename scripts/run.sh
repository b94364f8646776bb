#!/usr/bin/env bash
# Serves the default models in the foreground on the session bus, starting a private bus when
# there is none, and says how to reach it from another terminal.
set -euo pipefail
inferd=$1
models=$2
bindir=$(cd "$(dirname "$inferd")" && pwd)

if [[ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]]; then
  if [[ -S "/run/user/$(id -u)/bus" ]]; then
    export DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$(id -u)/bus"
  else
    addr_file=$(mktemp)
    dbus-daemon --session --fork --print-address=3 --print-pid=4 3>"$addr_file" 4>"$addr_file.pid"
    export DBUS_SESSION_BUS_ADDRESS=$(head -n1 "$addr_file")
    trap 'kill "$(cat "$addr_file.pid")" 2>/dev/null; rm -f "$addr_file" "$addr_file.pid"' EXIT
    echo "Started a private session bus. In another terminal:"
    echo "  export DBUS_SESSION_BUS_ADDRESS='$DBUS_SESSION_BUS_ADDRESS'"
  fi
fi
# The OpenAI-compatible API on a unix socket of this user's (docs/http.md).
runtime=${XDG_RUNTIME_DIR:-/tmp/inferd-$(id -u)}/inferd
mkdir -p "$runtime"
config=$runtime/run.toml
printf '[http]\nlisten = ["unix:%s/http.sock"]\n' "$runtime" >"$config"
cat <<MSG
Then try:
  $bindir/inferctl models
  $bindir/inferctl embed minilm "A man is playing a guitar." "Someone is strumming a guitar." --similarity
  curl --unix-socket $runtime/http.sock http://inferd/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
Stop with Ctrl-C.
MSG
"$inferd" --config "$config" --models "$models" --bus session
