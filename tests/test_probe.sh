#!/usr/bin/env bash
# `saev probe` and `saev intervene` end to end on a tiny random CLIP and the demo's data:
#  - a class probe (CLS of block 2) and a patch probe (block 2) against scikit-learn's
#    LogisticRegression (C = 1/(l2 N)): weights within 1e-3, identical held-out predictions;
#  - the class probe on 1 and 2 ranks: the same optimum up to the stopping rule's bound;
#  - semantic probing (an SAE on block 1): counts against numpy, F1 tables from the counts;
#  - a zero edit changes nothing bit for bit; one edit against a float64 numpy
#    re-derivation through block 2; the same edit on the image's file matches the store's; the faithfulness study's rates from its predictions;
#  - bad input: exit 2, nothing written.
# Reference checks are tests/probe_check.py (numpy, h5py, sklearn via /usr/bin/python3).
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
CHECK="$SAEV_ROOT/tests/probe_check.py"
$PY -c "import sklearn, h5py" 2>/dev/null || { echo "skipped: python3-sklearn or python3-h5py missing (scripts/install-deps.sh installs them)"; exit 77; }
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"
"$S" demo-data data --per-class 6 --seg-images 30 >/dev/null
"$S" make-model --family clip --preset tiny --seed 5 --out model >/dev/null
cat > cfg.yaml <<YAML
run: {name: p, out_dir: runs, ranks: 2}
data: {kind: folder, root: data/fashion}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [1, 2]}
activations: {out: store-cls, batch_size: 8}
train:
  data: store-seg
  layer: 1
  batch_size: 64
  steps: 40
  lr_warmup: 2
  out_dir: runs/sae
  sae: {d_sae: 96, k: 4}
probe: {data: store-cls, layer: 2, target: class, pool: cls, l2: 1.0e-2, tol: 1.0e-9, max_iter: 20000, out: runs/cls}
intervene:
  data: store-seg
  layer: 1
  sae: runs/sae/sae.safetensors
  probe: runs/seg/probe.safetensors
YAML
"$S" activations cfg.yaml > log.txt 2>&1 || { cat log.txt; exit 1; }
"$S" activations cfg.yaml --set data.kind=ade20k --set data.root=data/segmentation --set data.split=training --set activations.out=store-seg > log.txt 2>&1 || { cat log.txt; exit 1; }
"$S" train cfg.yaml > log.txt 2>&1 || { cat log.txt; exit 1; }

# Class probe: 2 ranks and 1 rank, both against sklearn, and against each other.
"$S" probe cfg.yaml > log.txt 2>&1 || { cat log.txt; exit 1; }
grep -q "max |gradient| <= tol" log.txt || { cat log.txt; echo "FAIL: the class probe did not converge"; exit 1; }
"$S" probe cfg.yaml --ranks 1 --set probe.out=runs/cls1 > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" sklearn store-cls runs/cls
$PY "$CHECK" sklearn store-cls runs/cls1
$PY "$CHECK" same runs/cls runs/cls1
[ -s runs/cls/confusion.svg ] && grep -q "</svg>" runs/cls/confusion.svg

# Patch probe on block 2 (the study's probe), against sklearn.
PATCH=(--set probe.data=store-seg --set probe.target=patch --set probe.out=runs/seg --set probe.l2=1.0e-1 --set probe.tol=1.0e-8)
"$S" probe cfg.yaml "${PATCH[@]}" > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" sklearn store-seg runs/seg
grep -q '"mean_iou"' runs/seg/probe.json

# Semantic probing: SAE codes of block 1 as features, per-latent F1 tables.
"$S" probe cfg.yaml "${PATCH[@]}" --set probe.layer=1 --set probe.features=sae --set probe.sae=runs/sae/sae.safetensors \
    --set probe.tol=1.0e-5 --set probe.out=runs/sem > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" semantic store-seg runs/sem runs/sae/sae.safetensors

# A zero edit (scale 1 on every patch) changes nothing, bit for bit, through block 2.
"$S" intervene cfg.yaml --set 'intervene.edits=["3*1"]' --set intervene.save_activations=true --set intervene.out=runs/zero > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" zero runs/zero

