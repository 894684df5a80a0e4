"""viewer_check.py: references for the viewer's tests (run with /usr/bin/python3).

  top STORE CKPT LAYER_IDX OUT TOP_K   writes OUT/top.safetensors and OUT/index.json as
        `saev visuals` defines them (issue 15's outputs: values/images [S, top_k], freq,
        mean_value, max_value [S]; an image's score for latent s is the largest f_s over
        its patch rows where s fires; ties to the lower image index), computed in float64
        from the store and the checkpoint, with no latent rendered: the viewer then renders
        every top image itself. Used where visuals' own output is not built.
  encode STORE CKPT LAYER_IDX POS      prints the float64 latents [patches, S] of store
        image POS as JSON (the reference for /api/sae/<i>/image/<n>)
"""
import json, os, sys
import numpy as np
import h5py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import load, save

def read_store(store, layer_idx):
    files = sorted(f for f in os.listdir(store) if f.startswith("acts-") and f.endswith(".h5"))
    acts, index, status = [], [], []
    for f in files:
        with h5py.File(os.path.join(store, f), "r") as h:
            has_cls = int(h.attrs["has_cls"])
            acts.append(np.asarray(h["activations"][:, layer_idx, has_cls:, :], np.float64))
            index.append(np.asarray(h["image_index"][:]))
            status.append(np.asarray(h["status"][:]))
    return np.concatenate(acts), np.concatenate(index), np.concatenate(status)

def encode(ckpt, x):
    t, meta = load(ckpt)
    cfg = json.loads(meta["saev_sae_config"])
    scale = float(cfg.get("data_scale", 1.0))
    w_enc, b_enc, b_dec = (np.asarray(t[k], np.float64) for k in ("W_enc", "b_enc", "b_dec"))
    x = x * scale
    if cfg.get("center_input"):
        x = x - b_dec
    h = x @ w_enc + b_enc
    act = cfg["activation"]
    if act == "relu":
        return np.maximum(h, 0)
    if act == "batch-top-k":
        th = float(np.asarray(t["threshold"]).reshape(-1)[0])
        return np.where(h > th, h, 0)
    k = int(cfg["k"])
    keep = np.argsort(-h, axis=1, kind="stable")[:, :k]
    f = np.zeros_like(h)
    np.put_along_axis(f, keep, np.take_along_axis(h, keep, 1), 1)
    return f

def top(store, ckpt, layer_idx, out, top_k):
    acts, index, status = read_store(store, layer_idx)
    good = np.nonzero(status == 1)[0]
    n_img, P, d = acts.shape
    f = encode(ckpt, acts[good].reshape(-1, d)).reshape(len(good), P, -1)
    S = f.shape[2]
    fires = f != 0
    rows = len(good) * P
    freq = fires.sum((0, 1)) / rows
    fired = np.maximum(fires.sum((0, 1)), 1)
    mean_value = np.where(fires.sum((0, 1)) > 0, f.sum((0, 1)) / fired, np.nan)
    max_value = np.where(fires.any((0, 1)), np.where(fires, f, -np.inf).max((0, 1)), 0)
    score = np.where(fires, f, -np.inf).max(1)  # [images, S]
    values = np.zeros((S, top_k))
    images = -np.ones((S, top_k), np.int64)
    for s in range(S):
        cand = [(-score[i, s], int(index[good[i]])) for i in range(len(good)) if np.isfinite(score[i, s])]
        cand.sort()
        for j, (v, img) in enumerate(cand[:top_k]):
            values[s, j] = -v
            images[s, j] = img
    os.makedirs(out, exist_ok=True)
    save(os.path.join(out, "top.safetensors"), {"values": values, "images": images, "freq": freq,
                                                 "mean_value": mean_value, "max_value": max_value})
    with open(os.path.join(out, "index.json"), "w") as fh:
        json.dump({"sae": ckpt, "data": store, "layer": None, "tokens": "patches", "top_k": top_k, "rendered": []}, fh)

def main():
    cmd = sys.argv[1]
    if cmd == "top":
        top(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    elif cmd == "encode":
        acts, index, status = read_store(sys.argv[2], int(sys.argv[4]))
        f = encode(sys.argv[3], acts[int(sys.argv[5])])
        print(json.dumps(f.tolist()))
    else:
        sys.exit("unknown command " + cmd)

if __name__ == "__main__":
    main()
