#!/usr/bin/env bash
# `make demo`: the whole pipeline on data built from Debian's archive alone.
#   1. demo/data: Fashion-MNIST image folder + ADE20K-style segmentation set (saev demo-data)
#   2. demo/model: a random-weight CLIP ViT-S/16 (saev make-model)
#   3. demo/store: its layer -2 for every image, recorded by 2 MPI ranks (saev activations);
#      demo/store-heldout: the same for 100 other Fashion-MNIST images (demo-data with
#      another seed), the evaluation's held-out data
#   4. demo/runs/sae/<i>: a sweep of four top-k SAEs trained together (saev train)
#   5. their evaluation on the held-out store (saev evaluate): eval.json + eval.svg beside each
#   6. their visuals on the training store (saev visuals): demo/runs/sae/<i>/visuals/ with
#      top.safetensors, summary.svg, index.json and latents/<s>/ (top images and heatmaps)
#   7. demo/store-seg: blocks -2 and -1 of the segmentation set (ADE20K layout, patch labels)
#   8. probes (saev probe): a patch probe on block -1 (demo/runs/probe), and the sweep's first SAE's
#      codes on block -2 as features with every latent's F1 per class (demo/runs/probe-sae)
#   9. the faithfulness study (saev intervene): per class, suppress its best-F1 latent at
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

step "1/9 demo data (Debian's Fashion-MNIST and photos): a training set and, from another seed, a held-out one"
[ -d demo/data ] || "$S" demo-data demo/data --seed 0
[ -d demo/data-heldout ] || "$S" demo-data demo/data-heldout --seed 1 --per-class 10 --seg-images 0
step "2/9 random-weight CLIP ViT-S/16"
[ -f demo/model/model.safetensors ] || "$S" make-model --family clip --preset vit-s-16 --seed 0 --out demo/model
step "3/9 activations (2 ranks): the training images, then the held-out ones"
"$S" activations "$CFG"
"$S" activations "$CFG" --set data.root=demo/data-heldout/fashion --set activations.out=demo/store-heldout
"$S" inspect demo/store
step "4/9 train a sweep of 4 SAEs together"
"$S" train "$CFG"
step "5/9 evaluate"
"$S" evaluate "$CFG"
step "6/9 visuals (2 ranks): top images and patch heatmaps of each SAE's latents"
"$S" visuals "$CFG"
step "7/9 the segmentation set's blocks -2 and -1 (2 ranks)"
"$S" activations "$CFG" --set data.kind=ade20k --set data.root=demo/data/segmentation --set data.split=training \
    --set 'model.layers=[-2, -1]' --set activations.out=demo/store-seg
SAE=$(find demo/runs/sae -name sae.safetensors | sort | head -1) # the sweep's first SAE
step "8/9 probes: patches of block -1; the first SAE's codes of block -2 and the F1 of every latent per class"
[ -f demo/runs/probe/probe.safetensors ] || "$S" probe "$CFG"
# The codes probe is here for its F1 tables, which do not depend on the probe's weights:
# a looser tol (max |gradient| 1e-2) lets its L-BFGS stop instead of running into max_iter
# (thousands of dead latents of the short random-ViT training make it ill-conditioned).
[ -f demo/runs/probe-sae/latent_f1.safetensors ] || "$S" probe "$CFG" --set probe.layer=-2 --set probe.features=sae \
    --set "probe.sae=$SAE" --set probe.tol=1.0e-2 --set probe.out=demo/runs/probe-sae
step "9/9 faithfulness study: suppress each class's best latent at block -2, run block -1, read the probe"
"$S" intervene "$CFG" --set "intervene.sae=$SAE" > /dev/null
echo
echo "demo: done. Outputs under demo/: store/ (activations), runs/sae/<i>/ (checkpoints, metrics.jsonl, eval.json, eval.svg),"
echo "  runs/probe*/ (probe.json, confusion.svg, latent_f1.safetensors), runs/study/ (study.json, study.md, study.svg)"
echo "Visuals: demo/runs/sae/<i>/visuals/: summary.svg (frequency and mean value of every latent),"
echo "  latents/<s>/<j>.png and <j>_heat.png (latent s's top images and where it fires), index.json. For example:"
for v in demo/runs/sae/*/visuals; do
  # the rendered latent with the most top images (then the most frequent)
  best=$(/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); l = max(d["latents"], key=lambda e: (e["n_images"], e["freq"])); print(l["latent"])' "$v/index.json")
  echo "  $v/summary.svg  $v/latents/$best/0_heat.png ($v/latents/$best/ holds its top images)"
done
echo
echo "Faithfulness study (demo/runs/study/study.md):"
cat demo/runs/study/study.md
echo
echo "(random ViT weights: these rates show the machinery, not a finding; README.md, \"Probes and interventions\", gives the config for real weights)"
echo
echo "Browse them (then open the address it prints):"
echo "  $S serve demo/runs/sae --probe demo/runs/probe/probe.safetensors   (the image page gets the intervention panel)"
