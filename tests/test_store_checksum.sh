#!/usr/bin/env bash
# test_store_checksum.sh: silent corruption of an activation store is caught.
# The store is written by `saev-worker store-selftest` on 2 ranks (collective writes;
# 13 images, 2 layers, 5 images per file, every 4th image skipped, bfloat16).
#  1. every stored checksum equals Fletcher-32 of the stored bytes, computed by
#     tests/store_check.py from the definition in store.h (an independent reference);
#     `saev inspect --verify` reads the whole store and reports it intact (status 0);
#  2. one byte flipped (with h5py's chunk index: the middle of image 6's layer-1 slice):
#     `saev inspect --verify` exits 1 and lists exactly that image and layer, naming the
#     file and the HDF5 chunk; `saev train` on the store stops with status 1 naming the
#     file, image 6 and the chunk, and writes no checkpoint;
#  3. a store written before checksums (the checksum datasets deleted with h5py) still
#     opens: `saev inspect` says it has no checksums, --verify checks readability only and
#     passes, and training reads it;
#  4. a truncated store file: --verify (status 1) and training (status 1, or 2 when the
#     store is refused at open as train.data) name the file; no crash.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP" && mkdir -p "$TMP"
PY=/usr/bin/python3
CHK="$PY $ROOT/tests/store_check.py"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W="$BIN/saev-worker"
SAEV="$BIN/saev"
S="$TMP/store"
mpirun -np 2 "$W" store-selftest --out "$S" --images 13 --layers 2 --patches 6 --cls 1 --d 8 --batch 3 --ipf 5 \
  --skip-every 4 --dtype bfloat16 > "$TMP/selftest.log" 2>&1 || { cat "$TMP/selftest.log"; exit 1; }
fail() { echo "FAIL: $*"; exit 1; }
expect() { # NAME STATUS REGEX CMD...: runs CMD, wants that exit status (a regex: 1|2) and REGEX in its output
  local name=$1 want=$2 re=$3; shift 3
  set +e; timeout 120 "$@" > "$TMP/$name.log" 2>&1; local rc=$?; set -e
  [[ "$rc" =~ ^($want)$ ]] || { cat "$TMP/$name.log"; fail "$name: status $rc, want $want"; }
  grep -Eq -- "$re" "$TMP/$name.log" || { cat "$TMP/$name.log"; fail "$name: no /$re/ in the output"; }
}

# 1. Reference checksums, and a clean verify.
$CHK checksums "$S"
expect verify-clean 0 "all 26 image-layer slices read back intact" "$SAEV" inspect --verify "$S"
expect inspect 0 "checksums: Fletcher-32 per image and layer" "$SAEV" inspect "$S"

# 2. One flipped byte in image 6 (file 1 holds images 5-9: row 1), layer 1. Images with
#    i mod 4 = 3 (3, 7, 11) are skipped, so 6 is written. Copy first: section 3 needs a
#    clean store.
cp -r "$S" "$TMP/clean"
where=$($CHK corrupt "$S" 6 1)
file=$(basename "${where% *}"); chunk_row=${where#* }
[ "$file" = acts-000001.h5 ] || fail "image 6 should be in acts-000001.h5, corrupt says $where"
expect verify-bad 1 "bad: .*/acts-000001.h5: image 6 \(row 1 of the file\), layer 1, chunk \[$chunk_row, 1, 0, 0\]: checksum mismatch" \
  "$SAEV" inspect --verify "$S"
n_bad=$(grep -c "^bad:" "$TMP/verify-bad.log")
[ "$n_bad" = 1 ] || { cat "$TMP/verify-bad.log"; fail "verify listed $n_bad bad slices, want exactly 1"; }
cat > "$TMP/train.yaml" <<YAML
train:
  data: $S
  layer: 3
  batch_size: 12
  shuffle: false
  steps: 4
  lr: 0.003
  sae: {d_sae: 16, k: 4}
YAML
expect train-bad 1 "acts-000001.h5: checksum mismatch in image 6 \(row 1 of the file\), layer 1, chunk \[$chunk_row, 1, 0, 0\]" \
  "$SAEV" train "$TMP/train.yaml" --set train.out_dir="$TMP/run-bad"
[ ! -e "$TMP/run-bad/sae.safetensors" ] || fail "training on a corrupt store wrote a checkpoint"

# 3. A store from before checksums: still opens and trains, and inspect says so.
cp -r "$TMP/clean" "$TMP/old"
$PY - "$TMP/old" <<'PYEOF'
import glob, sys, h5py
for p in sorted(glob.glob(sys.argv[1] + "/acts-*.h5")):
    with h5py.File(p, "r+") as f:
        del f["checksum"]
PYEOF
expect inspect-old 0 "checksums: none \(a store written before" "$SAEV" inspect "$TMP/old"
expect verify-old 0 "has no checksums .*checking only that every chunk reads" "$SAEV" inspect --verify "$TMP/old"
grep -q "(no checksums to compare)" "$TMP/verify-old.log" || fail "verify of an old store does not say it compared nothing"
expect train-old 0 "" "$SAEV" train "$TMP/train.yaml" --set train.data="$TMP/old" --set train.out_dir="$TMP/run-old"
[ -s "$TMP/run-old/sae.safetensors" ] || fail "training on an old store wrote no checkpoint"

# 4. A truncated file (the last 40% of file 2 gone).
cp -r "$TMP/clean" "$TMP/trunc"
size=$(stat -c %s "$TMP/trunc/acts-000002.h5")
truncate -s $((size * 6 / 10)) "$TMP/trunc/acts-000002.h5"
expect verify-trunc 1 "acts-000002.h5" "$SAEV" inspect --verify "$TMP/trunc"
expect train-trunc "1|2" "acts-000002.h5" "$SAEV" train "$TMP/train.yaml" --set train.data="$TMP/trunc" --set train.out_dir="$TMP/run-trunc"
grep -q "Sanitizer\|Segmentation\|core dumped" "$TMP/verify-trunc.log" "$TMP/train-trunc.log" && fail "a crash on the truncated store"
echo "test_store_checksum: ok"
