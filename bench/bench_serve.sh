#!/usr/bin/env bash
# bench_serve.sh: the viewer's live path on the demo's model (CLIP ViT-S/16 at 224, layer
# -2, an SAE of 8x expansion, top-k 32): an upload to `saev serve` (HTTP, decode,
# preprocess, ViT to block 10, SAE encode) against the target of 1 s, next to the same
# path in Pillow + PyTorch (bench/serve_torch_peer.py) with the same thread count, the
# two alternating image by image so both see the same machine load.
#
# usage: bench/bench_serve.sh [BUILD_DIR] [WORK_DIR]   (WORK_DIR default /tmp/saev-bench-serve,
# kept for reuse: data, model, store and SAE are made once)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
W="${2:-/tmp/saev-bench-serve}"
S="$BUILD/bin/saev"
N=20
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$W"; cd "$W"
[ -d data ] || "$S" demo-data data --per-class 3 --seg-images 0 >/dev/null
[ -d model ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out model >/dev/null
cat > bench.yaml <<YAML
run: {name: bench, out_dir: runs, ranks: 1}
data: {kind: folder, root: data/fashion}
model: {path: model, layers: [-2]}
activations: {out: store, batch_size: 32, dtype: float32}
train: {data: store, layer: -2, batch_size: 1024, steps: 10, lr_warmup: 2, out_dir: runs/sae, sae: {expansion: 8, activation: top-k, k: 32}}
YAML
[ -n "$(find runs -name sae.safetensors 2>/dev/null)" ] || "$S" run bench.yaml > run.log 2>&1 || { cat run.log; exit 1; }
SAE=$(find runs -name sae.safetensors | head -1)
threads=$(nproc)
echo "bench_serve: CLIP vit-s-16, layer -2 (block 10), SAE $(basename "$(dirname "$SAE")") (3072 latents, top-k 32); $threads cores, $N uploads"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
"$S" serve runs/sae --port 0 > serve.log 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT
for i in $(seq 1 300); do grep -q "saev serve: http" serve.log && break; sleep 0.1; done
port=$(grep -o 'http://127.0.0.1:[0-9]*' serve.log | sed 's/.*://')
coproc PEER { /usr/bin/python3 "$ROOT/bench/serve_torch_peer.py" model "$SAE" 11 "$threads"; }
read -r ready <&"${PEER[0]}"
[ "$ready" = ready ] || { echo "the PyTorch peer did not start"; exit 1; }
ours=(); server=(); peer=()
for img in $(find data/fashion -type f | sort | head -$N); do
  out=$(curl -s -w ' %{time_total}' --data-binary @"$img" "http://127.0.0.1:$port/api/sae/0/upload")
  ours+=("${out##* }")
  server+=("$(grep -o '"ms":[0-9.]*' <<<"$out" | cut -d: -f2)")
  echo "$img" >&"${PEER[1]}"
  read -r t <&"${PEER[0]}"
  peer+=("$t")
done
echo "" >&"${PEER[1]}"
stats() { printf '%s\n' "$@" | sort -g | awk -v s="$2" '{a[NR]=$1} END {printf "%10.0f %10.0f %10.0f", a[int((NR+1)/2)]*1000/s, a[int(NR*0.9+0.5)]*1000/s, a[NR]*1000/s}' s=1; }
printf "%-40s %10s %10s %10s\n" "upload, ms (target: under 1000)" "p50" "p90" "max"
printf "%-40s %s\n" "saev serve, client wall (HTTP incl.)" "$(stats "${ours[@]}")"
printf "%-40s %s\n" "saev serve, server-side (ms field)" "$(printf '%s\n' "${server[@]}" | sort -g | awk '{a[NR]=$1} END {printf "%10.0f %10.0f %10.0f", a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]}')"
printf "%-40s %s\n" "Pillow + PyTorch peer (same path)" "$(stats "${peer[@]}")"