# One edit: the largest code of a held-out image set to 0 on its patch, against float64 numpy.
IMG=$($PY -c "import json; print(json.load(open('runs/seg/probe.json'))['split']['test_images'][0])")
read LAT PATCH_I < <($PY "$CHECK" pick store-seg runs/sae/sae.safetensors 1 "$IMG")
"$S" intervene cfg.yaml --set "intervene.edits=[\"$LAT=0@patches:$PATCH_I\"]" --set "intervene.images=[$IMG]" \
    --set intervene.save_activations=true --set intervene.out=runs/edit > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" edit store-seg model runs/sae/sae.safetensors runs/edit 1 2 "$LAT" "$PATCH_I" "$IMG"

# The same edit on the image's file (decode, the store's preprocessing, the ViT to block 1):
# the store image's results, up to the GEMM blocking of another batch size.
FILE=$($PY "$CHECK" file-path store-seg data/segmentation/images/training "$IMG")
"$S" intervene cfg.yaml --set "intervene.edits=[\"$LAT=0@patches:$PATCH_I\"]" --set "intervene.images=[$IMG]" --set "intervene.files=[\"$FILE\"]" \
    --set intervene.save_activations=true --set intervene.out=runs/file > log.txt 2>&1 || { cat log.txt; exit 1; }
$PY "$CHECK" file-same runs/file "$FILE"

# The faithfulness study on 2 ranks; its rates recomputed from its saved predictions.
"$S" intervene cfg.yaml --set intervene.study=faithfulness --set intervene.latent_f1=runs/sem/latent_f1.safetensors \
    --set intervene.min_patches=1 --set intervene.out=runs/study > log.txt 2>&1 || { cat log.txt; exit 1; }
grep -q "| \*\*all (pooled)\*\*" runs/study/study.md || { cat log.txt; echo "FAIL: no table"; exit 1; }
grep -q "</svg>" runs/study/study.svg
$PY "$CHECK" study runs/study

# Bad input: status 2, a message naming the input, nothing written.
refused() { # WHAT PATTERN OUT_DIR COMMAND...: exit 2, PATTERN in the message, OUT_DIR absent
  local what=$1 pattern=$2 out=$3; shift 3
  set +e; "$@" > err.txt 2>&1; local rc=$?; set -e
  [ $rc -eq 2 ] && grep -q -- "$pattern" err.txt && [ ! -e "$out" ] || { cat err.txt; echo "FAIL: $what gave $rc"; exit 1; }
}
printf 'not an image' > data/broken.jpg
refused "a bad edit" 'edits\[0\]: "7=0@class"' runs/bad1 "$S" intervene cfg.yaml --set 'intervene.edits=["7=0@class"]' --set intervene.out=runs/bad1
refused "an out-of-range latent" 'latent 100000' runs/bad2 "$S" intervene cfg.yaml --set 'intervene.edits=["100000=0"]' --set intervene.out=runs/bad2
refused "a missing image file" 'intervene.files\[0\]: .*data/nowhere.jpg' runs/bad5 \
    "$S" intervene cfg.yaml --set 'intervene.edits=["3=0"]' --set 'intervene.files=["data/nowhere.jpg"]' --set intervene.out=runs/bad5
refused "a broken image file" 'data/broken.jpg' runs/bad6 \
    "$S" intervene cfg.yaml --set 'intervene.edits=["3=0"]' --set 'intervene.files=["data/broken.jpg"]' --set intervene.out=runs/bad6
refused "a @class edit on a file" 'image files (intervene.files) lack' runs/bad7 \
    "$S" intervene cfg.yaml --set 'intervene.edits=["3=0@class:2"]' --set "intervene.files=[\"$FILE\"]" --set intervene.out=runs/bad7
refused "a missing store" 'probe.data: nowhere' runs/bad3 "$S" probe cfg.yaml --set probe.data=nowhere --set probe.out=runs/bad3
refused "a patch probe on a class store" 'no patch_labels' runs/bad4 "$S" probe cfg.yaml --set probe.target=patch --set probe.out=runs/bad4
echo "test_probe: ok"
