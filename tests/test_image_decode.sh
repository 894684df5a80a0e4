#!/usr/bin/env bash
# test_image_decode.sh: JPEG and PNG variants decoded by `saev preprocess` (no resize, mean 0,
# std 1, so the tensor is the decoded pixels / 255) against Pillow's
# Image.open(f).convert("RGB") (the reference) pixel for pixel; a bad image through the
# command; and `saev demo-data` determinism (same seed = same bytes, other seed differs).
set -euo pipefail
ROOT=${SAEV_ROOT:-$(pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T"
PY=/usr/bin/python3

$PY - "$T" <<'PYEOF'
import sys, struct, zlib, io
import numpy as np
from PIL import Image
t = sys.argv[1]
rng = np.random.default_rng(0)
h, w = 37, 53
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([(xx * 5) % 256, (yy * 7) % 256, (xx * yy) % 256], -1).astype(np.uint8)
rgb[::5] = rng.integers(0, 256, rgb[::5].shape, dtype=np.uint8)
im = Image.fromarray(rgb)
im.save(f"{t}/baseline.jpg", quality=90)
im.save(f"{t}/progressive.jpg", quality=85, progressive=True)
im.save(f"{t}/subsample444.jpg", quality=95, subsampling=0)
im.convert("L").save(f"{t}/gray.jpg", quality=90)
im.convert("CMYK").save(f"{t}/cmyk.jpg", quality=90)
im.save(f"{t}/rgb.png")
a = Image.fromarray(((xx * 3) % 256).astype(np.uint8))
Image.merge("RGBA", (*im.split(), a)).save(f"{t}/rgba.png")
Image.merge("LA", (im.convert("L"), a)).save(f"{t}/gray_alpha.png")
im.convert("L").save(f"{t}/gray8.png")
im.convert("P", palette=Image.ADAPTIVE, colors=50).save(f"{t}/palette.png")
p = im.convert("P", palette=Image.ADAPTIVE, colors=16); p.info["transparency"] = 3
p.save(f"{t}/palette4_trns.png", bits=4, transparency=3)
im.convert("1").save(f"{t}/bilevel.png")

def png(path, width, height, depth, ctype, raw, interlace=0):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)
    rows = b"".join(b"\0" + raw[i] for i in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
v16 = (rgb.astype(np.uint16) * 257 + rng.integers(0, 256, rgb.shape)).astype(">u2")
png(f"{t}/rgb16.png", w, h, 16, 2, [v16[i].tobytes() for i in range(h)])
rgba16 = np.concatenate([v16, (v16[..., :1] // 3)], -1).astype(">u2")
png(f"{t}/rgba16.png", w, h, 16, 6, [rgba16[i].tobytes() for i in range(h)])
la16 = np.stack([v16[..., 0], v16[..., 1]], -1).astype(">u2")
png(f"{t}/gray_alpha16.png", w, h, 16, 4, [la16[i].tobytes() for i in range(h)])
g16 = ((xx * 40 + yy * 3) % 700).astype(">u2")  # spans below and above 255: Pillow clips
png(f"{t}/gray16.png", w, h, 16, 0, [g16[i].tobytes() for i in range(h)])
PYEOF

fail=0
for f in "$T"/*.jpg "$T"/*.png; do
  "$BIN/saev" preprocess --pipeline siglip "$f" --resize none --mean 0,0,0 --std 1,1,1 --out "$f.safetensors" >/dev/null
done
$PY - "$T" <<'PYEOF' || fail=1
import sys, glob, json, struct
import numpy as np
from PIL import Image
t = sys.argv[1]
bad = 0
files = sorted(glob.glob(f"{t}/*.jpg") + glob.glob(f"{t}/*.png"))
for f in files:
    with open(f + ".safetensors", "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        hdr = json.loads(fh.read(n))["pixel_values"]
        data = np.frombuffer(fh.read(), dtype="<f4")
    got = np.rint(data.reshape(hdr["shape"]) * 255).astype(np.int32)
    want = np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).astype(np.int32)
    d = int(np.abs(got - want).max()) if got.shape == want.shape else 999
    mode = Image.open(f).mode
    print(f"{f.split('/')[-1]:22s} Pillow mode {mode:5s} max |ours - Pillow| = {d}")
    bad += d != 0
print(f"{len(files)} variants, {bad} differ")
sys.exit(1 if bad or len(files) < 16 else 0)
PYEOF

# A bad image through the command: exit 1, message names the file.
printf 'not an image' > "$T/fake.png"
set +e
msg=$("$BIN/saev" preprocess --pipeline clip "$T/fake.png" --out "$T/fake.safetensors" 2>&1); rc=$?
set -e
if [ $rc -ne 1 ] || ! grep -q "fake.png: not a JPEG or PNG image" <<<"$msg" || [ -e "$T/fake.safetensors" ]; then
  echo "FAIL: bad image: rc=$rc msg=$msg"; fail=1
fi

# demo-data: deterministic for a seed.
"$BIN/saev" demo-data "$T/d1" --seed 3 --per-class 2 --seg-images 3 >/dev/null
"$BIN/saev" demo-data "$T/d2" --seed 3 --per-class 2 --seg-images 3 >/dev/null
"$BIN/saev" demo-data "$T/d3" --seed 4 --per-class 2 --seg-images 3 >/dev/null
diff -r "$T/d1" "$T/d2" >/dev/null || { echo "FAIL: demo-data differs for the same seed"; fail=1; }
diff -r "$T/d1" "$T/d3" >/dev/null && { echo "FAIL: demo-data identical for different seeds"; fail=1; }
n=$(find "$T/d1/fashion" -name '*.png' -o -name '*.jpg' | wc -l)
[ "$n" = 20 ] || { echo "FAIL: expected 20 fashion images, got $n"; fail=1; }
[ -e "$T/d1/segmentation/annotations/training/00000.png" ] || { echo "FAIL: no segmentation masks"; fail=1; }

[ $fail = 0 ] && echo "test_image_decode: OK"
exit $fail
