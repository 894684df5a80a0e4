#!/usr/bin/env bash
# test_visuals.sh: `saev visuals` end to end on a tiny CLIP's store of demo images.
#  1. top.safetensors of five SAE variants (relu, relu centred with data_scale 0.5, top-k,
#     batch-top-k, Matryoshka top-k; visuals_check.py make-saes) against an independent
#     float64 numpy encoding of the store (visuals_check.py top: lists, scores, order,
#     frequencies exactly, mean and max values within the float32 bound), on 1 rank and on
#     2 ranks, tokens patches and all; the checker fails when one value is made NaN;
#  2. 2 ranks and 1 rank write byte-identical outputs (every file, PNGs included);
#  3. every rendered <j>.png is `saev preprocess`'s model input upscaled, its latent.json
#     patch values match float64, and <j>_heat.png follows visuals.h's formula pixel by
#     pixel from them (zero patches untouched);
#  4. a segmentation store's <j>_seg.png is its patch_labels' colours over <j>.png (visuals.h);
#  5. a run killed with SIGKILL, then rerun, and a rerun after deleting some outputs, end
#     with the same bytes as the uninterrupted run;
#  6. bad input (no store, a latent id past d_sae, a missing checkpoint) exits 2 naming
#     it, before anything is written;
#  7. a second visuals on an output in use (the lock held) is refused, naming the holder.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T" && cd "$T"
PY=/usr/bin/python3
CHECK="$ROOT/tests/visuals_check.py"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
S="$BIN/saev"
fail() { echo "FAIL: $*"; exit 1; }

"$S" demo-data data --per-class 3 --seg-images 8 >/dev/null
"$S" make-model --family clip --preset tiny --seed 3 --out model >/dev/null
cat > acts.yaml <<YAML
run: {ranks: 2}
data: {kind: folder, root: data/fashion}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-1]}
activations: {out: store, batch_size: 8, dtype: float32}
YAML
"$S" activations acts.yaml > acts.log 2>&1 || { cat acts.log; fail "activations"; }
"$S" activations acts.yaml --set data.kind=ade20k --set data.root=data/segmentation --set data.split=training \
  --set data.patch_label=prefer-fg --set activations.out=segstore > acts2.log 2>&1 || { cat acts2.log; fail "segmentation activations"; }
$PY "$CHECK" make-saes store saes

# batch_size 40 rows = 2 images of 16 patches per batch: several batches per rank.
VIS=(--set 'visuals.sae=[saes]' --set visuals.data=store --set visuals.batch_size=40 --set visuals.top_k=5
     --set visuals.n_render=6 --set 'visuals.latents=[5]' --set 'visuals.log_freq_range=[-3, 0]' --set 'visuals.log_value_range=[-3, 2]')
"$S" visuals "${VIS[@]}" --set visuals.out=v1 --ranks 1 > v1.log 2>&1 || { cat v1.log; fail "visuals, 1 rank"; }
"$S" visuals "${VIS[@]}" --set visuals.out=v2 --ranks 2 > v2.log 2>&1 || { cat v2.log; fail "visuals, 2 ranks"; }
grep -q "progress:" v1.log || fail "no progress lines"

