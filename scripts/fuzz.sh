#!/usr/bin/env bash
# make fuzz: builds the libFuzzer harnesses of tests/fuzz (clang-14, build-fuzz/) and runs
# each for FUZZ_SECONDS (default 60) under `nice`, one after the other.
#   scripts/fuzz.sh [BUILD_DIR] [harness ...]      e.g. scripts/fuzz.sh build-fuzz config image
# The fuzzers start from the committed seeds (tests/fuzz/corpus/<name>) and keep what they
# learn in BUILD_DIR/fuzz-corpus/<name> (never in the repository). A crash, leak, hang
# (FUZZ_TIMEOUT seconds per input, default 30, 60 for the store harness) or memory blow-up (FUZZ_RSS_MB, default
# 2048) stops that harness, leaves the input in BUILD_DIR/fuzz-crashes/<name>/, and makes
# the script exit 1 at the end: copy it to tests/fuzz/regressions/<name>/ with the fix, so
# the normal test suite (fuzz_replay_<name>) replays it. Figures (executions, coverage)
# are libFuzzer's last lines, kept in BUILD_DIR/fuzz-logs/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
shift || true
seconds=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang-14}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (scripts/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2; exit 2; }
[ -f "$build/CMakeCache.txt" ] || CC=$cc cmake -S . -B "$build" -DSAEV_FUZZ=ON -DSAEV_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
# FUZZ_BUILD=0 skips the build (several fuzz.sh sharing one build folder must not build at once).
[ "${FUZZ_BUILD:-1}" = 0 ] || nice cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]}"
# Maximum input sizes: a few times the largest seed, so the fuzzer explores structure, not bulk.
declare -A max_len=([safetensors]=8192 [checkpoint]=8192 [image]=16384 [config]=8192 [store]=4096)
# Per-input time limits: the store harness writes and reads real HDF5 files (tens of ms
# each, seconds on a loaded shared machine at nice 19), the others parse memory.
declare -A timeout=([store]=60)  # default 30: a loaded shared machine stalls nice-19 processes for seconds
failed=()
for n in "${names[@]}"; do
  corpus="$build/fuzz-corpus/$n" crashes="$build/fuzz-crashes/$n" logs="$build/fuzz-logs"
  mkdir -p "$corpus" "$crashes" "$logs"
  echo "fuzz: $n for ${seconds}s (log $logs/$n.log)"
  extra=()
  [ -f "tests/fuzz/$n.dict" ] && extra+=("-dict=tests/fuzz/$n.dict")
  if ! nice -n 19 "${FUZZ_BIN:-$build/fuzz}/fuzz_$n" "$corpus" "tests/fuzz/corpus/$n" -max_total_time="$seconds" \
      -max_len="${max_len[$n]:-8192}" -timeout="${FUZZ_TIMEOUT:-${timeout[$n]:-30}}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
      -artifact_prefix="$crashes/" -print_final_stats=1 "${extra[@]}" >"$logs/$n.log" 2>&1; then
    failed+=("$n")
    echo "fuzz: $n FAILED: $(grep -m1 -E 'ERROR|SUMMARY' "$logs/$n.log" || true); inputs in $crashes" >&2
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|cov: ' "$logs/$n.log" | tail -3 | sed "s/^/fuzz: $n: /"
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in: ${failed[*]}" >&2; exit 1; }
echo "fuzz: every harness ran ${seconds}s without a crash"
