#!/usr/bin/env bash
# GPU check for inferd: on a machine with an NVIDIA GPU and onnxruntime-gpu, serves copies of the
# models with `providers = ["cuda"]` and `require_gpu = true` on a private D-Bus, then reports
#   1. whether the CUDA provider registered (`inferctl models`, PROVIDER `cuda`), and whether
#      each model's memory was measured on its GPU (`memory_pool` gpu:N, `memory_bytes`);
#   2. decode tokens/s on CUDA of the text-generation models (smollm2, r1-distill-qwen-1.5b-shape);
#   3. embedding throughput on CUDA (minilm, requests of 32 texts);
#   4. TensorRT, where libnvinfer.so.10 loads: a `providers = ["tensorrt", "cuda"]` copy, its
#      provider after warmup and its speed;
# and prints a markdown block for docs/benchmarks.md. Exit status: 0 all good, 1 CUDA did not
# register (or a CUDA model failed / landed elsewhere), 2 CUDA fine but TensorRT was present and
# the TensorRT copy did not end up on `tensorrt`, 3 a setup problem (missing binary, python3…).
#
# Usage:
#   ORT_GPU_LIB=/path/to/onnxruntime/capi/libonnxruntime.so.1.x scripts/gpu-check.sh
#
# Environment (all optional):
#   ORT_GPU_LIB      onnxruntime-gpu's libonnxruntime.so.1.x (its folder must also hold
#                    libonnxruntime_providers_cuda.so); default: the pip-installed onnxruntime-gpu
#                    that python3 imports, else $CACHE/onnxruntime-gpu/*/libonnxruntime.so.1.*
#   INFERD_BIN, INFERCTL_BIN   default target/release/inferd and target/release/inferctl
#   INFERD_CACHE     default ~/.cache/inferd ($CACHE below)
#   MODELS           model repository holding smollm2 and minilm; default $INFERD_MODELS, else $CACHE/models
#   BENCH_MODELS     repository holding r1-distill-qwen-1.5b-shape (`make bench`); default
#                    $INFERD_BENCH_MODELS, else $CACHE/bench-models
#   GEN_MODELS       text-generation models to time (default "smollm2 r1-distill-qwen-1.5b-shape")
#   EMBED_MODEL      embedding model to time (default minilm)
#   TRT_MODELS       models to try on TensorRT (default "$EMBED_MODEL"); each served as NAME-trt
#   TRT_OPTIONS      TOML lines for the copies' [execution.tensorrt] table (default "fp16 = true"),
#                    e.g. $'fp16 = true\nbuilder_optimization_level = 3'
#   GEN_TOKENS       tokens per timed generation (default 256); GEN_RUNS timed runs (default 3)
#   IGNORE_EOS       1 (default): the copies' eos_token_ids become [vocab_size - 1], so every run
#                    decodes GEN_TOKENS tokens (inferd has no ignore_eos option); 0 keeps the EOS
#   EMBED_REQUESTS   requests of EMBED_BATCH (32) texts (default 64), over EMBED_CLIENTS (4) clients
#   LOAD_TIMEOUT     seconds to wait for the models to load (default 900); TRT_TIMEOUT seconds to
#                    wait for a TensorRT engine build (default 1800)
#   EXTRA_LD_PATH    folders to put before LD_LIBRARY_PATH; the lib folders of the nvidia-* and
#                    tensorrt pip wheels python3 can see are added automatically
#   CHECK_PROVIDER   the provider the copies are served on (default cuda); `cpu` (require_gpu off)
#                    exercises the measuring code on a machine without a GPU
#   GPU_CHECK_TMPDIR where the temporary repository goes (default $CACHE, so that the model files
#                    can be hard-linked instead of copied); KEEP_TMP=1 keeps it
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${INFERD_CACHE:-$HOME/.cache/inferd}
INFERD_BIN=${INFERD_BIN:-$top/target/release/inferd}
INFERCTL_BIN=${INFERCTL_BIN:-$top/target/release/inferctl}
MODELS=${MODELS:-${INFERD_MODELS:-$CACHE/models}}
BENCH_MODELS=${BENCH_MODELS:-${INFERD_BENCH_MODELS:-$CACHE/bench-models}}
GEN_MODELS=${GEN_MODELS:-smollm2 r1-distill-qwen-1.5b-shape}
EMBED_MODEL=${EMBED_MODEL:-minilm}
TRT_MODELS=${TRT_MODELS:-$EMBED_MODEL}
TRT_OPTIONS=${TRT_OPTIONS:-fp16 = true}
GEN_TOKENS=${GEN_TOKENS:-256}
GEN_RUNS=${GEN_RUNS:-3}
IGNORE_EOS=${IGNORE_EOS:-1}
EMBED_REQUESTS=${EMBED_REQUESTS:-64}
EMBED_BATCH=${EMBED_BATCH:-32}
EMBED_CLIENTS=${EMBED_CLIENTS:-4}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-900}
TRT_TIMEOUT=${TRT_TIMEOUT:-1800}
want=${CHECK_PROVIDER:-cuda}
case $want in cuda | cpu) ;; *) printf 'gpu-check: CHECK_PROVIDER must be cuda or cpu\n' >&2; exit 3 ;; esac
require_gpu=1
[[ $want == cpu ]] && require_gpu=0