echo "1. top.safetensors against float64 numpy (1 rank, 2 ranks):"
i=0
for ck in saes/*/sae.safetensors; do
  for v in v1 v2; do $PY "$CHECK" top store patches "$ck" $v/$i || fail "$v/$i ($ck)"; done
  i=$((i + 1))
done
[ $i = 5 ] || fail "$i SAEs (want 5)"
"$S" visuals "${VIS[@]}" --set 'visuals.sae=[saes/c_topk]' --set visuals.tokens=all --set visuals.out=va1 --ranks 1 > va1.log 2>&1 || { cat va1.log; fail "tokens all"; }
"$S" visuals "${VIS[@]}" --set 'visuals.sae=[saes/c_topk]' --set visuals.tokens=all --set visuals.out=va2 --ranks 2 > va2.log 2>&1 || { cat va2.log; fail "tokens all, 2 ranks"; }
$PY "$CHECK" top store all saes/c_topk/sae.safetensors va1 || fail "tokens all"
cmp va1/top.safetensors va2/top.safetensors || fail "tokens all: 1 and 2 ranks differ"
# The checker itself fails on NaN: the same output with one firing latent's mean_value NaN.
cp -r va1 vnan
$PY - vnan/top.safetensors <<'PYEOF'
import json, struct, sys, numpy as np
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
lo = h["freq"]["data_offsets"][0]; freq = np.frombuffer(bytes(b[8 + n + lo:8 + n + lo + 4 * h["freq"]["shape"][0]]), "<f4")
s = int(np.argmax(freq > 0)); at = 8 + n + h["mean_value"]["data_offsets"][0] + 4 * s
b[at:at + 4] = struct.pack("<f", float("nan")); open(sys.argv[1], "wb").write(bytes(b))
PYEOF
if $PY "$CHECK" top store all saes/c_topk/sae.safetensors vnan > nan.log 2>&1; then cat nan.log; fail "the checker passed a NaN mean_value"; fi

echo "2. 1 rank and 2 ranks: byte-identical outputs"
diff -r -x .saev.lock v1 v2 > /dev/null || { diff -r -x .saev.lock v1 v2 | head; fail "1 and 2 ranks differ"; }
n_png=$(find v1 -name '*.png' | wc -l)
[ "$n_png" -gt 20 ] || fail "only $n_png PNGs"
for i in 0 1 2 3 4; do
  for f in top.safetensors index.json summary.svg; do [ -s v1/$i/$f ] || fail "v1/$i/$f missing"; done
  $PY -c "import xml.etree.ElementTree as E, sys; r = E.parse(sys.argv[1]).getroot(); assert r.tag.endswith('svg') and len(r.findall('.//{http://www.w3.org/2000/svg}circle')) > 0" v1/$i/summary.svg \
    || fail "v1/$i/summary.svg is not an SVG with points"
done
$PY - <<'PYEOF' || fail "index.json"
import json
for i in range(5):
    d = json.load(open(f"v1/{i}/index.json"))
    assert d["format"] == "saev-visuals-1" and d["top_k"] == 5 and 5 in d["rendered"], d
    assert len(d["rendered"]) == len(d["latents"]) and d["rendered"] == sorted(d["rendered"])
    assert d["grid"] == [4, 4] and d["png_size"] == [224, 224] and d["image_size"] == [32, 32], d
    assert len(d["rendered"]) == 7, d["rendered"]  # latent 5 plus a sample of 6 (enough candidates with these ranges)
PYEOF

echo "3. PNGs against \`saev preprocess\`, patch values against float64, heat pixels against the formula:"
mkdir -p prep
for i in 0 2; do
  $PY - v1/$i > imgs.txt <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1] + "/index.json"))
seen = set()
for s in d["rendered"]:
    for e in json.load(open(f"{sys.argv[1]}/latents/{s}/latent.json"))["images"]:
        if e["image"] not in seen:
            seen.add(e["image"]); print(e["image"], e["path"])
PYEOF
  while read -r img path; do
    [ -f prep/$img.safetensors ] || "$S" preprocess --pipeline clip "$path" --size 32 --crop 32 --out prep/$img.safetensors > /dev/null
  done < imgs.txt
done
$PY "$CHECK" pictures store saes/a_relu/sae.safetensors v1/0 prep || fail "pictures (relu)"
$PY "$CHECK" pictures store saes/c_topk/sae.safetensors v1/2 prep || fail "pictures (top-k)"

echo "4. segmentation store: _seg.png against patch_labels"
"$S" visuals --set 'visuals.sae=[saes/c_topk]' --set visuals.data=segstore --set visuals.top_k=4 --set visuals.n_render=5 \
  --set 'visuals.log_freq_range=[-3, 0]' --set 'visuals.log_value_range=[-3, 2]' --set visuals.out=vs --ranks 2 > vs.log 2>&1 || { cat vs.log; fail "segmentation visuals"; }
[ -n "$(find vs -name '*_seg.png')" ] || fail "no _seg.png"
$PY "$CHECK" seg segstore vs || fail "seg"

echo "5. a killed run, rerun, and a rerun after deleting outputs: the same bytes"
setsid "$S" visuals "${VIS[@]}" --set visuals.out=vk --ranks 2 > vk.log 2>&1 &
pid=$!
for _ in $(seq 1 400); do [ -e vk/2/top.safetensors ] && break; sleep 0.02; done
kill -9 -- -$pid 2>/dev/null || true  # the launcher, mpirun and both ranks: one process group
wait $pid 2>/dev/null || true
"$S" visuals "${VIS[@]}" --set visuals.out=vk --ranks 2 > vk2.log 2>&1 || { cat vk2.log; fail "rerun after kill"; }
diff -r -x '*.tmp*' -x .saev.lock v1 vk > /dev/null || { diff -r -x '*.tmp*' -x .saev.lock v1 vk | head; fail "rerun after a kill differs"; }
rm v2/1/index.json v2/3/latents/5/latent.json v2/3/latents/5/0.png
"$S" visuals "${VIS[@]}" --set visuals.out=v2 --ranks 1 > v3.log 2>&1 || { cat v3.log; fail "rerun"; }
grep -q "reusing" v3.log || fail "the rerun did not reuse top.safetensors"
diff -r -x .saev.lock v1 v2 > /dev/null || fail "rerun after deleting outputs differs"

echo "6. bad input"
bad() { # expected message, then arguments
  local want=$1; shift
  set +e; "$S" visuals "$@" --set visuals.out=badout > bad.log 2>&1; local rc=$?; set -e
  [ $rc = 2 ] || { cat bad.log; fail "exit $rc (want 2) for $*"; }
  grep -q -- "$want" bad.log || { cat bad.log; fail "message lacks '$want'"; }
  [ ! -e badout ] || fail "bad input wrote badout"
}
bad "visuals.data: nostore" --set 'visuals.sae=[saes]' --set visuals.data=nostore
bad "visuals.latents: 64 is not a latent" --set 'visuals.sae=[saes/c_topk]' --set visuals.data=store --set 'visuals.latents=[64]'
bad "visuals.sae: saes/none" --set 'visuals.sae=[saes/none]' --set visuals.data=store
bad "log_freq_range" --set 'visuals.sae=[saes]' --set visuals.data=store --set 'visuals.log_freq_range=[1, 0]'
bad "visuals.layer: block 7" --set 'visuals.sae=[saes/c_topk]' --set visuals.data=store --set visuals.layer=7

echo "7. an output in use by another run is refused, naming the holder"
# The holder: a POSIX record lock on lockout/.saev.lock (what lock_output_dir takes), from
# a Python process that writes the same "host H pid P: what" line and waits.
mkdir -p lockout
$PY - lockout/.saev.lock > holder.out <<'PYEOF' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, ("host testhost pid %d: holder\n" % os.getpid()).encode())
print("locked", flush=True)
time.sleep(120)
PYEOF
holder=$!
for _ in $(seq 100); do grep -q locked holder.out 2>/dev/null && break; sleep 0.1; done
set +e; "$S" visuals --set 'visuals.sae=[saes/c_topk]' --set visuals.data=store --set visuals.out=lockout > lock.log 2>&1; rc=$?; set -e
kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true
[ $rc -ne 0 ] && grep -q "lockout is in use by another run (host testhost pid $holder: holder)" lock.log || { cat lock.log; fail "visuals on a locked output gave $rc"; }
[ ! -e lockout/top.safetensors ] || fail "visuals wrote into a locked output"
echo "test_visuals: ok"
