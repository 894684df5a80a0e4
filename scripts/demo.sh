#!/usr/bin/env bash
# `make demo`: the whole pipeline on data built from Debian's archive alone.
#   1. demo/data: Fashion-MNIST image folder + ADE20K-style segmentation set (saev demo-data)
#   2. demo/model: a random-weight CLIP ViT-S/16 (saev make-model)
#   3. demo/store: its layer -2 for every image, recorded by 2 MPI ranks (saev activations);
#      demo/store-heldout: the same for 100 other Fashion-MNIST images (demo-data with
#      another seed), the evaluation's held-out data
#   4. demo/runs/sae/<i>: a sweep of four top-k SAEs trained together (saev train)
#   5. their evaluation on the held-out store (saev evaluate): eval.json + eval.svg beside each
# Steps whose outputs exist are resumed or skipped, so a second `make demo` is quick;
# `rm -rf demo` starts over. The config is configs/demo.yaml.
set -euo pipefail
BUILD="${1:-build}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
S="$BUILD/bin/saev"
CFG=configs/demo.yaml
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
step() { echo; echo "== $*"; }

step "1/5 demo data (Debian's Fashion-MNIST and photos): a training set and, from another seed, a held-out one"
[ -d demo/data ] || "$S" demo-data demo/data --seed 0
[ -d demo/data-heldout ] || "$S" demo-data demo/data-heldout --seed 1 --per-class 10 --seg-images 0
step "2/5 random-weight CLIP ViT-S/16"
[ -f demo/model/model.safetensors ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out demo/model
step "3/5 activations (2 ranks): the training images, then the held-out ones"
"$S" activations "$CFG"
"$S" activations "$CFG" --set data.root=demo/data-heldout/fashion --set activations.out=demo/store-heldout
"$S" inspect demo/store
step "4/5 train a sweep of 4 SAEs together"
"$S" train "$CFG"
step "5/5 evaluate"
"$S" evaluate "$CFG"
echo
echo "demo: done. Outputs under demo/: store/ (activations), runs/sae/<i>/ (checkpoints, metrics.jsonl, eval.json, eval.svg)"
echo "Browse them (then open the address it prints):"
echo "  $S serve demo/runs/sae"
