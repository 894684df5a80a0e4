#!/usr/bin/env bash
# gpu-check.sh: the CUDA path on a GPU machine in one command: the GPU tests (CUDA ViT
# against the transformers fixtures in fp32/tf32/bf16, CUDA SAE against saev's steps,
# top-k selection, all through the SAE dispatch layer), then bench_vit_cuda and bench_sae_cuda
# next to PyTorch on the same GPU, plus the scaling-model inputs (docs/scaling.md), ending with
# their tables. Runs in well under 5 minutes on an H100.
#
# The GPU machine (Ubuntu 24.04, CUDA 13, PyTorch, serial HDF5 only) cannot build
# saev-c, so build here and carry the build:
#   1. here:  cmake -S . -B build-cuda && cmake --build build-cuda -j2
#             bash scripts/gpu-check.sh --collect-libs   # copies the Debian shared
#             # libraries the binaries need (parallel HDF5, Open MPI, OpenBLAS, libyaml,
#             # cJSON, turbojpeg, png, check...) into build-cuda/gpu-libs, found with ldd
#   2. there: bash scripts/gpu-check.sh    # runs build-cuda/gpu-carry/{tests,bench} with
#      # LD_LIBRARY_PATH=build-cuda/gpu-carry/libs
#      (as a device run: command "bash scripts/gpu-check.sh", carry ["build-cuda/gpu-carry.tar.gz"];
#       the fixtures travel with the working tree: tests/fixtures)
# CUDA, cuBLAS and NCCL libraries are the GPU machine's own and are not copied.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build-cuda}"
CARRY="$BUILD/gpu-carry" # binaries + libraries: what travels (< 64 MiB)
LIBS="$CARRY/libs"

if [ "${1:-}" = "--collect-libs" ]; then
    rm -rf "$CARRY"; mkdir -p "$LIBS" "$CARRY/tests" "$CARRY/bench"
    cp "$BUILD"/tests/test_cuda_* "$CARRY/tests/"; cp "$BUILD"/bench/bench_*_cuda "$CARRY/bench/"
    strip "$CARRY"/tests/* "$CARRY"/bench/* 2>/dev/null
    for bin in "$CARRY"/tests/* "$CARRY"/bench/*; do
        [ -x "$bin" ] || continue
        ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
            case "$lib" in
                */libc.so*|*/libresolv.so*|*/libm.so*|*/libpthread.so*|*/libdl.so*|*/librt.so*|*/ld-linux*|*/libgcc_s.so*|*/libstdc++.so*) ;;
                */cuda/*|*libcuda.so*|*libcublas*|*libcudart*|*libnccl*) ;;
                *) cp -Lu "$lib" "$LIBS/" ;;
            esac
        done
    done
    tar -C "$BUILD" -czf "$BUILD/gpu-carry.tar.gz" gpu-carry
    echo "carry $BUILD/gpu-carry.tar.gz ($(du -sh "$BUILD/gpu-carry.tar.gz" | cut -f1)); folder $CARRY: $(ls "$LIBS" | wc -l) libraries, $(du -sh "$CARRY" | cut -f1) in all"
    exit 0
fi

[ -d "$CARRY" ] || tar -C "$BUILD" -xzf "$BUILD/gpu-carry.tar.gz" # carried compressed
export LD_LIBRARY_PATH="$LIBS:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export SAEV_ROOT="$ROOT" SAEV_FIXTURES="${SAEV_FIXTURES:-$ROOT/tests/fixtures}" CK_DEFAULT_TIMEOUT=600
OUTDIR="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
summary=""
for t in test_cuda_vit test_cuda_sae; do
    start=$(date +%s)
    if timeout 240 "$CARRY/tests/$t" > "$OUTDIR/$t.log" 2>&1; then r=PASS; else r=FAIL; status=1; fi
    grep -q "skipped: no GPU" "$OUTDIR/$t.log" && { r=SKIPPED; status=1; }
    summary+="| $t | $r | $(( $(date +%s) - start )) s |"$'\n'
    tail -3 "$OUTDIR/$t.log"
done
timeout 200 "$CARRY/bench/bench_vit_cuda" --iters 3 > "$OUTDIR/bench_vit_cuda.log" 2>&1 || status=1
timeout 120 "$CARRY/bench/bench_sae_cuda" --steps 5 > "$OUTDIR/bench_sae_cuda.log" 2>&1 || status=1
# scaling-model inputs (docs/scaling.md): step time at half the batch (t_tok, t_opt) and one
# all-reduce of the flat gradient on an NCCL communicator of one
timeout 60 "$CARRY/bench/bench_sae_cuda" --steps 5 --batch 8192 --no-peer > "$OUTDIR/bench_sae_cuda_8192.log" 2>&1 || status=1
timeout 60 "$CARRY/bench/bench_sae_cuda" --allreduce > "$OUTDIR/bench_sae_cuda_allreduce.log" 2>&1 || status=1
echo
echo "| GPU test | result | time |"
echo "|---|---|---|"
printf "%s" "$summary"
echo
grep '^|' "$OUTDIR/bench_vit_cuda.log" || tail -5 "$OUTDIR/bench_vit_cuda.log"
echo
grep '^|' "$OUTDIR/bench_sae_cuda.log" || tail -5 "$OUTDIR/bench_sae_cuda.log"
echo
grep '^|' "$OUTDIR/bench_sae_cuda_8192.log" || tail -5 "$OUTDIR/bench_sae_cuda_8192.log"
grep -h 'staging\|^| all-reduce' "$OUTDIR/bench_sae_cuda.log" "$OUTDIR/bench_sae_cuda_allreduce.log" || tail -5 "$OUTDIR/bench_sae_cuda_allreduce.log"
exit $status
