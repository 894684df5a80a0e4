#!/bin/bash
# test_forward.sh: `saev forward` and `saev make-model` end to end.
# References: tests/fixtures/hf-vit/*/expected.safetensors (transformers, float64);
# every hidden state and last_hidden_state must be within 1e-4 relative error (register
# tokens removed from the reference, as saev drops them). Then invariants: --layers
# output equals the matching hidden states of the full run; a make-model checkpoint
# round-trips through forward; bad input fails with a message naming it and leaves no
# output behind.
set -euo pipefail
SAEV=${SAEV_BIN:?}/saev
FX=${SAEV_FIXTURES:?}/hf-vit
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP" && mkdir -p "$TMP"
PY=/usr/bin/python3

compare() { # compare OUT.safetensors EXPECTED.safetensors REGISTERS
  $PY - "$@" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n)); data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__': continue
        assert v['dtype'] == 'F32', (path, k, v['dtype'])
        b, e = v['data_offsets']
        out[k] = np.frombuffer(data[b:e], dtype='<f4').reshape(v['shape'])
    return out
out, ref = load(sys.argv[1]), load(sys.argv[2])
R = int(sys.argv[3])
keep = lambda a: np.concatenate([a[..., :1, :], a[..., 1 + R:, :]], axis=-2) if R else a
for key in ('hidden_states', 'last_hidden_state'):
    o, r = out[key], keep(ref[key])
    assert o.shape == r.shape, (key, o.shape, r.shape)
    layers = o if key == 'hidden_states' else o[None]
    refs = r if key == 'hidden_states' else r[None]
    for i, (a, b) in enumerate(zip(layers, refs)):
        err = np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64))
        print(f'  {key}[{i}] rel err {err:.2e}' if key == 'hidden_states' else f'  {key} rel err {err:.2e}')
        assert err <= 1e-4, (sys.argv[1], key, i, err)
PYEOF
}

for fam in clip dinov2 dinov2_reg siglip; do
  regs=0; [ $fam = dinov2_reg ] && regs=4
  weights="model.safetensors"
  for w in model.safetensors $([ $fam = clip ] && echo open_clip_model.safetensors); do
    echo "== $fam/$w"
    "$SAEV" forward --model "$FX/$fam/$w" --pixels "$FX/$fam/expected.safetensors" --out "$TMP/$fam.out.safetensors" --device cpu
    compare "$TMP/$fam.out.safetensors" "$FX/$fam/expected.safetensors" $regs
  done
done

echo "== folder path, --layers and --batch against the full run"
"$SAEV" forward --model "$FX/dinov2_reg" --pixels "$FX/dinov2_reg/expected.safetensors" --out "$TMP/layers.safetensors" --layers -1,0,-2 --batch 1
$PY - "$TMP/layers.safetensors" "$TMP/dinov2_reg.out.safetensors" "${SAEV_ROOT:?}/tests" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]; hdr = json.loads(f.read(n)); data = f.read()
    meta = hdr.pop('__metadata__', {})
    return {k: np.frombuffer(data[v['data_offsets'][0]:v['data_offsets'][1]], dtype='<f4').reshape(v['shape']) for k, v in hdr.items()}, meta
part, meta = load(sys.argv[1]); full, _ = load(sys.argv[2])
assert meta['layers'] == '2,0,1', meta
hs = full['hidden_states']
# --batch 1 changes GEMM shapes, so agreement is up to float summation order: the bound
# of tests/sae_compare.py's vit_path_bound for blk + 1 blocks of the fixture's ViT
# (d 48, MLP 96, 4 heads).
sys.path.insert(0, sys.argv[3]); from sae_compare import vit_path_bound
for j, blk in enumerate([2, 0, 1]):
    a, b = part['layers'][j].astype(np.float64), hs[blk + 1].astype(np.float64)
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    bound = vit_path_bound(blk + 1, 96)
    print(f'  block {blk} (batch 1) vs hidden_states[{blk + 1}] (batch 2): rel err {err:.1e} (bound {bound:.1e})')
    assert err <= bound, (blk, err, bound)
PYEOF