say() { printf '%s\n' "$*"; }
hr() { say "------------------------------------------------------------------------"; }
die() { printf 'gpu-check: %s\n' "$*" >&2; exit 3; }

# ---------------------------------------------------------------------------------------------
# Prerequisites
command -v python3 >/dev/null || die "python3 is needed (manifest rewriting, JSON parsing)"
python3 -c 'import sys
try:
    import tomllib  # noqa: F401
except ImportError:
    import tomli  # noqa: F401' 2>/dev/null ||
  die "python3 needs tomllib (Python >= 3.11) or the tomli package"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"
command -v dbus-daemon >/dev/null || die "dbus-daemon is needed (apt-get install dbus)"
[[ -x $INFERD_BIN ]] || die "no inferd binary at $INFERD_BIN (cargo build --release, or set INFERD_BIN)"
[[ -x $INFERCTL_BIN ]] || die "no inferctl binary at $INFERCTL_BIN (set INFERCTL_BIN)"

# Library folders of the nvidia-*/tensorrt pip wheels (CUDA runtime, cuBLAS, cuDNN, TensorRT).
wheel_lib_dirs() {
  python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = set(sys.path)
try:
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
except Exception:
    pass
seen = []
for r in sorted(p for p in roots if p and os.path.isdir(p)):
    pats = ["nvidia/*/lib", "nvidia/*/lib64", "nvidia/*/*/lib", "nvidia/*/lib/x86_64-linux-gnu",
            "nvidia/*/lib/aarch64-linux-gnu", "tensorrt_libs", "tensorrt", "torch/lib"]
    for pat in pats:
        for d in sorted(glob.glob(os.path.join(r, pat))):
            if os.path.isdir(d) and glob.glob(os.path.join(d, "lib*.so*")) and d not in seen:
                seen.append(d)
print(":".join(seen))
PY
}

if [[ -z ${ORT_GPU_LIB:-} ]]; then
  ORT_GPU_LIB=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import onnxruntime
except Exception:
    raise SystemExit(0)
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
if os.path.exists(os.path.join(capi, "libonnxruntime_providers_cuda.so")):
    libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.1.*")))
    if libs:
        print(libs[-1])
PY
  )
  if [[ -z $ORT_GPU_LIB ]]; then
    ORT_GPU_LIB=$(compgen -G "$CACHE/onnxruntime-gpu/*/libonnxruntime.so.1.*" | sort | tail -n1)
  fi
  [[ -n $ORT_GPU_LIB ]] ||
    die "no onnxruntime-gpu found: set ORT_GPU_LIB to its libonnxruntime.so.1.x (pip install onnxruntime-gpu; the library is in site-packages/onnxruntime/capi/)"
