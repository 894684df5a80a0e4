#!/usr/bin/env bash
# bench_visuals.sh: `saev visuals` next to `saev evaluate`, measured in one run on the same
# store and the same SAE, both one encode pass over every row on one rank:
#   pass       rows/s of visuals' pass (read, encode, per-latent statistics) and of
#              evaluate's (read, encode, decode, sums), from each one's final progress line,
#              and their ratio (target: visuals >= 0.8x evaluate);
#   rendering  400 latents x 25 images (re-read, preprocessed, re-encoded, three PNGs and a
#              JSON entry each), pictures per second from visuals' own timing line.
# Data: a random-weight CLIP ViT-S/16 on N_IMAGES demo Fashion-MNIST images (224 px, 196
# patches, d 384) and a top-k SAE (d_sae 3072, k 32) trained briefly on them.
# usage: bench/bench_visuals.sh [BUILD_DIR] [WORK_DIR]
# env: N_IMAGES (default 200); STORE and SAE to measure an existing store and checkpoint
# instead, with DATA_ROOT their image folder (e.g. the demo's: STORE=demo/store
# SAE=demo/runs/sae/<i>/sae.safetensors DATA_ROOT=demo/data/fashion);
# N_RENDER (default 400) and TOP_K (default 25) for the rendering line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
W="${2:-$(mktemp -d /tmp/bench-visuals.XXXXXX)}"
N_IMAGES=${N_IMAGES:-200}
N_RENDER=${N_RENDER:-400}
TOP_K=${TOP_K:-25}
[ -n "${STORE:-}" ] && STORE=$(realpath "$STORE")
[ -n "${SAE:-}" ] && SAE=$(realpath "$SAE")
DATA_ROOT=$(realpath -m "${DATA_ROOT:-$W/data/fashion}")
S="$BUILD/bin/saev"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$W" && cd "$W"
echo "bench_visuals: work in $W; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}; $(nproc) cores"

[ -n "${STORE:-}" ] || [ -d data ] || "$S" demo-data data --per-class $((N_IMAGES / 10)) --seg-images 0 > /dev/null
[ -n "${STORE:-}" ] || [ -f model/model.safetensors ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out model > /dev/null
cat > b.yaml <<YAML
run: {ranks: 1}
data: {kind: folder, root: "$DATA_ROOT"}
model: {path: model, layers: [-2]}
activations: {out: store, batch_size: 16, dtype: float32, resume: true}
train:
  data: store
  batch_size: 1024
  steps: 30
  lr: 1.0e-3
  out_dir: sae
  sae: {expansion: 8, activation: top-k, k: 32}
evaluate: {sae: ["${SAE:-sae}"], data: "${STORE:-store}", batch_size: 1024}
visuals: {sae: ["${SAE:-sae}"], data: "${STORE:-store}", batch_size: 1024, top_k: $TOP_K, n_render: $N_RENDER,
          log_freq_range: [-9, 0], log_value_range: [-9, 9], out: vis}
YAML
if [ -z "${STORE:-}" ]; then
  "$S" activations b.yaml --ranks 2 > acts.log 2>&1   # resumes: nothing to do the second time
  [ -f sae/sae.safetensors ] || "$S" train b.yaml > train.log 2>&1
fi

rate() { grep -o "progress: [0-9]*/[0-9]* $2 *[0-9.e+]*/s" "$1" | tail -1 | awk '{print $4}' | tr -d '/s'; }

rm -rf vis
"$S" evaluate b.yaml --ranks 1 --set evaluate.out=eval > eval.log 2>&1
"$S" visuals b.yaml --ranks 1 --set visuals.n_render=0 > pass.log 2>&1   # the pass alone
"$S" visuals b.yaml --ranks 1 > render.log 2>&1   # reuses the pass: rendering alone
ev=$(rate eval.log tokens); vi=$(rate pass.log tokens)
line=$(grep "rendered .* pictures" render.log | tail -1)
echo
printf "%-40s %14s rows/s\n" "saev evaluate pass (1 rank)" "$ev"
printf "%-40s %14s rows/s   (%.2fx evaluate; target >= 0.8x)\n" "saev visuals pass (1 rank)" "$vi" "$(awk -v a="$vi" -v b="$ev" 'BEGIN{print a/b}')"
echo "saev visuals rendering, $N_RENDER latents x $TOP_K images: ${line#*visuals: }"