echo "== make-model round trip"
"$SAEV" make-model --family siglip --preset tiny --seed 7 --out "$TMP/tiny"
"$SAEV" make-model --family siglip --preset tiny --seed 7 --out "$TMP/tiny2"
cmp "$TMP/tiny/model.safetensors" "$TMP/tiny2/model.safetensors"
$PY - "$TMP/tiny/config.json" "$TMP/px.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
cfg = json.load(open(sys.argv[1]))
assert cfg['model_type'] == 'siglip_vision_model' and cfg['hidden_size'] == 48, cfg
x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype('<f4')
def save(path, x):
    hdr = json.dumps({'pixel_values': {'dtype': 'F32', 'shape': list(x.shape), 'data_offsets': [0, x.nbytes]}}).encode()
    hdr += b' ' * (-len(hdr) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hdr)) + hdr + x.tobytes())
save(sys.argv[2], x)
save(sys.argv[2].replace('px.', 'px40.'), np.zeros((1, 3, 40, 40), '<f4'))
PYEOF
"$SAEV" forward --model "$TMP/tiny" --pixels "$TMP/px.safetensors" --out "$TMP/tiny.out.safetensors"
$PY - "$TMP/tiny.out.safetensors" <<'PYEOF'
import json, struct, sys
import numpy as np
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; hdr = json.loads(f.read(n))
assert hdr['hidden_states']['shape'] == [4, 3, 16, 48], hdr['hidden_states']
assert hdr['last_hidden_state']['shape'] == [3, 16, 48]
print('  tiny siglip: hidden_states [4, 3, 16, 48]')
PYEOF

echo "== bad input"
expect_fail() { # expect_fail NEEDLE CMD...
  local needle=$1; shift
  if "$@" 2>"$TMP/err.txt"; then echo "should have failed: $*"; exit 1; fi
  grep -q -- "$needle" "$TMP/err.txt" || { echo "message lacks '$needle':"; cat "$TMP/err.txt"; exit 1; }
  echo "  ok: $(head -c 200 "$TMP/err.txt")"
}
rm -f "$TMP/bad.safetensors"
expect_fail "out of range" "$SAEV" forward --model "$FX/clip" --pixels "$FX/clip/expected.safetensors" --out "$TMP/bad.safetensors" --layers 3
expect_fail "pixel_values" "$SAEV" forward --model "$FX/clip" --pixels "$FX/clip/model.safetensors" --out "$TMP/bad.safetensors"
expect_fail "has shape \[17, 48\], expected \[37, 48\]" "$SAEV" forward --model "$FX/clip" --pixels "$TMP/px.safetensors" --out "$TMP/bad.safetensors" --image-size 48
expect_fail "position table" "$SAEV" forward --model "$TMP/tiny" --pixels "$TMP/px40.safetensors" --out "$TMP/bad.safetensors"
expect_fail "/nonexistent/config.json: cannot open" "$SAEV" forward --model "$TMP/tiny/model.safetensors" --config /nonexistent/config.json --pixels "$TMP/px.safetensors" --out "$TMP/bad.safetensors"
mkdir -p "$TMP/noconfig" && cp "$TMP/tiny/model.safetensors" "$TMP/noconfig/weights.safetensors"
expect_fail "no config.json beside the weights" "$SAEV" forward --model "$TMP/noconfig" --pixels "$TMP/px.safetensors" --out "$TMP/bad.safetensors"
echo "== no config.json: sizes read off the tensors, heads and family from flags"
"$SAEV" forward --model "$TMP/noconfig" --family siglip --heads 4 --pixels "$TMP/px.safetensors" --out "$TMP/noconfig.out.safetensors"
$PY - "$TMP/noconfig.out.safetensors" "$TMP/tiny.out.safetensors" <<'PYEOF'
import json, struct, sys
def tensors(path):
    f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; hdr = json.loads(f.read(n)); data = f.read()
    return {k: data[v['data_offsets'][0]:v['data_offsets'][1]] for k, v in hdr.items() if k != '__metadata__'}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a == b, 'outputs differ'
print('  identical to the run with config.json')
PYEOF
expect_fail "unknown preset" "$SAEV" make-model --family clip --preset huge --seed 1 --out "$TMP/x"
[ ! -e "$TMP/bad.safetensors" ] || { echo "a failed run left output behind"; exit 1; }
echo "all forward tests passed"
