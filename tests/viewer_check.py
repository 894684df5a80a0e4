"""viewer_check.py: references for the viewer's tests (run with /usr/bin/python3).

  encode STORE CKPT LAYER_IDX POS      prints the float64 latents [patches, S] of store
        image POS as JSON (the reference for /api/sae/<i>/image/<n>)
"""
import json, os, sys
import numpy as np
import h5py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import load

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

def main():
    cmd = sys.argv[1]
    if cmd == "encode":
        acts, index, status = read_store(sys.argv[2], int(sys.argv[4]))
        f = encode(sys.argv[3], acts[int(sys.argv[5])])
        print(json.dumps(f.tolist()))
    else:
        sys.exit("unknown command " + cmd)

if __name__ == "__main__":
    main()
