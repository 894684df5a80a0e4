#!/usr/bin/python3
"""make_seeds.py: writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<name>/).

Seeds are small valid inputs of every shape the parsers accept (so the fuzzer starts
inside the interesting code) plus a few near-misses. Run from the repository root with
Debian's python (/usr/bin/python3: numpy, PIL). The corpus is committed; rerunning this
rewrites it byte for byte (fixed seeds, no timestamps)."""
import io, json, os, struct, sys
import numpy as np
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(name, fname, data):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)

def safetensors(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

rng = np.random.default_rng(0)
# ---- safetensors: every dtype, scalars, empty tensors, metadata --------------------------
put("safetensors", "all_dtypes.safetensors", safetensors({
    "f32": ("F32", rng.standard_normal((2, 3)).astype("<f4")),
    "f16": ("F16", rng.standard_normal((3,)).astype("<f2")),
    "bf16": ("BF16", (rng.standard_normal(4).astype("<f4").view("<u4") >> 16).astype("<u2")),
    "f64": ("F64", rng.standard_normal((1, 2)).astype("<f8")),
    "i64": ("I64", np.arange(3, dtype="<i8")),
    "i32": ("I32", np.arange(2, dtype="<i4")),
    "u8": ("U8", np.arange(5, dtype="u1")),
}, {"format": "pt", "note": "seed"}))
put("safetensors", "scalar_and_empty.safetensors", safetensors({
    "scalar": ("F32", np.array(1.5, dtype="<f4")),
    "empty": ("F32", np.zeros((0, 4), dtype="<f4")),
}))
# ---- SAE checkpoints: what sae_checkpoint_write produces, three activations --------------
def sae_ckpt(d, S, activation, extra=None):
    cfg = {"d_model": d, "d_sae": S, "activation": activation, "k": 2, "l1_coeff": 0.0004, "momentum": 0.99,
           "k_aux": 4, "aux_alpha": 0.03125, "matryoshka_prefixes": [], "sample_prefixes": False, "n_prefixes": 0,
           "dead_threshold_tokens": 10000000, "normalize_w_dec": True, "remove_parallel_grads": True,
           "center_input": False, "data_scale": 1.0}
    cfg.update(extra or {})
    t = {"W_enc": ("F32", rng.standard_normal((d, S)).astype("<f4")), "b_enc": ("F32", np.zeros(S, "<f4")),
         "W_dec": ("F32", rng.standard_normal((S, d)).astype("<f4")), "b_dec": ("F32", np.zeros(d, "<f4"))}
    if activation == "batch-top-k":
        t["threshold"] = ("F32", np.array([0.25], "<f4"))
    return safetensors(t, {"format": "saev-c sae 1", "saev_sae_config": json.dumps(cfg), "step": "7"})
put("checkpoint", "relu.safetensors", sae_ckpt(4, 8, "relu"))
put("checkpoint", "topk.safetensors", sae_ckpt(3, 6, "top-k"))
put("checkpoint", "batchtopk.safetensors", sae_ckpt(4, 8, "batch-top-k"))
put("checkpoint", "matryoshka.safetensors", sae_ckpt(4, 8, "top-k", {"matryoshka_prefixes": [2, 4, 8]}))
put("safetensors", "checkpoint.safetensors", sae_ckpt(4, 8, "relu"))
# ---- images: PNG of every colour type and depth, JPEG baseline/progressive/grey/CMYK ------
def png(im, **kw):
    b = io.BytesIO(); im.save(b, "PNG", **kw); return b.getvalue()
def jpg(im, **kw):
    b = io.BytesIO(); im.save(b, "JPEG", **kw); return b.getvalue()
px = (rng.random((9, 13, 3)) * 255).astype(np.uint8)
rgb = Image.fromarray(px, "RGB")
put("image", "rgb.png", png(rgb))
put("image", "rgba.png", png(rgb.convert("RGBA")))
put("image", "grey.png", png(rgb.convert("L")))
put("image", "grey_alpha.png", png(rgb.convert("LA")))
put("image", "palette.png", png(rgb.convert("P")))
put("image", "bilevel.png", png(rgb.convert("1")))
put("image", "grey16.png", png(Image.fromarray((px[:, :, 0].astype(np.uint16) * 257), "I;16")))
put("image", "baseline.jpg", jpg(rgb, quality=90))
put("image", "progressive.jpg", jpg(rgb, quality=75, progressive=True))
put("image", "grey.jpg", jpg(rgb.convert("L")))
put("image", "cmyk.jpg", jpg(rgb.convert("CMYK")))
put("image", "subsampled.jpg", jpg(rgb, subsampling=2))
# ---- configs: the shipped examples and the shapes --set and sweeps take ------------------
cfgdir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
for f in sorted(os.listdir(cfgdir)):
    with open(os.path.join(cfgdir, f), "rb") as fh:
        put("config", f, fh.read())
put("config", "sets.yaml", b"run: {name: x}\ntrain: {lr: 0.001}\n\0train.lr=3e-4\ntrain.sae={expansion: 4, activation: top-k, k: 8}\nmodel.layers=[-2, -1]\n")
put("config", "sweep.yaml", b"train:\n  sweep: {lr: [1e-4, 1e-3], sae.k: [8, 16]}\n  sae: {activation: top-k}\n")
put("config", "anchors.yaml", b"base: &b {lr: 0.1}\ntrain: *b\n")
put("config", "flow.yaml", b"{run: {ranks: 2, device: cpu}, data: {kind: folder, root: /tmp}}\n")
print("seeds written under", root)
