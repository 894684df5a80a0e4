"""Checks for tests/test_activations.sh, run with /usr/bin/python3 (numpy, h5py).

  same STORE_A STORE_B          activations, labels, status of two stores are bit-identical
  forward STORE IMAGE_I Y.st    store row IMAGE_I (layer 0) equals `saev forward` output Y.st
  layout STORE N T D            h5py sees shapes, dtypes, attributes and completeness
  skipped STORE I...            exactly images I... are marked skipped (status 2)
  stack IN.st... OUT.st         stacks [3,H,W] pixel_values into one [B,3,H,W] file
"""
import glob, os, sys
import h5py, numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_compare import load, save, vit_path_bound  # the tests' one safetensors reader/writer

def files(store):
    return sorted(glob.glob(store + "/acts-*.h5"))

def read_all(store, name):
    return np.concatenate([h5py.File(f, "r")[name][...] for f in files(store)])

cmd = sys.argv[1]
if cmd == "same":
    a, b = sys.argv[2], sys.argv[3]
    for name in ("activations", "label", "status", "image_index"):
        x, y = read_all(a, name), read_all(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, (name, x.shape, y.shape)
        assert x.tobytes() == y.tobytes(), "%s differs between %s and %s" % (name, a, b)
    print("same: %s == %s" % (a, b))
elif cmd == "forward":
    store, i, ypath = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    acts = read_all(store, "activations")[i, 0]           # [T, D], layer 0 of the store
    y = load(ypath)[0]["layers"][0, 0]                    # [n, B, T, D] -> first layer, image 0
    err = np.linalg.norm(acts - y) / np.linalg.norm(y)
    # Same float32 code path; only GEMM blocking differs with the batch size. The test's
    # tiny ViT (d 48, MLP 96) to layer -2 of 3 runs 2 blocks.
    bound = vit_path_bound(2, 96)
    assert err <= bound, "store row %d vs saev forward: relative error %g > %g" % (i, err, bound)
    print("forward: image %d relative error %.2e" % (i, err))
elif cmd == "layout":
    store, n, t, d = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    fs = files(store)
    total = 0
    for f in fs:
        h = h5py.File(f, "r")
        a = h["activations"]
        assert a.ndim == 4 and a.shape[1] == 1 and a.shape[2] == t and a.shape[3] == d, a.shape
        assert a.dtype == np.float32, a.dtype
        assert a.chunks[1] == 1 and a.chunks[2] == t and a.chunks[3] == d, a.chunks
        assert int(h.attrs["complete"]) == 1
        for key in ("model", "model_family", "checkpoint_digest", "layers", "token_layout", "preprocessing", "dataset", "config", "saev_version"):
            assert key in h.attrs, key
        assert h["label"].dtype == np.int64 and h["image_index"].dtype == np.int64
        total += a.shape[0]
    assert total == n, (total, n)
    print("layout: %d images in %d files ok" % (total, len(fs)))
elif cmd == "skipped":
    store, want = sys.argv[2], sorted(int(x) for x in sys.argv[3:])
    got = sorted(np.nonzero(read_all(store, "status") == 2)[0].tolist())
    assert got == want, (got, want)
    assert (read_all(store, "status") != 0).all(), "an image is still pending"
    print("skipped: %s" % got)
elif cmd == "stack":
    ins, out = sys.argv[2:-1], sys.argv[-1]
    save(out, {"pixel_values": np.stack([load(p)[0]["pixel_values"] for p in ins])})
else:
    sys.exit("unknown command " + cmd)
