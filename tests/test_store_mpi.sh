#!/usr/bin/env bash
# Activation store under mpirun (worker stage store-selftest writes closed-form values;
# tests/store_check.py reads them back with h5py):
#  - 1 rank and 2 ranks give byte-identical stores (float32, float16, bfloat16), with a
#    file split, patch labels and skipped images; h5py sees the shapes, dtypes, attributes
#    and closed-form values;
#  - kill -9 of one rank mid-run (SAEV_STORE_CRASH_* hook) leaves an incomplete store that
#    a rerun (2 ranks, and 1 rank after a rank-0 crash) completes, equal to an
#    uninterrupted run;
#  - a rerun with another model is refused (exit 2, names "model"); rerunning a complete
#    store writes nothing;
#  - export-saev: saev protocol-2.1 bytes at known offsets and metadata fields;
#    import-saev round trip, and re-export byte-identical.
set -euo pipefail
W="$SAEV_BIN/saev-worker"
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
CHK="$SAEV_ROOT/tests/store_check.py"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T"
mkdir -p "$T"
N=29 L=3 P=6 D=16 IPF=8 SKIP=5
common=(--images $N --layers $L --patches $P --d $D --batch 4 --ipf $IPF --patch-labels --skip-every $SKIP)
run() { local np=$1; shift; mpirun -np "$np" --oversubscribe "$W" store-selftest "${common[@]}" "$@"; }

for dt in float32 float16 bfloat16; do
  run 1 --dtype $dt --out "$T/$dt-1"
  run 2 --dtype $dt --out "$T/$dt-2"
  $PY "$CHK" same "$T/$dt-1" "$T/$dt-2"
  $PY "$CHK" layout "$T/$dt-2" $dt $N $L $P $D $IPF $SKIP
  $PY "$CHK" checksums "$T/$dt-2"
done
$PY "$CHK" layout "$T/float32-1" float32 $N $L $P $D $IPF $SKIP

# Rank 1 kills itself (SIGKILL) in its 3rd write, after the activations and before their status.
set +e
out=$(SAEV_STORE_CRASH_RANK=1 SAEV_STORE_CRASH_AFTER=2 timeout 60 mpirun -np 2 --oversubscribe "$W" store-selftest "${common[@]}" --dtype bfloat16 --out "$T/crash" 2>&1)
rc=$?
set -e
echo "$out" | tail -3
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { echo "FAIL: crashed run gave status $rc"; exit 1; }
$PY "$CHK" incomplete "$T/crash"
"$S" inspect "$T/crash" | grep "INCOMPLETE" >/dev/null || { echo "FAIL: inspect does not report the store incomplete"; exit 1; }
run 2 --dtype bfloat16 --out "$T/crash"
$PY "$CHK" same "$T/bfloat16-1" "$T/crash"

# Rank 0 dies after its first write; resume with a single rank.
set +e
SAEV_STORE_CRASH_RANK=0 SAEV_STORE_CRASH_AFTER=1 timeout 60 mpirun -np 2 --oversubscribe "$W" store-selftest "${common[@]}" --dtype float16 --out "$T/crash0" >/dev/null 2>&1
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { echo "FAIL: crashed run gave status $rc"; exit 1; }
$PY "$CHK" incomplete "$T/crash0"
out=$(run 1 --dtype float16 --out "$T/crash0")
echo "$out"
$PY "$CHK" same "$T/float16-2" "$T/crash0"

# Refuse to mix another model into an existing store; nothing changes.
set +e
out=$(run 2 --dtype float32 --out "$T/float32-2" --model other-vit 2>&1)
rc=$?
set -e
echo "$out" | head -2
[ $rc -eq 2 ] || { echo "FAIL: mixing models gave status $rc, want 2"; exit 1; }
grep -q 'model differs: the store has "selftest-vit", this run has "other-vit"' <<<"$out" || { echo "FAIL: message does not name the model"; exit 1; }
$PY "$CHK" same "$T/float32-1" "$T/float32-2"
# A complete store is left as it is.
out=$(run 2 --dtype float32 --out "$T/float32-2")
grep -q "wrote 0 bytes" <<<"$out" || { echo "FAIL: rerun of a complete store wrote data: $out"; exit 1; }

# saev interop: 7 tokens x 3 layers = 21 tokens per example; 200 // 21 = 9 examples per shard.
"$S" export-saev "$T/bfloat16-2" "$T/saev/shards/abc" --max-tokens-per-shard 200
$PY "$CHK" export "$T/bfloat16-2" "$T/saev/shards/abc" 200
"$S" export-saev "$T/float32-2" "$T/saev/shards/f32" --max-tokens-per-shard 200
$PY "$CHK" export "$T/float32-2" "$T/saev/shards/f32" 200
"$S" import-saev "$T/saev/shards/abc" "$T/imported" --dtype bfloat16 --images-per-file $IPF
$PY "$CHK" roundtrip "$T/bfloat16-2" "$T/imported"
"$S" export-saev "$T/imported" "$T/saev/shards/again" --max-tokens-per-shard 200
for f in acts000000.bin acts000001.bin acts000002.bin acts000003.bin labels.bin shards.json; do
  cmp "$T/saev/shards/abc/$f" "$T/saev/shards/again/$f" || { echo "FAIL: re-export differs in $f"; exit 1; }
done
# Bad input: a truncated shard is refused with its name, and no store appears.
cp -r "$T/saev/shards/abc" "$T/saev/shards/bad"
truncate -s 100 "$T/saev/shards/bad/acts000001.bin"
set +e
out=$("$S" import-saev "$T/saev/shards/bad" "$T/bad-import" 2>&1); rc=$?
set -e
[ $rc -eq 2 ] && grep -q "acts000001.bin is 100 bytes" <<<"$out" && [ ! -e "$T/bad-import" ] || { echo "FAIL: truncated shard: $rc $out"; exit 1; }

# inspect: a store directory and a single file.
"$S" inspect "$T/float16-2" | tee "$T/inspect.txt" | head -5
grep -q "activations \[29 images, 3 layers, 7 tokens, 16 d_model\] float16" "$T/inspect.txt"
grep -q "skipped image 4 (index 4): synthetic bad image 4" "$T/inspect.txt"
"$S" inspect "$T/bfloat16-2/acts-000001.h5" | grep "activations    bfloat16  \[8, 3, 7, 16\]" >/dev/null
echo "test_store: ok"