fi
[[ -f $ORT_GPU_LIB ]] || die "ORT_GPU_LIB=$ORT_GPU_LIB does not exist"
ort_dir=$(cd "$(dirname "$ORT_GPU_LIB")" && pwd)
ORT_GPU_LIB=$ort_dir/$(basename "$ORT_GPU_LIB")

wheel_dirs=$(wheel_lib_dirs)
ld_path=$ort_dir
[[ -n ${EXTRA_LD_PATH:-} ]] && ld_path=$ld_path:$EXTRA_LD_PATH
[[ -n $wheel_dirs ]] && ld_path=$ld_path:$wheel_dirs
[[ -n ${LD_LIBRARY_PATH:-} ]] && ld_path=$ld_path:$LD_LIBRARY_PATH
export LD_LIBRARY_PATH=$ld_path

# ---------------------------------------------------------------------------------------------
# Machine facts
if command -v nvidia-smi >/dev/null; then
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
  gpu_driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)
  [[ -n $gpu_name ]] || gpu_name="unknown (nvidia-smi found no GPU)"
else
  gpu_name="none (nvidia-smi not found)"
  gpu_driver="-"
fi
cuda_provider_lib=$ort_dir/libonnxruntime_providers_cuda.so
trt_provider_lib=$ort_dir/libonnxruntime_providers_tensorrt.so
trt_present=0
if python3 -c 'import ctypes; ctypes.CDLL("libnvinfer.so.10")' 2>/dev/null; then
  trt_present=1
fi

tmp_parent=${GPU_CHECK_TMPDIR:-$CACHE}
mkdir -p "$tmp_parent" || die "cannot create $tmp_parent"
tmp=$(mktemp -d "$tmp_parent/gpu-check.XXXXXX") || die "cannot create a temporary folder in $tmp_parent"
repo=$tmp/models
state=$tmp/state
log=$tmp/inferd.log
mkdir -p "$repo" "$state"

bus_pid=""
inferd_pid=""
client_pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${client_pids[@]}"; do kill "$p" 2>/dev/null; done
  if [[ -n $inferd_pid ]] && kill -0 "$inferd_pid" 2>/dev/null; then
    kill -TERM "$inferd_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$inferd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$inferd_pid" 2>/dev/null
    wait "$inferd_pid" 2>/dev/null
  fi
  if [[ -n $bus_pid ]]; then
    kill "$bus_pid" 2>/dev/null
    wait "$bus_pid" 2>/dev/null
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    say "gpu-check: kept $tmp (inferd log: $log)"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

hr
say "inferd GPU check — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "GPU:             $gpu_name (driver ${gpu_driver:--})"
say "ONNX Runtime:    $ORT_GPU_LIB"
if [[ -f $cuda_provider_lib ]]; then
  say "CUDA provider:   $cuda_provider_lib"
else
  say "CUDA provider:   MISSING — $ort_dir has no libonnxruntime_providers_cuda.so (a CPU build?)"
fi
say "TensorRT:        $([[ $trt_present == 1 ]] && echo "libnvinfer.so.10 loads" || echo "not present (libnvinfer.so.10 not found)")"
say "inferd:          $INFERD_BIN"
say "wheel lib dirs:  ${wheel_dirs:-none found}"
say "work dir:        $tmp"
hr

# ---------------------------------------------------------------------------------------------
# The temporary repository: copies (hard links where possible; inferd refuses symlinks that lead
# out of a model folder) with model.toml rewritten.

