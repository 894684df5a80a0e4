#!/usr/bin/env bash
# `make bench`: every CPU benchmark, each printing saev-c's figure next to its peer's
# measured in the same run. The PyTorch peers need python3-torch (SAEV_BENCH_DEPS=1
# scripts/install-deps.sh installs it). GPU benchmarks run through scripts/gpu-check.sh.
set -uo pipefail
BUILD="${1:-build}"
SAEV_BENCH_DEPS=1 bash "$(dirname "$0")/install-deps.sh"
rc=0
run() { echo; echo "== $*"; "$@" || { echo "(failed: $*)"; rc=1; }; }
run "$BUILD/bench/bench_image"
run "$BUILD/bench/bench_vit"
run "$BUILD/bench/bench_store"
[ -x "$BUILD/bench/bench_sae" ] && run "$BUILD/bench/bench_sae"
run bash bench/bench_activations.sh "$BUILD"
run bash bench/bench_visuals.sh "$BUILD"
exit $rc
