#!/usr/bin/env bash
# `make demo`: the whole pipeline on data built from Debian's archive alone.
#   1. demo/data: Fashion-MNIST image folder + ADE20K-style segmentation set (saev demo-data)
#   2. demo/model: a random-weight CLIP ViT-S/16 (saev make-model)
#   3. demo/store: its layer -2 for every image, recorded by 2 MPI ranks (saev activations);
#      demo/store-heldout: the same for the segmentation set, the evaluation's held-out data
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

step "1/5 demo data (Debian's Fashion-MNIST and photos)"
[ -d demo/data ] || "$S" demo-data demo/data --seed 0
step "2/5 random-weight CLIP ViT-S/16"
[ -f demo/model/model.safetensors ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out demo/model
step "3/5 activations (2 ranks): the Fashion-MNIST folder, then the held-out segmentation photos"
"$S" activations "$CFG"
"$S" activations "$CFG" --set data.kind=ade20k --set data.root=demo/data/segmentation --set activations.out=demo/store-heldout
"$S" inspect demo/store
step "4/5 train a sweep of 4 SAEs together"
"$S" train "$CFG"
step "5/5 evaluate"
"$S" evaluate "$CFG"
echo
echo "demo: done. Outputs under demo/: store/ (activations), runs/sae/<i>/ (checkpoints, metrics.jsonl, eval.json, eval.svg)"
