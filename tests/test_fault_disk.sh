#!/usr/bin/env bash
# test_fault_disk.sh: a full disk during `saev activations` and `saev train`, on a small
# tmpfs this test mounts (root only; without root or mount it exits 77, skipped).
#
# Activations (2 ranks, tiny random CLIP, 100 images): the reference store is written on
# the normal disk; the same run then writes into a tmpfs of half the reference store's
# size (store files are created sparse, so creation fits and the data writes run out):
#  - the run fails with a message naming a store file and saying the disk is full;
#  - the store is as it was before the failed write: it opens, every image marked
#    written holds exactly the reference bytes (h5py), and `saev inspect --verify` finds
#    every checksum intact;
#  - after the tmpfs is grown (space freed), a rerun with activations.resume=true ends
#    with a store equal to the reference byte for byte (tests/activations_check.py same).
# Train (1 rank, SAE d 48 x 1024 latents, checkpoint every 4 of 12 steps): the reference
# run is on the normal disk; the tmpfs is sized to hold the first checkpoint
# (sae.safetensors + train_state.safetensors + small files) but not the next one:
#  - the run fails naming the checkpoint file it could not write and the full disk;
#  - sae.safetensors and train_state.safetensors are still the step-4 ones, intact (they
#    open; metadata step 4), and no temporary file is left;
#  - after growing the tmpfs, a rerun with train.resume=true ends with a sae.safetensors
#    byte-identical to the reference (resume is bit-exact; tests/test_sae_store.sh).
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
CHK="$SAEV_ROOT/tests/activations_check.py"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skipped: mounting a small tmpfs needs root"; exit 77; }
mkdir -p mnt
mount -t tmpfs -o size=64k tmpfs mnt 2>mount.err || { echo "skipped: cannot mount a tmpfs here: $(cat mount.err)"; exit 77; }
trap 'umount "$T/mnt" 2>/dev/null || true' EXIT
resize() { mount -o remount,size=$1 "$T/mnt" || fail "cannot resize the tmpfs to $1"; }
run_fail() { # NAME CMD...: must fail (non-zero); output in NAME.log
  local name=$1; shift
  set +e; timeout 300 "$@" > "$name.log" 2>&1; local rc=$?; set -e
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || { tail -20 "$name.log"; fail "$name: status $rc, want a failure"; }
}

# ---- activations ---------------------------------------------------------------------
"$S" demo-data data --per-class 10 --seg-images 0 >/dev/null
"$S" make-model --family clip --preset tiny --seed 1 --out model >/dev/null
cat > a.yaml <<YAML
run: {ranks: 2}
data: {kind: folder, root: data/fashion}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-2]}
activations: {out: ref, batch_size: 4}
train:
  data: ref
  layer: -2
  batch_size: 32
  steps: 12
  lr: 0.001
  checkpoint_every: 4
  metrics_every: 1
  sae: {d_sae: 1024, k: 8}
YAML
"$S" activations a.yaml > ref.log 2>&1 || { cat ref.log; fail "reference activations"; }
ref_kb=$(du -sk --apparent-size ref | cut -f1)
resize $((ref_kb / 2))k
run_fail acts-full "$S" activations a.yaml --set activations.out=mnt/store
grep -Eq "mnt/store/acts-[0-9]+\.h5.*(the disk is full|No space left)|mnt/store/[^ ]*: .*No space left" acts-full.log \
  || { tail -20 acts-full.log; fail "the full-disk failure does not name a store file and the full disk"; }
$PY - ref mnt/store <<'PYEOF'
import glob, sys, h5py, numpy as np
ref, got = sys.argv[1], sys.argv[2]
n_written = 0
for p, q in zip(sorted(glob.glob(ref + "/acts-*.h5")), sorted(glob.glob(got + "/acts-*.h5"))):
    with h5py.File(p, "r") as a, h5py.File(q, "r") as b:
        st = b["status"][()]
        for i in np.flatnonzero(st == 1):
            if a["activations"][i].tobytes() != b["activations"][i].tobytes():
                sys.exit(f"FAIL: {q}: image row {i} is marked written but differs from the reference")
        n_written += int((st == 1).sum())
print(f"after the full disk: {n_written} images marked written, all equal to the reference")
PYEOF
if ls mnt/store/acts-000000.h5 >/dev/null 2>&1; then
  "$S" inspect --verify mnt/store > verify-full.log 2>&1 || { cat verify-full.log; fail "the store left by the full disk does not verify"; }
fi
resize $((ref_kb * 4))k
"$S" activations a.yaml --set activations.out=mnt/store --set activations.resume=true > acts-rerun.log 2>&1 \
  || { tail -20 acts-rerun.log; fail "the rerun after freeing space failed"; }
$PY "$CHK" same ref mnt/store
echo "activations: full disk refused cleanly; the rerun equals the reference"
rm -rf mnt/store

# ---- train ----------------------------------------------------------------------------
"$S" train a.yaml --set run.ranks=1 --set train.out_dir=train-ref > train-ref.log 2>&1 || { cat train-ref.log; fail "reference training"; }
ck_kb=$(( $(stat -c %s train-ref/sae.safetensors) / 1024 + 1 ))
st_kb=$(( $(stat -c %s train-ref/train_state.safetensors) / 1024 + 1 ))
small_kb=64  # config.resolved.yaml, metrics.jsonl (12 lines), the lock, rounded up to pages
# Room for one checkpoint and the small files, plus half of the smaller of the two files:
# the next checkpoint's first temporary file (the training state, written first) cannot fit.
size_kb=$((ck_kb + st_kb + small_kb + (ck_kb < st_kb ? ck_kb : st_kb) / 2))
echo "train: checkpoint ${ck_kb} KiB, state ${st_kb} KiB, tmpfs ${size_kb} KiB"
resize ${size_kb}k
run_fail train-full "$S" train a.yaml --set run.ranks=1 --set train.out_dir=mnt/run
grep -Eq "mnt/run/(train_state|sae)\.safetensors.*No space left" train-full.log \
  || { tail -20 train-full.log; fail "the full-disk failure does not name the checkpoint and the full disk"; }
left=$(ls -a mnt/run | grep -E '\.tmp' || true)
[ -z "$left" ] || fail "temporary files left: $left"
"$S" inspect mnt/run/sae.safetensors > ck.txt || fail "sae.safetensors does not open after the full disk"
grep -q "step: 4$" ck.txt || { cat ck.txt; fail "sae.safetensors is not the step-4 checkpoint"; }
"$S" inspect mnt/run/train_state.safetensors > /dev/null || fail "train_state.safetensors does not open after the full disk"
resize $((size_kb * 4))k
"$S" train a.yaml --set run.ranks=1 --set train.out_dir=mnt/run --set train.resume=true > train-rerun.log 2>&1 \
  || { tail -20 train-rerun.log; fail "the training rerun after freeing space failed"; }
cmp train-ref/sae.safetensors mnt/run/sae.safetensors || fail "the resumed checkpoint differs from the reference"
echo "test_fault_disk: ok"
