#!/usr/bin/env bash
# `make demo`: the whole pipeline on data built from Debian's archive alone.
#   1. demo/data: Fashion-MNIST image folder + ADE20K-style segmentation set (saev demo-data)
#   2. demo/model: a random-weight CLIP ViT-S/16 (saev make-model)
#   3. demo/store: its layer -2 for every image, recorded by 2 MPI ranks (saev activations);
#      demo/store-heldout: the same for 100 other Fashion-MNIST images (demo-data with
#      another seed), the evaluation's held-out data
#   4. demo/runs/sae/<i>: a sweep of four top-k SAEs trained together (saev train)
#   5. their evaluation on the held-out store (saev evaluate): eval.json + eval.svg beside each
#   6. demo/store-seg: blocks -2 and -1 of the segmentation set (ADE20K layout, patch labels)
#   7. probes (saev probe): a patch probe on block -1 (demo/runs/probe), and the sweep's first SAE's
#      codes on block -2 as features with every latent's F1 per class (demo/runs/probe-sae)
#   8. the faithfulness study (saev intervene): per class, suppress its best-F1 latent at
#      block -2 on its patches, run block -1, read the probe; next to a random latent and a
#      random direction of the same norm. The table is printed (demo/runs/study/study.md).
#      With random ViT weights these numbers show the machinery, not a finding (README).
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

step "1/8 demo data (Debian's Fashion-MNIST and photos): a training set and, from another seed, a held-out one"
[ -d demo/data ] || "$S" demo-data demo/data --seed 0
[ -d demo/data-heldout ] || "$S" demo-data demo/data-heldout --seed 1 --per-class 10 --seg-images 0
step "2/8 random-weight CLIP ViT-S/16"
[ -f demo/model/model.safetensors ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out demo/model
step "3/8 activations (2 ranks): the training images, then the held-out ones"
"$S" activations "$CFG"
"$S" activations "$CFG" --set data.root=demo/data-heldout/fashion --set activations.out=demo/store-heldout
"$S" inspect demo/store
step "4/8 train a sweep of 4 SAEs together"
"$S" train "$CFG"
step "5/8 evaluate"
"$S" evaluate "$CFG"
step "6/8 the segmentation set's blocks -2 and -1 (2 ranks)"
"$S" activations "$CFG" --set data.kind=ade20k --set data.root=demo/data/segmentation --set data.split=training \
    --set 'model.layers=[-2, -1]' --set activations.out=demo/store-seg
SAE=$(find demo/runs/sae -name sae.safetensors | sort | head -1) # the sweep's first SAE
step "7/8 probes: patches of block -1; the first SAE's codes of block -2 and the F1 of every latent per class"
[ -f demo/runs/probe/probe.safetensors ] || "$S" probe "$CFG"
[ -f demo/runs/probe-sae/latent_f1.safetensors ] || "$S" probe "$CFG" --set probe.layer=-2 --set probe.features=sae \
    --set "probe.sae=$SAE" --set probe.out=demo/runs/probe-sae
step "8/8 faithfulness study: suppress each class's best latent at block -2, run block -1, read the probe"
"$S" intervene "$CFG" --set "intervene.sae=$SAE" > /dev/null
echo
cat demo/runs/study/study.md
echo
echo "(random ViT weights: these rates show the machinery, not a finding; README.md, \"Probes and interventions\", gives the config for real weights)"
echo
echo "demo: done. Outputs under demo/: store/ (activations), runs/sae/<i>/ (checkpoints, metrics.jsonl, eval.json, eval.svg), runs/probe*/ (probe.json, confusion.svg, latent_f1.safetensors), runs/study/ (study.json, study.md, study.svg)"
