#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECS seconds each, seeded from fuzz/corpus/<target>.
# New inputs go to OUT/<target> (the repo corpus is only read), crashes to fuzz/artifacts/.
# Writes OUT/fuzz.json: per target, executions, seconds, crashes. Usage: fuzz.sh SECS OUT
set -euo pipefail
secs=${1:?seconds per target}
out=${2:?output folder}
cd "$(dirname "$0")/../fuzz"
mkdir -p "$out"
# cargo-fuzz needs nightly flags; use a nightly toolchain when rustup has one, else let the
# stable compiler accept them (the same compiler, no download).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
targets=$(cargo "${toolchain[@]}" fuzz list)
echo "{" > "$out/fuzz.json.tmp"
first=1
for t in $targets; do
  mkdir -p "$out/$t"
  log="$out/$t.log"
  # -s none: the code is safe Rust; what fuzzing finds here are panics, which need no
  # sanitizer, and the build is far faster without one.
  if cargo "${toolchain[@]}" fuzz run -s none --release "$t" "$out/$t" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    echo "fuzz target $t failed; see $log and fuzz/artifacts/$t/" >&2
    tail -30 "$log" >&2
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  [ $first = 1 ] || echo "," >> "$out/fuzz.json.tmp"
  first=0
  printf '  "%s": {"seconds": %s, "executions": %s, "crashes": %s}' "$t" "$secs" "${runs:-0}" "$crashes" >> "$out/fuzz.json.tmp"
  echo "fuzz $t: ${runs:-0} executions in ${secs}s, crashes: $crashes"
  [ $crashes = 0 ] || { echo "}" >> "$out/fuzz.json.tmp"; mv "$out/fuzz.json.tmp" "$out/fuzz.json"; exit 1; }
done
echo "" >> "$out/fuzz.json.tmp"
echo "}" >> "$out/fuzz.json.tmp"
mv "$out/fuzz.json.tmp" "$out/fuzz.json"
