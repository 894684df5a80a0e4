#!/usr/bin/env bash
# test_sae_store.sh: SAE training input from an activation store (train.data = a store).
# The store is written by `saev-worker store-selftest` (closed-form values, 23 images of
# which 3 are skipped as bad, 5 images per file, blocks 1 and 3 recorded, CLS + 6 patches,
# d = 8); `saev-worker data-dump` records what the training loader hands each rank.
#  1. ordered mode (shuffle: false) gives rows 0, 1, 2, ... equal to the closed form, for
#     tokens patches, all and cls (reference: the closed form of stage_store_selftest.c);
#  2. shuffled mode (several windows and chunks) visits every row exactly once per epoch,
#     in a different order each epoch, rows equal to the closed form;
#  3. 1 rank vs 2 ranks: every global batch holds the same rows (invariant);
#     also on 3 ranks (uneven shares of the batch and of each window), and with batches
#     larger than two windows;
#  4. a loader started at batch 7 (as on resume) continues exactly like the uninterrupted one;
#  4b. no read amplification: each rank reads only its piece of every window, so the
#     rows read summed over ranks equal the rows of the windows the batches touch (the
#     loader's count, reported by data-dump), and each rank read about 1/ranks of them;
#  5. train.layer errors (a block not recorded, a negative block without the ViT's depth,
#     several layers without train.layer) exit 2 naming the store and its blocks;
#  6. `saev train` from the store on 2 ranks, killed after its step-6 checkpoint and
#     resumed, ends bit for bit equal to an uninterrupted run (invariant).
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP" && mkdir -p "$TMP"
PY=/usr/bin/python3
CHK="$PY $ROOT/tests/store_loader_check.py"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W="$BIN/saev-worker"
SAEV="$BIN/saev"
S="$TMP/store"
mpirun -np 2 "$W" store-selftest --out "$S" --images 23 --layers 2 --patches 6 --cls 1 --d 8 --batch 4 --ipf 5 --skip-every 7 > "$TMP/selftest.log" 2>&1 \
  || { cat "$TMP/selftest.log"; exit 1; }
cat > "$TMP/load.yaml" <<YAML
train: {data: $S, layer: 3, batch_size: 8, shuffle_buffer: 40, seed: 11}
YAML
fail=0
dump() { # RANKS PREFIX ARGS...
  local n=$1 p=$2; shift 2
  mpirun -np "$n" "$W" data-dump "$TMP/load.yaml" --out "$TMP/$p" "$@" > "$TMP/$p.log" 2>&1 || { cat "$TMP/$p.log"; exit 1; }
}
# 120 patch rows (20 used images x 6); layer 3 is position 1 in the store.
dump 1 ord --batches 20 --set train.shuffle=false
echo "ordered, patches:"; $CHK closed "$TMP/ord" 1 23 7 1 1 6 ordered || fail=1
dump 1 ord-all --batches 20 --set train.shuffle=false --set train.tokens=all
echo "ordered, all tokens:"; $CHK closed "$TMP/ord-all" 1 23 7 1 0 7 ordered || fail=1
dump 2 ord-cls --batches 4 --set train.shuffle=false --set train.tokens=cls --set train.batch_size=6
echo "ordered, CLS, 2 ranks:"; $CHK closed "$TMP/ord-cls" 2 23 7 1 0 1 ordered || fail=1
dump 1 shuf --batches 30
echo "shuffled, 1 rank:"; $CHK closed "$TMP/shuf" 1 23 7 1 1 6 epoch || fail=1
dump 2 shuf2 --batches 30
echo "shuffled, 2 ranks:"; $CHK closed "$TMP/shuf2" 2 23 7 1 1 6 epoch || fail=1
echo "shuffled, 1 vs 2 ranks:"; $CHK ranks "$TMP/shuf" 1 "$TMP/shuf2" 2 || fail=1
dump 2 ord2 --batches 20 --set train.shuffle=false
echo "ordered, 1 vs 2 ranks:"; $CHK ranks "$TMP/ord" 1 "$TMP/ord2" 2 || fail=1
dump 2 part --batches 12 --from 7
echo "restart at batch 7, 2 ranks:"; $CHK offset "$TMP/shuf2" "$TMP/part" 2 7 || fail=1
dump 3 shuf3 --batches 30
echo "shuffled, 1 vs 3 ranks:"; $CHK ranks "$TMP/shuf" 1 "$TMP/shuf3" 3 || fail=1
# Rows read: 120 patch rows per epoch, windows of 40, batches of 8 (CLS: 20 rows, window 20, batch 6).
# Batches larger than two windows (each batch exchanges several windows), on 3 ranks.
dump 1 big1 --batches 8 --set train.batch_size=32 --set train.shuffle_buffer=10
dump 3 big3 --batches 8 --set train.batch_size=32 --set train.shuffle_buffer=10
echo "batch 32 > 2 windows of 10, 3 ranks:"; $CHK closed "$TMP/big3" 3 23 7 1 1 6 epoch || fail=1
echo "batch 32 > 2 windows of 10, 1 vs 3 ranks:"; $CHK ranks "$TMP/big1" 1 "$TMP/big3" 3 || fail=1
echo "rows read, batch 32, 3 ranks:"; $CHK reads "$TMP/big3" 3 120 10 32 0 8 || fail=1
echo "rows read, 1 rank:"; $CHK reads "$TMP/shuf" 1 120 40 8 0 30 || fail=1
echo "rows read, 2 ranks:"; $CHK reads "$TMP/shuf2" 2 120 40 8 0 30 || fail=1
echo "rows read, 3 ranks:"; $CHK reads "$TMP/shuf3" 3 120 40 8 0 30 || fail=1
echo "rows read, 2 ranks from batch 7:"; $CHK reads "$TMP/part" 2 120 40 8 7 12 || fail=1
echo "rows read, CLS, 2 ranks:"; $CHK reads "$TMP/ord-cls" 2 20 40 6 0 4 || fail=1