# rewrite_manifest SRC DST PROVIDERS_JSON TRT_TOML IGNORE_EOS CONFIG_JSON REQUIRE_GPU
rewrite_manifest() {
  python3 - "$@" <<'PY'
import json, math, os, sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib

src, dst, providers, trt_toml, ignore_eos, config_json, require_gpu = sys.argv[1:8]
with open(src, "rb") as f:
    m = tomllib.load(f)
ex = m.setdefault("execution", {})
ex["providers"] = json.loads(providers)
ex["require_gpu"] = require_gpu == "1"
if trt_toml.strip():
    ex.setdefault("tensorrt", {}).update(tomllib.loads(trt_toml))
if ignore_eos == "1" and m.get("kind") == "text-generation" and os.path.exists(config_json):
    with open(config_json) as f:
        cfg = json.load(f)
    vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
    if vocab:
        m.setdefault("generation", {})["eos_token_ids"] = [int(vocab) - 1]

def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
    raise SystemExit(f"cannot write {v!r} back as TOML")

def key(k):
    import re
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)

def table(d, path, out):
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        out.append(f"\n[{'.'.join(key(p) for p in path)}]")
    for k, v in scalars.items():
        out.append(f"{key(k)} = {value(v)}")
    for k, v in tables.items():
        table(v, path + [k], out)

out = [f"# Rewritten by scripts/gpu-check.sh from {src}"]
table(m, [], out)
text = "\n".join(out) + "\n"
tomllib.loads(text)  # round-trip check
with open(dst, "w") as f:
    f.write(text)
PY
}

# add_model SRC_DIR NAME PROVIDERS_JSON TRT_TOML REQUIRE_GPU(1|0)
add_model() {
  local src=$1 name=$2 providers=$3 trt=$4 dst=$repo/$2
  if ! cp -al "$src" "$dst" 2>/dev/null; then
    rm -rf "$dst"
    say "  $name: cannot hard-link $src here (another file system?); copying"
    cp -a "$src" "$dst" || return 1
  fi
  rm -f "$dst/model.toml" # a hard link: never write through it into the original
  rewrite_manifest "$src/model.toml" "$dst/model.toml" "$providers" "$trt" "$IGNORE_EOS" "$src/config.json" "$5"
}

find_model() {
  local d
  for d in "$MODELS/$1" "$BENCH_MODELS/$1"; do
    [[ -f $d/model.toml ]] && { echo "$d"; return 0; }
  done
  return 1
}

cuda_models=()
trt_copies=()
for name in $GEN_MODELS $EMBED_MODEL; do
  [[ -e $repo/$name ]] && continue
  if src=$(find_model "$name"); then
    add_model "$src" "$name" "[\"$want\"]" "" "$require_gpu" || die "could not copy $src"
    cuda_models+=("$name")
    say "model $name: $src -> providers = [\"$want\"], require_gpu = $([[ $require_gpu == 1 ]] && echo true || echo false)"
  else
    say "model $name: SKIPPED, not found in $MODELS or $BENCH_MODELS"
  fi
done
if [[ $trt_present == 1 ]]; then
  for name in $TRT_MODELS; do
    if src=$(find_model "$name"); then
      add_model "$src" "$name-trt" '["tensorrt", "cuda"]' "$TRT_OPTIONS" 1 || die "could not copy $src"
      trt_copies+=("$name-trt")
      say "model $name-trt: $src -> providers = [\"tensorrt\", \"cuda\"], require_gpu = true"
    else
      say "model $name-trt: SKIPPED, $name not found"
    fi
  done
