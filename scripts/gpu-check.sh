#!/usr/bin/env bash
# gpu-check.sh: the one prepared script for the GPU machine. In one run, every step inside
# its own timeout and all of them inside 500 s: a preflight of the carried binaries, the
# GPU tests (test_cuda_vit: the CUDA ViT against the transformers fixtures in fp32, tf32
# and bf16; test_cuda_sae: the CUDA SAE against saev's steps), `saev activations` and
# `saev train --device cuda` end to end on 3,000 images made on the machine, then the
# benchmarks next to their PyTorch peers and the scaling-model inputs (docs/scaling.md),
# ending with one summary.
#
# The GPU machine (Ubuntu 24.04, CUDA 13, PyTorch, its own mpirun/libmpi, serial HDF5
# only) does not build saev-c: build here, collect, carry.
#   here:   cmake -S . -B build-cuda && nice cmake --build build-cuda -j2 \
#             --target saev saev-worker test_cuda_vit test_cuda_sae bench_vit_cuda bench_sae_cuda
#           bash scripts/gpu-check.sh --collect-libs
#     (copies the six programs into build-cuda/gpu-carry/{bin,tests,bench}, strips them,
#      copies the Debian libraries they need that the GPU machine may lack (parallel HDF5,
#      OpenBLAS, libyaml, cJSON, turbojpeg, png, Check, curl, ...) into
#      build-cuda/gpu-carry/libs, sets every program's rpath to $ORIGIN/../libs (DT_RPATH,
#      so it also serves the libraries' own dependencies) and every library's to $ORIGIN:
#      nothing sets LD_LIBRARY_PATH, so the PyTorch peers load exactly what they would
#      alone. Then it packs build-cuda/gpu-carry.tar.gz and prints its size: about 23 MiB,
#      which with the working tree (about 15 MiB, tests/fixtures included) stays under the
#      64 MiB a device run carries; the folder itself is 67 MiB, OpenBLAS alone 37.)
#   device run:  command   bash scripts/gpu-check.sh
#                carry     ["build-cuda/gpu-carry.tar.gz"]
#                timeout_s 540
#     (the fixtures travel with the working tree: tests/fixtures; logs land in $OUT)
# Not carried: glibc and the GCC runtime, CUDA, cuBLAS and NCCL (hundreds of MB; the
# preflight finds the machine's, e.g. in the Python environment's nvidia/*/lib, and links
# them into the carry's libs folder), and Open MPI (the machine's libmpi.so.40 and mpirun;
# Debian's Open MPI does not start there without its plugins). Without an mpirun on PATH,
# or when the machine's mpirun fails to start the carried worker, one rank runs without it
# (MPI singleton) through a shim.
# Exit status: 0 when every step passed, 1 when one failed, 2 when the preflight stopped.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build-cuda}"
CARRY="$BUILD/gpu-carry" # what travels (< 64 MiB)
LIBS="$CARRY/libs"
PROGRAMS=(bin/saev bin/saev-worker tests/test_cuda_vit tests/test_cuda_sae bench/bench_vit_cuda bench/bench_sae_cuda)

