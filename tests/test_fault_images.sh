#!/usr/bin/env bash
# test_fault_images.sh: bad entries in an image folder during `saev activations`
# (2 ranks, tiny random CLIP). Beside good images, class folders hold:
#   zz_truncated.jpg  a JPEG cut after 300 bytes (stops mid-read)
#   zz_empty.png      zero bytes
#   zz_folder.jpg/    a directory named like an image
#   zz_fifo.jpg       a FIFO named like an image (opening it would wait for a writer forever)
#   zz_huge.png       a valid PNG header declaring 100000x100000 pixels (10^10, over the
#                     default data.max_pixels of 89478485, Pillow's limit) with a tiny IDAT
#   zz_loop.jpg       a symlink to itself (ELOOP), and a class folder link loop
#                     (zz_class_loop -> zz_class_loop) at the top level
# With data.on_bad_image: skip the run succeeds; each of the six is skipped with its
# reason in the log and its index in bad_images.tsv (indices from the sorted listing:
# classes in sorted order, files in sorted order), every other image is written, and the
# looping class folder is reported and left out. The whole run must finish within 300 s
# (no hang on the loop or the huge header). With on_bad_image: fail the job stops with a
# non-zero status naming a bad file (which one depends on which rank meets one first).
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*"; exit 1; }

"$S" demo-data data --per-class 1 --seg-images 0 >/dev/null
"$S" make-model --family clip --preset tiny --seed 1 --out model >/dev/null
C1=$(ls -d data/fashion/*/ | sed -n 1p); C2=$(ls -d data/fashion/*/ | sed -n 2p)
head -c 300 "$(ls data/fashion/*/*.jpg data/fashion/*/*.png 2>/dev/null | head -1)" > "${C1}zz_truncated.jpg"
: > "${C1}zz_empty.png"
mkdir "${C2}zz_folder.jpg"
mkfifo "${C2}zz_fifo.jpg"
ln -s zz_loop.jpg "${C2}zz_loop.jpg"
ln -s zz_class_loop data/fashion/zz_class_loop
$PY - "${C2}zz_huge.png" <<'PYEOF'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 301)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PYEOF
# Dataset order: sorted class folders, sorted entries named like images.
IMAGES() { for c in $(ls data/fashion | sort); do [ -d "data/fashion/$c" ] || continue; ls "data/fashion/$c" | sort | grep -Ei '\.(jpg|jpeg|png|ppm|bmp|pgm|tif|tiff|webp|gif)$' | sed "s|^|data/fashion/$c/|"; done; }
IMAGES > order.txt 2>/dev/null || true
n=$(wc -l < order.txt)
want_bad=$(grep -n "zz_" order.txt | cut -d: -f1 | awk '{print $1-1}' | xargs)
[ "$(echo $want_bad | wc -w)" = 6 ] || { cat order.txt; fail "expected 6 bad entries in the listing"; }

cat > a.yaml <<YAML
run: {ranks: 2}
data: {kind: folder, root: data/fashion, on_bad_image: skip}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-2]}
activations: {out: store, batch_size: 4}
YAML
set +e; timeout 300 "$S" activations a.yaml > skip.log 2>&1; rc=$?; set -e
[ $rc = 0 ] || { tail -30 skip.log; fail "activations with bad entries (skip) gave status $rc"; }
got_bad=$(cut -f1 store/bad_images.tsv | xargs)
[ "$got_bad" = "$want_bad" ] || { cat store/bad_images.tsv; fail "bad_images.tsv lists [$got_bad], want [$want_bad]"; }
check_reason() { grep -E "skipping bad image [0-9]+: .*$1.*$2" skip.log >/dev/null || { grep "skipping" skip.log; fail "no skip of $1 with /$2/"; }; }
check_reason zz_truncated.jpg "."
check_reason zz_empty.png "empty|0 bytes|not an image|too short"
check_reason zz_folder.jpg "not a regular file \(a folder\)"
check_reason zz_fifo.jpg "not a regular file \(a FIFO\)"
check_reason zz_huge.png "100000x100000.*over the limit"
check_reason zz_loop.jpg "Too many levels of symbolic links"
grep -q "skipping data/fashion/zz_class_loop: Too many levels of symbolic links" skip.log || { cat skip.log; fail "the looping class folder was not reported"; }
$PY - store "$n" "$want_bad" <<'PYEOF'
import glob, sys, h5py, numpy as np
d, n, bad = sys.argv[1], int(sys.argv[2]), set(map(int, sys.argv[3].split()))
status = np.concatenate([h5py.File(p, "r")["status"][()] for p in sorted(glob.glob(d + "/acts-*.h5"))])
assert len(status) == n, (len(status), n)
want = np.array([2 if i in bad else 1 for i in range(n)])
assert (status == want).all(), (status, want)
print(f"store: {n} images, skipped exactly {sorted(bad)}")
PYEOF

set +e; timeout 300 "$S" activations a.yaml --set data.on_bad_image=fail --set activations.out=store_fail > fail.log 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "on_bad_image=fail exited 0"
grep -Eq "bad image \(data.on_bad_image: fail\): .*zz_(truncated|empty|folder|fifo|huge|loop)" fail.log || { tail -20 fail.log; fail "the failure does not name a bad file"; }
echo "test_fault_images: ok"
