"""sae_compare.py: checks for tests/test_sae_train.sh (run with /usr/bin/python3).

  fixture CASE_DIR RUN_DIR           per-step loss terms (metrics.jsonl) and final weights
                                     (sae.safetensors) against expected.safetensors, 1e-4 relative
  same RUN_A RUN_B TOL               two runs' weights and per-step losses agree within TOL relative
  make-data PATH N D SEED [NAN_ROW [SCALE]]  random activations [N,D] (a NaN at NAN_ROW >= 0, times SCALE)
"""
import json, struct, sys
import numpy as np

DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64}

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=DT[v["dtype"]]).reshape(v["shape"])
    return out, h.get("__metadata__", {})

def save(path, tensors, meta=None, exact=False):
    """Writes tensors as safetensors, F32 (data 8-byte aligned, as the C writer does), with
    the string dict meta as __metadata__ when given; with exact, float64 arrays stay F64
    (float64 references) and int64 arrays stay I64 (indices)."""
    kinds = {np.dtype(np.float64): ("<f8", "F64"), np.dtype(np.int64): ("<i8", "I64")}
    header, off, blobs = {}, 0, []
    for k, a in tensors.items():
        np_dt, st_dt = kinds.get(np.asarray(a).dtype, ("<f4", "F32")) if exact else ("<f4", "F32")
        b = np.ascontiguousarray(a, dtype=np_dt).tobytes()
        header[k] = {"dtype": st_dt, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if meta:
        header["__metadata__"] = meta
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))

def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (den if den > 0 else 1.0)

U32 = 2.0 ** -24  # unit roundoff of float32

def gamma(n, u=U32):
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term float sum
    or dot product (Accuracy and Stability of Numerical Algorithms, 3.1 and 3.5)."""
    return n * u / (1 - n * u)

def vit_path_bound(blocks, k_max):
    """How far two float32 forwards of the same ViT may drift apart in relative norm when
    only the GEMM blocking differs (batch size, BLAS kernel chosen by shape or CPU): each
    block runs 6 GEMMs (q/k/v, scores, attention x values, output projection, MLP up,
    MLP down) with inner dimension <= k_max; first order, one gamma per GEMM on the path
    (LayerNorm renormalizes, so no amplification is assumed across blocks), and either
    side may be off by that much: a factor 2."""
    return 2 * 6 * blocks * gamma(k_max)

def worse(worst, e):
    """The larger error, NaN sticky: max() would drop a NaN (max(0.0, nan) is 0.0)."""
    return worst if np.isnan(worst) else e if (np.isnan(e) or e > worst) else worst

def metrics(run):
    return [json.loads(l) for l in open(run + "/metrics.jsonl")]

def main():
    cmd = sys.argv[1]
    worst = 0.0
    if cmd == "fixture":
        case, run = sys.argv[2], sys.argv[3]
        exp, _ = load(case + "/expected.safetensors")
        got, _ = load(run + "/sae.safetensors")
        m = metrics(run)
        for key, mk in [("step_loss", "loss"), ("step_mse", "mse"), ("step_l0", "l0"), ("step_l1", "l1"),
                        ("step_aux", "aux"), ("step_grad_norm", "grad_norm"), ("step_lr", "lr")]:
            e = rel([r[mk] for r in m], exp[key])
            print(f"  {key:15s} {e:.2e}")
            worst = worse(worst, e)
        for k in ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if "threshold" in exp else []):
            e = rel(got[k], exp[k])
            print(f"  {k:15s} {e:.2e}")
            worst = worse(worst, e)
        tol = 1e-4
    elif cmd == "same":
        a, b, tol = sys.argv[2], sys.argv[3], float(sys.argv[4])
        ga, _ = load(a + "/sae.safetensors")
        gb, _ = load(b + "/sae.safetensors")
        for k in ga:
            e = rel(ga[k], gb[k])
            print(f"  {k:15s} {e:.2e}")
            worst = worse(worst, e)
        ma, mb = metrics(a), metrics(b)
        for key in ["loss", "mse", "l0", "l1", "aux", "grad_norm"]:
            e = rel([r[key] for r in ma], [r[key] for r in mb])
            print(f"  {key:15s} {e:.2e}")
            worst = worse(worst, e)
    elif cmd == "make-data":
        path, n, d, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d) + rng.standard_normal(d)).astype(np.float32)
        if len(sys.argv) > 6 and int(sys.argv[6]) >= 0:
            x[int(sys.argv[6]), 3] = np.nan
        if len(sys.argv) > 7:
            x *= np.float32(sys.argv[7])
        save(path, {"activations": x})
        return 0
    print(f"  worst {worst:.2e} (tolerance {tol:g})")
    return 0 if worst <= tol else 1  # False on NaN

if __name__ == "__main__":
    sys.exit(main())