if [ "${1:-}" = "--collect-libs" ]; then
    command -v patchelf > /dev/null || { echo "gpu-check: patchelf is needed (scripts/install-deps.sh installs it)" >&2; exit 2; }
    rm -rf "$CARRY"
    mkdir -p "$LIBS" "$CARRY/bin" "$CARRY/tests" "$CARRY/bench"
    for p in "${PROGRAMS[@]}"; do
        [ -x "$BUILD/$p" ] || { echo "gpu-check: $BUILD/$p is missing; build it first (see this script's header)" >&2; exit 2; }
        cp "$BUILD/$p" "$CARRY/$p"
        strip "$CARRY/$p"
    done
    for p in "${PROGRAMS[@]}"; do
        ldd "$BUILD/$p" | awk '/=> \//{print $3}' | while read -r lib; do
            case "$(basename "$lib")" in
                libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;; # the machine's
                libcuda.so*|libcudart.so*|libcublas*|libnccl*) ;; # the machine's (the preflight finds them)
                libmpi.so*|libopen-rte.so*|libopen-pal.so*|libpmix.so*|libhwloc.so*|libevent*|libfabric.so*|libuc[pstm].so*|libibverbs.so*|librdmacm.so*|libnl-*|libpsm*|libmunge.so*) ;; # Open MPI: the machine's
                *) [ -e "$LIBS/$(basename "$lib")" ] || cp -L "$lib" "$LIBS/" ;;
            esac
        done
    done
    for p in "${PROGRAMS[@]}"; do patchelf --force-rpath --set-rpath '$ORIGIN/../libs' "$CARRY/$p"; done
    for lib in "$LIBS"/*; do
        strip --strip-unneeded "$lib" 2> /dev/null
        patchelf --set-rpath '$ORIGIN' "$lib"
    done
    tar -C "$BUILD" -czf "$BUILD/gpu-carry.tar.gz.tmp" gpu-carry && mv "$BUILD/gpu-carry.tar.gz.tmp" "$BUILD/gpu-carry.tar.gz"
    bytes=$(stat -c %s "$BUILD/gpu-carry.tar.gz")
    echo "gpu-check: carry $BUILD/gpu-carry.tar.gz: ${#PROGRAMS[@]} programs, $(ls "$LIBS" | wc -l) libraries, $((bytes / 1048576)) MiB ($bytes bytes; unpacked $(du -sm "$CARRY" | cut -f1) MiB)"
    # what a device run carries: this file and the working tree, 64 MiB in all
    tree=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2> /dev/null | tail -1 | cut -f1)
    echo "gpu-check: with the working tree ($((tree / 1048576)) MiB): $(((bytes + tree) / 1048576)) MiB of 64"
    [ $((bytes + tree)) -lt $((64 * 1048576)) ] || { echo "gpu-check: the carry and the working tree exceed 64 MiB" >&2; exit 1; }
    exit 0
fi

# ---- on the GPU machine ----------------------------------------------------------------
T0=$(date +%s)
TOTAL=500 # seconds for everything, the preflight included; the device run's timeout (540) leaves 40 s
OUTDIR="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUTDIR"
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
export SAEV_ROOT="$ROOT" SAEV_FIXTURES="$ROOT/tests/fixtures" CK_DEFAULT_TIMEOUT=600
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
summary=""
left() { echo $((TOTAL - ($(date +%s) - T0))); }
# step NAME BUDGET_S LOG COMMAND...: runs COMMAND with a timeout of BUDGET_S, or of what is
# left of TOTAL when that is less; records PASS/FAIL/SKIP with its time.
step() {
    local name=$1 budget=$2 log=$3
    shift 3
    local t=$(left)
    [ "$budget" -lt "$t" ] || budget=$t
    if [ "$budget" -lt 5 ]; then
        summary+="| $name | NOT RUN (the 500 s were spent) | |"$'\n'
        status=1
        return 1
    fi
    local start=$(date +%s) r
    timeout --kill-after=5 "$budget" "$@" > "$log" 2>&1
    local rc=$?
    case $rc in
        0) r=PASS
           # the benchmarks exit 0 without a GPU: here that is a failure of this run
           grep -q "^skipped: no GPU" "$log" && { r=SKIPPED; status=1; } ;;
        77) r=SKIPPED; status=1 ;; # a GPU test that finds no GPU here is a failure of this run
        124|137) r="TIMEOUT after ${budget} s"; status=1 ;;
        *) r="FAIL (exit $rc)"; status=1 ;;
    esac
    summary+="| $name | $r | $(($(date +%s) - start)) s |"$'\n'
    echo "== $name: $r ($(($(date +%s) - start)) s), log $log"
    tail -4 "$log"
    [ $rc = 0 ]
}

echo "== preflight"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu-check: nvidia-smi failed: no usable GPU here" >&2; exit 2; }
# unpacked where this run may write (the preflight links libraries into it)
[ -f "$BUILD/gpu-carry.tar.gz" ] || { echo "gpu-check: $BUILD/gpu-carry.tar.gz is missing: carry it (see this script's header)" >&2; exit 2; }
tar -C "$WORK" -xzf "$BUILD/gpu-carry.tar.gz" || { echo "gpu-check: cannot unpack $BUILD/gpu-carry.tar.gz into $WORK" >&2; exit 2; }
CARRY="$WORK/gpu-carry"
LIBS="$CARRY/libs"
missing() { for p in "${PROGRAMS[@]}"; do ldd "$CARRY/$p" 2>&1 | awk '/not found/{print $1}'; done | sort -u; }
# Libraries the carry leaves to the machine (CUDA runtime, cuBLAS, NCCL, Open MPI): where
# the loader does not see them, look where Python wheels, toolkits and MPI stacks keep
# them, and link the first match into the carry's libs folder (the programs' rpath).
search_dirs=()
pyroot=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2> /dev/null || true)
for d in $pyroot; do for l in "$d"/nvidia/*/lib; do [ -d "$l" ] && search_dirs+=("$l"); done; done
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /opt/hpcx/ompi/lib /usr/lib/x86_64-linux-gnu/openmpi/lib /opt /usr/lib /usr/local; do
    [ -d "$d" ] && search_dirs+=("$d")
