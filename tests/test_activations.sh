#!/usr/bin/env bash
# The activations stage end to end on a small demo set with a tiny random CLIP:
#  - 1 rank and 2 ranks give bit-identical stores (work is dealt in whole global batches,
#    so each image is computed in the same batch), also when one rank has no work;
#  - 1 rank with 2 OpenBLAS threads (two forward lanes running batches side by side)
#    gives the store of 1 thread bit for bit, bad images and their reasons included, also
#    when it resumes a crashed run; activations.lanes=1 caps the lanes at one (needs 2
#    cores: OpenBLAS caps its threads at the cores it may use);
#  - a stored row equals `saev forward` on the same preprocessed image (rel. error < 1e-5);
#  - h5py reads the layout and attributes; bad images are skipped and listed (skip), or
#    stop the job naming the file (fail);
#  - kill -9 of one rank mid-run, then a rerun, ends bit-identical to an uninterrupted run;
#  - a rerun with different weights into the same store is refused, naming the setting.
set -euo pipefail
S="$SAEV_BIN/saev"; PY=/usr/bin/python3; CHK="$SAEV_ROOT/tests/activations_check.py"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"

"$S" demo-data data --per-class 2 --seg-images 4 >/dev/null
: > data/fashion/03_dress/zz_empty.png                       # zero-byte image
head -c 300 "$(ls data/fashion/05_sandal/*.jpg | head -1)" > data/fashion/05_sandal/zz_truncated.jpg
"$S" make-model --family clip --preset tiny --seed 1 --out model >/dev/null
"$S" make-model --family clip --preset tiny --seed 2 --out model2 >/dev/null
IMAGES() { find data/fashion -mindepth 2 -type f | sort; }
n=$(IMAGES | wc -l)
# Indices of the bad files in dataset order (sorted class folders, sorted files).
bad=$(IMAGES | grep -n "zz_" | cut -d: -f1 | awk '{print $1-1}' | xargs)

cat > a.yaml <<YAML
run: {name: acts-test}
data: {kind: folder, root: data/fashion, on_bad_image: skip}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-2]}
activations: {out: store1, batch_size: 3, images_per_file: 7}
loader: {threads: 2}
YAML

"$S" activations a.yaml --ranks 1 > log1.txt 2>&1 || { cat log1.txt; exit 1; }
"$S" activations a.yaml --ranks 2 --set activations.out=store2 > log2.txt 2>&1 || { cat log2.txt; exit 1; }
$PY "$CHK" same store1 store2
if [ "$(nproc)" -ge 2 ]; then
  OPENBLAS_NUM_THREADS=2 "$S" activations a.yaml --ranks 1 --set activations.out=store_t2 > log_t2.txt 2>&1 || { cat log_t2.txt; exit 1; }
  grep -q "2 forward lanes" log_t2.txt || { cat log_t2.txt; echo "FAIL: 2 threads did not run 2 lanes"; exit 1; }
  $PY "$CHK" same store1 store_t2
  cmp store1/bad_images.tsv store_t2/bad_images.tsv
  # Resumed by lanes: pending images in several runs of the plan (rank 1 killed after its first batch).
  set +e
  SAEV_FAULT=store.kill_after_writes=1@1 "$S" activations a.yaml --ranks 2 --set activations.out=store_t2r > log_t2r.txt 2>&1; rc=$?
  set -e
  [ $rc -ne 0 ] || { echo "FAIL: crashed run exited 0"; exit 1; }
  OPENBLAS_NUM_THREADS=2 "$S" activations a.yaml --ranks 1 --set activations.out=store_t2r > log_t2r2.txt 2>&1 || { cat log_t2r2.txt; exit 1; }
  grep -q "2 forward lanes" log_t2r2.txt && grep -q "to do" log_t2r2.txt
  $PY "$CHK" same store1 store_t2r
  # activations.lanes caps the lanes (their memory): 1 lane even with 2 OpenBLAS threads.
  OPENBLAS_NUM_THREADS=2 "$S" activations a.yaml --ranks 1 --set activations.out=store_l1 --set activations.lanes=1 > log_l1.txt 2>&1 || { cat log_l1.txt; exit 1; }
  if grep -q "forward lanes" log_l1.txt; then cat log_l1.txt; echo "FAIL: activations.lanes=1 ran several lanes"; exit 1; fi
else
  echo "note: $(nproc) core: the two-lane check needs 2"
fi
$PY "$CHK" layout store2 "$n" 17 48
$PY "$CHK" skipped store2 $bad
grep -q "zz_empty.png" store2/bad_images.tsv && grep -q "zz_truncated.jpg" store2/bad_images.tsv
test -f store2/config.resolved.yaml

# One global batch for 2 ranks: rank 0 has nothing to do and must still join every
# collective write (and match a 1-rank run of the same batch size).
"$S" activations a.yaml --ranks 2 --set activations.batch_size=64 --set activations.out=store5 > log5.txt 2>&1 || { cat log5.txt; exit 1; }
"$S" activations a.yaml --ranks 1 --set activations.batch_size=64 --set activations.out=store6 > log6.txt 2>&1 || { cat log6.txt; exit 1; }
$PY "$CHK" same store5 store6

# A stored row against `saev forward` on the same image (the first image of class 04).
i=$(IMAGES | grep -n "/04_coat/" | head -1 | cut -d: -f1); i=$((i-1))
img=$(IMAGES | sed -n "$((i+1))p")
"$S" preprocess --pipeline clip --size 32 --crop 32 "$img" --out px.safetensors >/dev/null
$PY "$CHK" stack px.safetensors px4.safetensors
"$S" forward --model model --pixels px4.safetensors --out y.safetensors --layers -2 >/dev/null
$PY "$CHK" forward store1 "$i" y.safetensors

# Policy fail: the job stops, naming the bad file.
set +e
"$S" activations a.yaml --ranks 2 --set activations.out=store_fail --set data.on_bad_image=fail > logf.txt 2>&1; rc=$?
set -e
[ $rc -ne 0 ] || { echo "FAIL: on_bad_image=fail exited 0"; exit 1; }
grep -q "zz_" logf.txt || { cat logf.txt; echo "FAIL: message does not name the bad file"; exit 1; }

# kill -9 of rank 1 after its first batch, then resume: equal to the uninterrupted store.
set +e
SAEV_FAULT=store.kill_after_writes=1@1 "$S" activations a.yaml --ranks 2 --set activations.out=store3 > log3.txt 2>&1; rc=$?
set -e
[ $rc -ne 0 ] || { echo "FAIL: crashed run exited 0"; exit 1; }
"$S" activations a.yaml --ranks 2 --set activations.out=store3 > log3b.txt 2>&1 || { cat log3b.txt; exit 1; }
grep -q "to do" log3b.txt
$PY "$CHK" same store2 store3

# Different weights into an existing store: refused with status 2, naming the setting.
set +e
"$S" activations a.yaml --ranks 1 --set activations.out=store2 --set model.path=model2 > log4.txt 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || { cat log4.txt; echo "FAIL: mixing models gave status $rc, want 2"; exit 1; }
grep -qi "differs" log4.txt || { cat log4.txt; exit 1; }
$PY "$CHK" same store1 store2   # untouched
echo "test_activations: ok"
