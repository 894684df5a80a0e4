#!/usr/bin/env bash
# test_saev_shards.sh: saev's shards both ways (launcher/cmd_export_saev.c,
# cmd_import_saev.c), checked by tests/saev_shards_check.py, which re-enacts saev's writer
# (saev@3d73f1f shards.py; preprint saev@97b00d9 activations.py) with Python:
#  1. export-saev of a segmentation store (patch labels; an ade20k data set whose root
#     has a space, "./" and a trailing slash) and of a folder store with a relative root:
#     the directory is named by saev's Metadata.hash; metadata.json and shards.json are
#     byte for byte saev's dumps; `data` is pickle.dumps of saev's ImgSegFolder / ImgFolder
#     byte for byte; dataset is str(PosixPath(root));
#  2. round trip store -> export -> import -> byte-identical activations and patch labels;
#     re-exporting the imported store gives the same directory name and identical files
#     (saev's `data` and pixel_agg travel through the store);
#  3. the preprint's layout (no shards.json, d_vit/n_imgs/n_patches_per_shard) imports to
#     byte-identical activations;
#  4. bad input exits 2 naming the problem and writes nothing: a SHARDS_ROOT that saev
#     would not read, a preprint directory missing a shard.
set -euo pipefail
W="$SAEV_BIN/saev-worker"
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
CHK="$SAEV_ROOT/tests/saev_shards_check.py"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
N=29 L=2 P=6 D=8
store() { mpirun -np 1 "$W" store-selftest --images $N --layers $L --patches $P --d $D --batch 4 --ipf 8 --dtype float32 "$@" >/dev/null; }
one_dir() { local d=("$1"/*/); [ ${#d[@]} -eq 1 ] || { echo "FAIL: $1 holds ${#d[@]} directories"; exit 1; }; echo "${d[0]%/}"; }

echo "1. export-saev writes what saev's writer writes:"
store --patch-labels --dataset "kind=ade20k root=/data/ADE Challenge/./2016/ split=validation n=$N" --out "$T/seg"
"$S" export-saev "$T/seg" "$T/a/saev/shards" --max-tokens-per-shard 100
$PY "$CHK" layout "$T/a/saev/shards" ade20k "/data/ADE Challenge/2016" validation 100
[ -f "$(one_dir "$T/a/saev/shards")/labels.bin" ] || { echo "FAIL: no labels.bin"; exit 1; }
store --dataset "kind=folder root=data/fashion/train n=$N" --out "$T/folder"
"$S" export-saev "$T/folder" "$T/f/saev/shards/" --max-tokens-per-shard 2400000
$PY "$CHK" layout "$T/f/saev/shards" folder "data/fashion/train" "" 2400000
[ ! -e "$(one_dir "$T/f/saev/shards")/labels.bin" ] || { echo "FAIL: labels.bin without patch labels (saev's writer deletes it)"; exit 1; }

echo "2. store -> export -> import -> same bytes; re-export identical:"
A=$(one_dir "$T/a/saev/shards")
"$S" import-saev "$A" "$T/seg-imported" --dtype float32 --images-per-file 8 >/dev/null
$PY "$SAEV_ROOT/tests/store_check.py" roundtrip "$T/seg" "$T/seg-imported"
"$S" export-saev "$T/seg-imported" "$T/b/saev/shards" --max-tokens-per-shard 100 >/dev/null
B=$(one_dir "$T/b/saev/shards")
[ "$(basename "$A")" = "$(basename "$B")" ] || { echo "FAIL: re-export named $(basename "$B"), first export $(basename "$A")"; exit 1; }
for f in "$A"/*; do cmp "$f" "$B/$(basename "$f")" || { echo "FAIL: re-export differs in $(basename "$f")"; exit 1; }; done
echo "  re-export $(basename "$B"): $(ls "$B" | wc -l) files identical"

echo "3. the preprint's layout:"
mkdir -p "$T/pre/shards"
P_DIR=$($PY "$CHK" preprint "$(one_dir "$T/f/saev/shards")" "$T/pre/shards")
"$S" import-saev "$P_DIR" "$T/pre-imported" --dtype float32 --images-per-file 8 >/dev/null
$PY "$CHK" same-acts "$T/folder" "$T/pre-imported"

echo "3b. visuals on an imported store (no data set recorded): statistics only, or refused before writing:"
printf 'train: {data: %s, layer: 3, batch_size: 16, steps: 4, lr_warmup: 1, out_dir: %s, sae: {d_sae: 32, k: 4}}\n' "$T/pre-imported" "$T/pre-sae" > "$T/pre.yaml"
"$S" train "$T/pre.yaml" > "$T/pre-train.log" 2>&1 || { cat "$T/pre-train.log"; exit 1; }
"$S" visuals "$T/pre.yaml" --set "visuals.sae=[$T/pre-sae]" --set "visuals.data=$T/pre-imported" --set visuals.layer=3 --set visuals.n_render=0 \
    --set "visuals.out=$T/pre-vis" > "$T/pre-vis.log" 2>&1 || { cat "$T/pre-vis.log"; echo "FAIL: visuals without rendering"; exit 1; }
[ -s "$T/pre-vis/top.safetensors" ] && [ -s "$T/pre-vis/index.json" ] || { ls -la "$T/pre-vis"; echo "FAIL: no top.safetensors"; exit 1; }
set +e; "$S" visuals "$T/pre.yaml" --set "visuals.sae=[$T/pre-sae]" --set "visuals.data=$T/pre-imported" --set visuals.layer=3 --set visuals.n_render=2 \
    --set "visuals.out=$T/pre-vis2" > "$T/pre-vis2.log" 2>&1; rc=$?; set -e
[ $rc -eq 2 ] && grep -q "does not record its data set" "$T/pre-vis2.log" && [ ! -e "$T/pre-vis2" ] || { cat "$T/pre-vis2.log"; echo "FAIL: rendering without a data set gave $rc"; exit 1; }
echo "  n_render 0: top.safetensors; n_render 2: exit 2, nothing written"

echo "4. bad input:"
refused() { # what, phrase, path that must not appear, command...
  local what=$1 phrase=$2 absent=$3; shift 3
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ $rc -eq 2 ] && grep -q "$phrase" <<<"$out" && [ ! -e "$absent" ] || { echo "FAIL: $what: rc $rc: $out"; exit 1; }
  echo "  $what: exit 2"
}
refused "export-saev to .../c/shards" "saev/shards" "$T/c" "$S" export-saev "$T/seg" "$T/c/shards"
rm "$P_DIR/acts000000.bin"
refused "import-saev of a preprint directory without acts000000.bin" "acts000000.bin" "$T/pre-bad" "$S" import-saev "$P_DIR" "$T/pre-bad"
echo "ok"