done
need=$(missing)
if [ -n "$need" ]; then
    names=()
    for lib in $need; do names+=(-o -name "$lib"); done
    # one pass over the folders (at most 40 s), in their order: the first match of a name wins
    timeout 40 find "${search_dirs[@]}" \( -false "${names[@]}" \) \( -type f -o -type l \) 2> /dev/null > "$WORK/found.txt"
    for lib in $need; do
        found=$(awk -v n="$lib" '{m = $0; sub(".*/", "", m); if (m == n) {print; exit}}' "$WORK/found.txt")
        if [ -n "$found" ]; then
            ln -sf "$found" "$LIBS/$lib"
            echo "preflight: $lib -> $found"
        fi
    done
fi
still=$(missing)
if [ -n "$still" ]; then
    for lib in $still; do
        echo "gpu-check: preflight: $lib is needed by $(for p in "${PROGRAMS[@]}"; do ldd "$CARRY/$p" 2>&1 | grep -q "$lib => not found" && printf '%s ' "$p"; done)but is not on this machine (searched the loader's path and ${search_dirs[*]})" >&2
    done
    exit 2
fi
# One rank without mpirun: the launcher runs `mpirun -np 1 WORKER ...`; this shim runs
# WORKER alone (MPI singleton). Used when the machine has no mpirun, or when the machine's
# mpirun fails to start the carried worker.
shim_mpirun() {
    mkdir -p "$WORK/shim"
    printf '#!/bin/sh\n# one rank without mpirun (MPI singleton): drop "-np 1"\n[ "$1" = -np ] && [ "$2" = 1 ] || { echo "gpu-check shim: only -np 1" >&2; exit 2; }\nshift 2\nexec "$@"\n' > "$WORK/shim/mpirun"
    chmod +x "$WORK/shim/mpirun"
    export PATH="$WORK/shim:$PATH"
}
if ! command -v mpirun > /dev/null; then
    shim_mpirun
    echo "preflight: no mpirun here: one rank runs without it"
else
    echo "preflight: mpirun $(command -v mpirun) ($(mpirun --version 2>&1 | head -1))"
fi
echo "preflight: every library found ($(($(date +%s) - T0)) s)"

echo "== GPU tests"
step test_cuda_vit 90 "$OUTDIR/test_cuda_vit.log" "$CARRY/tests/test_cuda_vit"
step test_cuda_sae 60 "$OUTDIR/test_cuda_sae.log" "$CARRY/tests/test_cuda_sae"

echo "== end to end: saev activations and saev train --device cuda on 3,000 images made here"
SAEV="$CARRY/bin/saev"
# 3,000 PNGs (160x120, 10 class folders) from a fixed generator: smooth colour fields with
# noise, written with zlib alone so no imaging package is needed.
step "make 3,000 PNG images" 45 "$OUTDIR/make_images.log" python3 - "$WORK/images" 3000 << 'EOF'
import os, random, struct, sys, zlib
root, n = sys.argv[1], int(sys.argv[2])
W, H, L = 160, 120, 1 + 160 * 3
rng = random.Random(0)
def chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)
# per class, H rows of a smooth colour field (filter byte 0 first); each image XORs
# low-bit noise into them with big-integer operations, which run at C speed
fields = []
for c in range(10):
    r0, g0, b0 = rng.randrange(256), rng.randrange(256), rng.randrange(256)
    fields.append([int.from_bytes(b'\x00' + bytes(v & 255 for x in range(W) for v in (r0 + x, g0 + y + 25 * c, b0 + x + y)), 'big')
                   for y in range(H)])
mask = int.from_bytes(b'\x00' + b'\x1f' * (L - 1), 'big')
for i in range(n):
    cls = i % 10
    os.makedirs(os.path.join(root, f'class{cls}'), exist_ok=True)
    raw = b''.join((f ^ (int.from_bytes(os.urandom(L), 'big') & mask)).to_bytes(L, 'big') for f in fields[cls])
    png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, 8, 2, 0, 0, 0)) \
        + chunk(b'IDAT', zlib.compress(raw, 1)) + chunk(b'IEND', b'')
    with open(os.path.join(root, f'class{cls}', f'{i:05d}.png'), 'wb') as f:
        f.write(png)