expect_usage() { # NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  set +e; "$SAEV" train "$@" > "$TMP/$name.log" 2>&1; local rc=$?; set -e
  [ $rc = 2 ] || { echo "$name: exit $rc, expected 2"; cat "$TMP/$name.log"; fail=1; }
  grep -Eq -e "$pat" "$TMP/$name.log" || { echo "$name: message does not match '$pat'"; cat "$TMP/$name.log"; fail=1; }
}
T="$TMP/load.yaml --set train.steps=2 --set train.out_dir=$TMP/never"
expect_usage layer2 "block 2 is not in store .*holds blocks \[1, 3\]" $T --set train.layer=2
expect_usage layer-neg "-1 counts from the end of the ViT, but store .* does not record the ViT's depth; give the block number, one of \[1, 3\]" $T --set train.layer=-1
expect_usage layer-unset "holds blocks \[1, 3\]; say which one" $T --set train.layer=null
[ ! -e "$TMP/never" ] || { echo "a refused config wrote its output folder"; fail=1; }

# Training from the store, killed and resumed.
cat > "$TMP/train.yaml" <<YAML
run: {ranks: 2}
train:
  data: $S
  layer: 3
  batch_size: 16
  shuffle_buffer: 40
  steps: 12
  lr: 0.003
  lr_warmup: 2
  checkpoint_every: 6
  metrics_every: 1
  sae: {d_sae: 32, k: 4, init: datapoint, aux: {k_aux: 4}}
YAML
"$SAEV" train "$TMP/train.yaml" --set train.out_dir="$TMP/full" > "$TMP/full.log" 2>&1 || { cat "$TMP/full.log"; exit 1; }
if SAEV_FAULT=train.kill_after_steps=9 "$SAEV" train "$TMP/train.yaml" --set train.out_dir="$TMP/cut" > "$TMP/cut.log" 2>&1; then
  echo "the killed run did not die"; exit 1
fi
"$SAEV" train "$TMP/train.yaml" --set train.out_dir="$TMP/cut" --set train.resume=true > "$TMP/resume.log" 2>&1 || { cat "$TMP/resume.log"; exit 1; }
grep -q "resuming at step 6" "$TMP/resume.log" || { echo "resume: no 'resuming at step 6'"; fail=1; }
for f in sae.safetensors train_state.safetensors; do
  if cmp -s "$TMP/full/$f" "$TMP/cut/$f"; then echo "store training resumed: $f bit-identical"; else echo "store training resumed: $f DIFFERS"; fail=1; fi
done
[ -s "$TMP/cut/metrics.json" ] || { echo "no metrics.json"; fail=1; }
[ $fail = 0 ] && echo "test_sae_store: all passed"
exit $fail