fi
((${#cuda_models[@]})) || die "none of the models ($GEN_MODELS $EMBED_MODEL) were found in $MODELS or $BENCH_MODELS"

# ---------------------------------------------------------------------------------------------
# A private bus and the daemon (as tests/src/lib.rs does).
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/bus.address" 2>"$tmp/bus.log" &
bus_pid=$!
bus=""
for _ in $(seq 1 100); do
  bus=$(head -n1 "$tmp/bus.address" 2>/dev/null)
  [[ -n $bus ]] && break
  kill -0 "$bus_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $bus ]] || die "dbus-daemon did not start: $(cat "$tmp/bus.log")"
export INFERD_BUS=$bus

# A budget far above need makes loads take turns, so each model's memory is measured (step 1).
printf 'log_level = "info"\n[engine]\nmemory_budget = 1000000000000000\n' >"$tmp/inferd.toml"
ORT_DYLIB_PATH=$ORT_GPU_LIB STATE_DIRECTORY=$state \
  "$INFERD_BIN" --config "$tmp/inferd.toml" --models "$repo" --bus "$bus" 2>"$log" >/dev/null &
inferd_pid=$!

ctl() { "$INFERCTL_BIN" --bus "$bus" "$@"; }

log_tail() {
  say "---- last lines of the inferd log ($log) ----"
  tail -n "${1:-30}" "$log" | sed 's/\x1b\[[0-9;]*m//g'
  say "----"
}

started=0
for _ in $(seq 1 600); do
  if ! kill -0 "$inferd_pid" 2>/dev/null; then
    say "FAIL: inferd exited during start-up"
    log_tail 40
    exit 1
  fi
  if timeout 10 "$INFERCTL_BIN" --bus "$bus" models >/dev/null 2>&1; then started=1; break; fi
  sleep 0.1
done
((started)) || { say "FAIL: inferd did not appear on the bus within 60 s"; log_tail 40; exit 1; }

# ONNX Runtime version and providers: the D-Bus properties, else the start-up log line.
prop() {
  command -v busctl >/dev/null || return 1
  busctl --address "$bus" get-property org.inferd.Inferd1 /org/inferd/Inferd1 org.inferd.Inferd1 "$1" 2>/dev/null
}
ort_version=$(prop RuntimeVersion | sed -n 's/^s "\(.*\)"$/\1/p')
ort_providers=$(prop Providers | sed 's/^as [0-9]* //; s/"//g')
clean_log() { sed 's/\x1b\[[0-9;]*m//g' "$log"; }
if [[ -z $ort_version ]]; then
  ort_version=$(clean_log | sed -n 's/.*loaded ONNX Runtime.*version=\([^ ]*\).*/\1/p' | head -n1)
fi
if [[ -z $ort_providers ]]; then
  ort_providers=$(clean_log | sed -n 's/.*loaded ONNX Runtime.*providers=\([^ ]*\).*/\1/p' | head -n1 | tr , ' ')
fi
say "ONNX Runtime $ort_version loaded; providers compiled in: ${ort_providers:-unknown}"

# `inferctl --json models` as one line per model: name state provider engine_build_s error note
models_table() {
  ctl --json models 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    b = m.get("engine_build_s")
    print(m["name"], m["state"], m.get("provider") or "-", "-" if b is None else b,
          json.dumps(m.get("error") or ""), json.dumps(m.get("note") or ""))'
}
model_field() { # model_field NAME COLUMN(2 state, 3 provider, 4 build s, 5 error, 6 note)
  models_table | awk -v n="$1" -v c="$2" '$1 == n { print $c; exit }'
}
model_text() { # error/note columns are JSON strings that may hold spaces
  ctl --json models 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == sys.argv[1]:
        print(m.get(sys.argv[2]) or "")' "$1" "$2"
}

say "waiting for the models to load (up to ${LOAD_TIMEOUT}s)…"
deadline=$((SECONDS + LOAD_TIMEOUT))
while ((SECONDS < deadline)); do
  kill -0 "$inferd_pid" 2>/dev/null || { say "FAIL: inferd exited while loading"; log_tail 40; exit 1; }
  models_table | awk '$2 == "loading" { busy = 1 } END { exit busy }' && break
  sleep 1
done
hr
say "inferctl models:"
ctl models
hr

# ---------------------------------------------------------------------------------------------
# 1. Did CUDA register?
status=0
cuda_ok=()
for name in "${cuda_models[@]}"; do
  st=$(model_field "$name" 2)
  pv=$(model_field "$name" 3)
  if [[ $st == ready && $pv == "$want" ]]; then
    say "OK    $name: ready on $want"
    cuda_ok+=("$name")
    pool=$(model_text "$name" memory_pool)
    mem=$(model_text "$name" memory_bytes)
    want_pool=host
    [[ $want == cuda ]] && want_pool=gpu:
    if [[ $pool == "$want_pool"* && ${mem:-0} -gt 0 ]]; then
      say "OK    $name: takes $((mem >> 20)) MiB of $pool"
    else
      say "FAIL  $name: memory not measured on its device (memory_pool '$pool', memory_bytes '$mem')"
      status=1
    fi
  elif [[ $st == ready ]]; then
    say "FAIL  $name: meant for $want but serving on '$pv'!  note: $(model_text "$name" note)"
    status=1
  else
    say "FAIL  $name: state '$st', provider '$pv'"
    say "      error: $(model_text "$name" error)"
    status=1
  fi
done

if ((status)); then
  hr
  say "DIAGNOSIS: the CUDA execution provider did not register for every model."
  if [[ " $ort_providers " != *" CUDAExecutionProvider "* ]]; then
    say "  * $ORT_GPU_LIB (ONNX Runtime ${ort_version:-?}) has no CUDAExecutionProvider compiled in"
    say "    (providers: ${ort_providers:-unknown}): it is a CPU build. Point ORT_GPU_LIB at onnxruntime-gpu's"
    say "    site-packages/onnxruntime/capi/libonnxruntime.so.1.x (pip install onnxruntime-gpu)."
  fi
  if [[ ! -f $cuda_provider_lib ]]; then
    say "  * $ort_dir has no libonnxruntime_providers_cuda.so next to the library."
  elif command -v ldd >/dev/null; then
    missing=$(ldd "$cuda_provider_lib" 2>/dev/null | awk '/not found/ { print "    " $1 }')
    if [[ -n $missing ]]; then
      say "  * libonnxruntime_providers_cuda.so cannot resolve (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):"
      say "$missing"
      say "    install the matching nvidia-*-cu1x wheels (cuda-runtime, cublas, cudnn, cufft, curand) or set EXTRA_LD_PATH."
    fi
  fi
  if [[ $gpu_name == none* || $gpu_name == unknown* ]]; then
    say "  * no NVIDIA GPU is visible: $gpu_name"
  fi
  say "  * the daemon's own words:"
  clean_log | grep -iE 'provider|cuda|gpu|error' | tail -n 12 | sed 's/^/    /'
fi
if ((${#cuda_ok[@]} == 0)); then
  hr
  say "RESULT: CUDA did NOT register — no benchmark run. (KEEP_TMP=1 keeps the inferd log and the copies)"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# Measurements
rows=()
today=$(date -u +%Y-%m-%d)
row() { rows+=("| $today | $gpu_name | ${ort_version:-?} | $1 | $2 | $3 | $4 |"); }

# gen_bench NAME PROVIDER
gen_bench() {
  local name=$1 provider=$2 i out n tps ttft wall
  say "generation: $name ($provider), warmup + $GEN_RUNS runs of $GEN_TOKENS tokens"
  ctl generate "$name" "Hello" --max-tokens 16 --temperature 0 >/dev/null 2>&1
  local results=()
  for ((i = 1; i <= GEN_RUNS; i++)); do
    local t0 t1
    t0=$(date +%s.%N)
    out=$(ctl --json generate "$name" "<|im_start|>user
(run $i) Write a long story about a dragon.<|im_end|>
<|im_start|>assistant
" --max-tokens "$GEN_TOKENS" --temperature 0 --seed "$i" 2>&1)
    t1=$(date +%s.%N)
    local r
    r=$(printf '%s\n' "$out" | python3 -c '
import json, sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
info = None
for line in sys.stdin:
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get("type") == "finished":
        info = ev.get("info", {})
    elif ev.get("type") == "failed":
        print("error", ev.get("error"), ev.get("message")); sys.exit()
if info is None:
    print("error no finished event"); sys.exit()
n = int(info.get("completion_tokens", 0))
print(n, info.get("tokens_per_second", 0), info.get("time_to_first_token_ms", 0),
      n / (t1 - t0) if t1 > t0 else 0)' "$t0" "$t1")
    if [[ $r == error* ]]; then
      say "  run $i FAILED: ${r#error }"
      [[ -n $out ]] && say "  $(printf '%s\n' "$out" | tail -n 2)"
      return 1
    fi
    read -r n tps ttft wall <<<"$r"
    printf '  run %d: %s tokens, %.1f tokens/s decode, first token %.0f ms, %.1f tokens/s wall\n' \
      "$i" "$n" "$tps" "$ttft" "$wall"
    results+=("$r")
  done
  local med
  med=$(printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
print(*(statistics.median(r[i] for r in rows) for i in range(4)))')
  read -r n tps ttft wall <<<"$med"
  printf '  median: %.1f tokens/s decode (%.1f wall, %.0f tokens), first token %.0f ms\n' "$tps" "$wall" "$n" "$ttft"
  [[ ${n%.*} -lt $GEN_TOKENS ]] && say "  note: runs stopped before $GEN_TOKENS tokens (EOS); tokens/s is over fewer tokens"
  row "$name" "$provider" "decode tokens/s ($GEN_TOKENS tokens, median of $GEN_RUNS)" "$(printf '%.1f' "$tps")"
  row "$name" "$provider" "time to first token (20-token prompt)" "$(printf '%.0f ms' "$ttft")"
}

# embed_bench NAME PROVIDER
embed_bench() {
  local name=$1 provider=$2 texts=() i c
  for ((i = 0; i < EMBED_BATCH; i++)); do
    texts+=("Sentence number $i: a man is playing a guitar on a sunny afternoon.")
  done
  say "embeddings: $name ($provider), $EMBED_REQUESTS requests of $EMBED_BATCH texts over $EMBED_CLIENTS clients"
  if ! ctl embed "$name" "${texts[@]}" >/dev/null 2>"$tmp/embed.err"; then
    say "  FAILED: $(cat "$tmp/embed.err")"
    return 1
  fi
  ctl embed "$name" "${texts[@]}" >/dev/null 2>&1
  local per=$(((EMBED_REQUESTS + EMBED_CLIENTS - 1) / EMBED_CLIENTS))
  local t0 t1 fails=0
  t0=$(date +%s.%N)
  client_pids=()
  for ((c = 0; c < EMBED_CLIENTS; c++)); do
    (
      f=0
      for ((i = 0; i < per; i++)); do ctl --json embed "$name" "${texts[@]}" >/dev/null 2>&1 || f=$((f + 1)); done
      exit $((f > 0))
    ) &
    client_pids+=($!)
  done
  for c in "${client_pids[@]}"; do wait "$c" || fails=$((fails + 1)); done
  client_pids=()
  t1=$(date +%s.%N)
  local rate
  rate=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}")' \
    "$((per * EMBED_CLIENTS * EMBED_BATCH))" "$t0" "$t1")
  say "  $rate texts/s ($((per * EMBED_CLIENTS)) requests, $(python3 -c "print(f'{$t1 - $t0:.2f}')") s; each request a new inferctl process)"
  ((fails)) && say "  WARNING: $fails client(s) saw failed requests"
  row "$name" "$provider" "embeddings texts/s ($((per * EMBED_CLIENTS))×$EMBED_BATCH, $EMBED_CLIENTS clients)" "$rate"
}

kind_of() { ctl --json models 2>/dev/null | python3 -c '
import json, sys
print(next((m["kind"] for m in json.load(sys.stdin) if m["name"] == sys.argv[1]), ""))' "$1"; }

bench() { # bench NAME PROVIDER
  case $(kind_of "$1") in
    text-generation) gen_bench "$1" "$2" ;;
    embedding) embed_bench "$1" "$2" ;;
    *) say "$1: no benchmark for kind $(kind_of "$1")" ;;
  esac
}

hr
for name in "${cuda_ok[@]}"; do bench "$name" "$want" || status=1; done

# ---------------------------------------------------------------------------------------------
# TensorRT
hr
trt_summary=""
if [[ $trt_present == 0 ]]; then
  trt_summary="TensorRT: not present (libnvinfer.so.10 not found)"
  say "$trt_summary"
elif [[ ! -f $trt_provider_lib ]]; then
  trt_summary="TensorRT: libnvinfer.so.10 loads, but $ort_dir has no libonnxruntime_providers_tensorrt.so"
  say "$trt_summary"
else
  have_warmup=0
  ctl warmup --help >/dev/null 2>&1 && have_warmup=1
  for name in "${trt_copies[@]}"; do
    say "TensorRT: $name (warming up; engine cache: $state/tensorrt/$name)"
    if ((have_warmup)); then
      ctl warmup "$name" || say "  inferctl warmup $name failed"
    else
      # No `inferctl warmup` in this build: a first request builds the engine.
      case $(kind_of "$name") in
        text-generation) ctl generate "$name" "Hello" --max-tokens 4 >/dev/null 2>&1 ;;
        embedding) ctl embed "$name" "warm up" >/dev/null 2>&1 ;;
      esac
    fi
    # Settled: on tensorrt, or not loading and no engine build for 10 s (a build the warmup
    # started in the background shows as engine_build_s).
    trt_start=$SECONDS
    deadline=$((SECONDS + TRT_TIMEOUT))
    while ((SECONDS < deadline)); do
      st=$(model_field "$name" 2)
      pv=$(model_field "$name" 3)
      b=$(model_field "$name" 4)
      [[ $st == ready && $pv == tensorrt && $b == - ]] && break
      [[ $st != loading && $b == - ]] && ((SECONDS - trt_start >= 10)) && break
      [[ $b != - ]] && say "  engine building for ${b}s on $pv…"
      sleep 5
    done
    st=$(model_field "$name" 2)
    pv=$(model_field "$name" 3)
    engines=$(find "$state/tensorrt/$name" -type f 2>/dev/null | wc -l)
    say "  after warmup: state $st, provider $pv, $engines file(s) in the engine cache"
    if [[ $st == ready && $pv == tensorrt ]]; then
      say "  OK    $name: on tensorrt"
      trt_summary+="TensorRT: $name on tensorrt. "
      bench "$name" tensorrt || status=1
    else
      note=$(model_text "$name" note)
      err=$(model_text "$name" error)
      say "  FAIL  $name: ended on '$pv' (state $st). note: ${note:--}  error: ${err:--}"
      trt_summary+="TensorRT: $name ended on $pv. "
      [[ $st == ready ]] && bench "$name" "$pv"
      ((status == 0)) && status=2
    fi
  done
fi

# ---------------------------------------------------------------------------------------------
hr
say "SUMMARY"
say "  ${want^^}: ${#cuda_ok[@]} of ${#cuda_models[@]} models on $want (${cuda_ok[*]})"
say "  ${trt_summary:-TensorRT: no model tried}"
say
say "Markdown for docs/benchmarks.md:"
say
say "| date | GPU | ONNX Runtime | model | provider | measure | value |"
say "|---|---|---|---|---|---|---:|"
for r in "${rows[@]}"; do say "$r"; done
if [[ $trt_present == 0 ]]; then
  say "| $today | $gpu_name | ${ort_version:-?} | - | tensorrt | not present (libnvinfer.so.10 not found) | - |"
fi
say
case $status in
  0) say "RESULT: OK" ;;
  1) say "RESULT: FAIL (a model meant for CUDA is not on cuda, or a benchmark failed)" ;;
  2) say "RESULT: CUDA OK, TensorRT FAIL" ;;
esac
exit "$status"