print(f'{n} images under {root}')
EOF
cat > "$WORK/gpu.yaml" << EOF
run: {name: gpu-check, out_dir: $WORK/runs, ranks: 1, device: cuda}
data: {kind: folder, root: $WORK/images}
model: {path: $WORK/model, layers: [-2], dtype: bf16}
activations: {out: $WORK/store, dtype: float16, batch_size: 256}
train:
  data: $WORK/store
  layer: -2
  batch_size: 16384
  steps: 30
  lr: 4.0e-4
  lr_warmup: 5
  metrics_every: 5
  precision: tf32
  out_dir: $WORK/runs/sae
  sae: {d_sae: 12288, activation: top-k, k: 32}
EOF
step "make-model clip vit-b-16" 40 "$OUTDIR/make_model.log" "$SAEV" make-model --family clip --preset vit-b-16 --seed 0 --out "$WORK/model"
acts_ok=0
step "saev activations (ViT-B/16 bf16, layer -2, fp16 store, 1 rank)" 50 "$OUTDIR/activations.log" "$SAEV" activations "$WORK/gpu.yaml" && acts_ok=1
if [ $acts_ok = 0 ] && [ ! -x "$WORK/shim/mpirun" ] && grep -qi "mpirun\|orte\|prte\|pmix" "$OUTDIR/activations.log"; then
    shim_mpirun # the machine's mpirun could not run the worker: once more, one rank without it (the store resumes)
    step "saev activations, one rank without mpirun" 50 "$OUTDIR/activations-singleton.log" "$SAEV" activations "$WORK/gpu.yaml" && acts_ok=1
fi
[ $acts_ok = 1 ] &&
    step "saev inspect store" 10 "$OUTDIR/inspect.log" "$SAEV" inspect "$WORK/store" &&
    step "saev train --device cuda (top-k 32, 12,288 latents, batch 16,384, 30 steps, tf32)" 45 "$OUTDIR/train.log" \
        "$SAEV" train "$WORK/gpu.yaml" --device cuda

echo "== benchmarks next to their peers"
step "bench_vit_cuda (ViT-B/16, ViT-L/14; fp32, tf32, bf16; PyTorch peer)" 120 "$OUTDIR/bench_vit_cuda.log" "$CARRY/bench/bench_vit_cuda" --iters 3
step "bench_sae_cuda (d 768, 12,288 latents, batch 16,384; peers)" 70 "$OUTDIR/bench_sae_cuda.log" "$CARRY/bench/bench_sae_cuda" --steps 5
# scaling-model inputs (docs/scaling.md): the step at half the batch (t_tok, t_opt) and one
# all-reduce of the flat gradient on an NCCL communicator of one
step "bench_sae_cuda --batch 8192 (scaling)" 25 "$OUTDIR/bench_sae_cuda_8192.log" "$CARRY/bench/bench_sae_cuda" --steps 5 --batch 8192 --no-peer
step "bench_sae_cuda --allreduce (scaling)" 20 "$OUTDIR/bench_sae_cuda_allreduce.log" "$CARRY/bench/bench_sae_cuda" --allreduce

echo
echo "| step | result | time |"
echo "|---|---|---|"
printf "%s" "$summary"
echo
[ -f "$OUTDIR/activations.log" ] && grep -h 'images/s' "$OUTDIR/activations.log" | tail -1
[ -f "$OUTDIR/train.log" ] && grep -h 'tokens/s' "$OUTDIR/train.log" | tail -2
for f in bench_vit_cuda bench_sae_cuda bench_sae_cuda_8192; do
    [ -f "$OUTDIR/$f.log" ] && { echo; grep '^|' "$OUTDIR/$f.log" || tail -5 "$OUTDIR/$f.log"; }
done
[ -f "$OUTDIR/bench_sae_cuda_allreduce.log" ] && grep -h 'staging\|^| all-reduce' "$OUTDIR/bench_sae_cuda.log" "$OUTDIR/bench_sae_cuda_allreduce.log"
echo "gpu-check: $(($(date +%s) - T0)) s in all; logs in $OUTDIR"
rm -rf "$WORK"
exit $status
