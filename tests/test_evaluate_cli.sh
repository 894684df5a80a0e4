#!/usr/bin/env bash
# test_evaluate_cli.sh: `saev evaluate` end to end.
#  1. Two trained checkpoints built from saev's reference weights after 6 training steps
#     (fixtures/sae/{topk_auxk,batchtopk}/expected.safetensors, with the SAE config in the
#     metadata; the batch-top-k one with data_scale 0.5) in one run directory, evaluated
#     on the fixtures' 192 activation rows: every sum, metric, frequency and mean value
#     agrees with an independent float64 numpy evaluation within the bound that float32
#     encoding and decoding allow (bounds.py below); counts exactly;
#  2. evaluated twice: byte-identical eval.json and eval.svg;
#  3. 2 ranks vs 1 rank (other batches, other order): sums within twice that bound,
#     counts and histograms equal;
#  4. eval.svg parses as XML (xml.etree) with an <svg> root, two panels of bars;
#  5. bad input (missing checkpoint, empty run directory, d_model 16 vs data width 8,
#     NaN in the data, first_row past the end) exits non-zero with a message naming the
#     input and writes nothing.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
FIX=${SAEV_FIXTURES:-$ROOT/tests/fixtures}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T" && cd "$T"
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
S="$BIN/saev"

cat > st.py <<'PYEOF'
# Minimal safetensors reader/writer (F32 only) for this test.
import json, struct, numpy as np
def read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; assert v["dtype"] == "F32"
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"]).copy()
    return out, h.get("__metadata__", {})
def write(path, tensors, meta=None):
    h, blobs, off = {}, [], 0
    for k, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4"); h[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes()); off += a.nbytes
    if meta: h["__metadata__"] = meta
    hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
PYEOF

# 1. Checkpoints from the fixtures' trained weights, and the held-out rows.
$PY - "$FIX/sae" <<'PYEOF'
import json, os, sys, numpy as np
sys.path.insert(0, "."); import st
fix = sys.argv[1]
for name, sub, scale in (("topk_auxk", "run/a", 1.0), ("batchtopk", "run/b", 0.5)):
    case = json.load(open(f"{fix}/{name}/case.json")); a = case["activation"]
    w, _ = st.read(f"{fix}/{name}/expected.safetensors")
    cfg = {"d_model": case["d_model"], "d_sae": case["d_sae"], "activation": a["kind"], "k": a["k"], "l1_coeff": 0,
           "momentum": a.get("momentum", 0.1), "k_aux": a["k_aux"], "aux_alpha": a["aux_alpha"], "matryoshka_prefixes": [case["d_sae"]],
           "sample_prefixes": False, "n_prefixes": 1, "dead_threshold_tokens": case["dead_threshold_tokens"],
           "normalize_w_dec": True, "remove_parallel_grads": True, "center_input": False, "data_scale": scale}
    t = {k: w[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if a["kind"] == "batch-top-k": t["threshold"] = w["threshold"].reshape(1)
    os.makedirs(sub, exist_ok=True)
    st.write(f"{sub}/sae.safetensors", t, {"format": "saev-c sae 1", "saev_sae_config": json.dumps(cfg), "step": "6"})
x, _ = st.read(f"{fix}/topk_auxk/batches.safetensors")
st.write("rows.safetensors", {"activations": x["activations"]})
bad = x["activations"][:, :8].copy(); st.write("narrow.safetensors", {"activations": bad})
nan = x["activations"].copy(); nan[100, 3] = np.nan; st.write("nan.safetensors", {"activations": nan})
PYEOF

cat > e.yaml <<YAML
evaluate: {sae: [run], data: rows.safetensors, batch_size: 50, hist_bins: 20}
YAML
"$S" evaluate e.yaml > run1.log 2>&1 || { cat run1.log; exit 1; }
for m in a b; do
  for f in json svg; do [ -s run/$m/eval.$f ] || { echo "run/$m/eval.$f missing"; cat run1.log; exit 1; }; done
done

echo "1. metrics against an independent float64 evaluation:"
# Tolerances come from the float32 arithmetic (bounds.py, below): the program encodes and
# decodes in float32, so each sum may sit as far from the float64 reference as the
# standard dot-product bound allows (Higham, Accuracy and Stability of Numerical
# Algorithms, 3.5: |fl(x.y) - x.y| <= gamma_n |x|.|y|, gamma_n = n u / (1 - n u),
# u = 2^-24), propagated to each metric to first order. Counts are exact.
cat > bounds.py <<'PYEOF'
# Float64 reference evaluation of one checkpoint, and how far a float32 evaluation of the
# same rows may sit from it: for each float64 sum of eval.json, the bound B below.
import json, numpy as np, st
U32, U64 = 2.0 ** -24, 2.0 ** -53
def gamma(n, u): return n * u / (1 - n * u)
def reference(x, path):
    w, meta = st.read(path); cfg = json.loads(meta["saev_sae_config"])
    W_enc, b_enc, W_dec, b_dec = (w[k].astype(np.float64) for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    xs = x * cfg["data_scale"]
    h = xs @ W_enc + b_enc
    if cfg["activation"] == "top-k":   # the k largest per row, kept even when negative
        f = np.zeros_like(h); idx = np.argsort(-h, axis=1)[:, :cfg["k"]]
        np.put_along_axis(f, idx, np.take_along_axis(h, idx, 1), 1)
    else:                              # batch-top-k at evaluation: JumpReLU with the learned threshold
        f = np.where(h > float(w["threshold"][0]), h, 0.0)
    xh = f @ W_dec + b_dec
    N, d = xs.shape; S = f.shape[1]; fire = f != 0
    r = xs - xh
    # Encoder: scaling (one rounding) and a d-term dot product plus bias, in float32.
    E = gamma(d + 2, U32) * (np.abs(xs) @ np.abs(W_enc) + np.abs(b_enc))           # [N,S] |f32 h - h|
    E = np.where(fire, E, 0.0)
    # Decoder: at most S products plus the bias (dense GEMM or the sparse path), on
    # codes already off by E.
    D = gamma(S + 1, U32) * (np.abs(f) @ np.abs(W_dec) + np.abs(b_dec)) + E @ np.abs(W_dec)  # [N,d]
    sums = {"sq_err": (r ** 2).sum(), "x_sq": (xs ** 2).sum(), "x_centered_sq": ((xs - xs.mean(0)) ** 2).sum(),
            "l0": float(fire.sum()), "l1": np.abs(f).sum()}
    n_sum = N * d  # float64 additions behind each sum, in an order the program chooses
    B = {"sq_err": (2 * np.abs(r) * D + D ** 2).sum() + gamma(n_sum, U64) * sums["sq_err"],
         "x_sq": gamma(n_sum, U64) * sums["x_sq"],
         # Q - |S|^2/N: both parts carry float64 order error on sums of |x|^2.
         "x_centered_sq": 3 * gamma(n_sum, U64) * sums["x_sq"],
         "l0": 0.0,
         "l1": E.sum() + gamma(N * S, U64) * sums["l1"]}
    fired = fire.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = f.sum(0) / fired
        means_B = (E.sum(0) + gamma(N, U64) * np.abs(f).sum(0)) / fired
    return dict(cfg=cfg, N=N, d=d, f=f, fired=fired, sums=sums, B=B, means=means, means_B=means_B)
def metrics(ref):
    """The derived metrics and their first-order bounds from the sums' bounds."""
    s, B, N, d = ref["sums"], ref["B"], ref["N"], ref["d"]
    sse, sst, xsq = s["sq_err"], s["x_centered_sq"], s["x_sq"]
    nmse_B = B["sq_err"] / sst + sse * B["x_centered_sq"] / sst ** 2
    return {"l0": (s["l0"] / N, 0.0), "l1": (s["l1"] / N, B["l1"] / N),
            "mse": (sse / (N * d), B["sq_err"] / (N * d)),
            "nmse": (sse / sst, nmse_B), "explained_variance": (1 - sse / sst, nmse_B),
            "nmse_uncentered": (sse / xsq, B["sq_err"] / xsq + sse * B["x_sq"] / xsq ** 2),
            "mse_data_units": (sse / (N * d) / ref["cfg"]["data_scale"] ** 2, B["sq_err"] / (N * d) / ref["cfg"]["data_scale"] ** 2)}
def within(got, want, bound):
    """|got - want| <= bound; False on NaN anywhere."""
    return bool(np.all(np.abs(np.asarray(got, np.float64) - want) <= bound))
PYEOF
$PY - <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, "."); import st, bounds
x = st.read("rows.safetensors")[0]["activations"].astype(np.float64)
bad = 0
for m in "ab":
    ref = bounds.reference(x, f"run/{m}/sae.safetensors"); cfg = ref["cfg"]
    got = json.load(open(f"run/{m}/eval.json"))
    for k, v in ref["sums"].items():
        ok = bounds.within(got["sums"][k], v, ref["B"][k]); bad |= not ok
        print(f"  {m} {cfg['activation']:12s} sum {k:14s} {got['sums'][k]:.10g} vs {v:.10g} (bound {ref['B'][k]:.1e}) {'ok' if ok else 'FAIL'}")
    for k, (v, b) in bounds.metrics(ref).items():
        ok = bounds.within(got[k], v, b); bad |= not ok
        print(f"  {m} {cfg['activation']:12s} {k:20s} {got[k]:.8g} vs {v:.8g} (bound {b:.1e}) {'ok' if ok else 'FAIL'}")
    N, fired = ref["N"], ref["fired"]; freqs = fired / N
    counts = {"n_tokens": N, "n_dead": int((fired == 0).sum()), "n_almost_dead": int((freqs < 1e-7).sum()), "n_dense": int((freqs > 1e-2).sum())}
    for k, v in counts.items():
        ok = got[k] == v; bad |= not ok
        print(f"  {m} {k} {got[k]} vs {v} {'ok' if ok else 'FAIL'}")
    gf = np.array(got["freqs"]); gm = np.array([np.nan if v is None else v for v in got["mean_values"]])
    live = fired > 0
    ok = np.array_equal(gf, freqs) and np.array_equal(np.isnan(gm), ~live) and bounds.within(gm[live], ref["means"][live], ref["means_B"][live])
    bad |= not ok
    print(f"  {m} per-latent frequencies (exact) and mean values (float32 bound) {'ok' if ok else 'FAIL'}")
    fh = np.histogram(np.clip(np.log10(freqs + 1e-9), -9, 0), bins=got["freq_hist"]["counts"].__len__(), range=(-9, 0))[0]
    ok = fh.tolist() == got["freq_hist"]["counts"] and sum(got["mean_value_hist"]["counts"]) == int(live.sum())
    bad |= not ok
    print(f"  {m} frequency histogram {'ok' if ok else 'FAIL'} {got['freq_hist']['counts']}")
    assert got["n_dead"] < got["d_sae"]
sys.exit(1 if bad else 0)
PYEOF

echo "2. evaluated twice: identical outputs"
mkdir -p first && cp run/a/eval.json first/a.json && cp run/b/eval.json first/b.json && cp run/a/eval.svg first/a.svg
"$S" evaluate e.yaml > run2.log 2>&1 || { cat run2.log; exit 1; }
cmp first/a.json run/a/eval.json && cmp first/b.json run/b/eval.json && cmp first/a.svg run/a/eval.svg
echo "  identical"

echo "3. 2 ranks vs 1 rank:"
"$S" evaluate e.yaml --ranks 2 --set evaluate.out=r2 --set evaluate.batch_size=7 > r2.log 2>&1 || { cat r2.log; exit 1; }
# Other batches (7 rows per rank instead of 50) and another summation order: each run sits
# within the float32 bound B of the float64 reference (part 1), so the two within 2B.
$PY - <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, "."); import st, bounds
x = st.read("rows.safetensors")[0]["activations"].astype(np.float64)
bad = 0
for i, m in enumerate("ab"):
    one, two = json.load(open(f"run/{m}/eval.json")), json.load(open(f"r2/{i}/eval.json"))
    assert two["checkpoint"].endswith(f"run/{m}/sae.safetensors"), two["checkpoint"]
    ref = bounds.reference(x, f"run/{m}/sae.safetensors")
    for k, v in one["sums"].items():
        ok = bounds.within(two["sums"][k], v, 2 * ref["B"][k]); bad |= not ok
        print(f"  {m} sum {k:14s} diff {abs(two['sums'][k] - v):.1e} (bound {2 * ref['B'][k]:.1e}) {'ok' if ok else 'FAIL'}")
    for k in ("n_tokens", "n_dead", "n_almost_dead", "n_dense", "freqs", "freq_hist"):
        ok = one[k] == two[k]; bad |= not ok
        print(f"  {m} {k} equal {'ok' if ok else 'FAIL'}")
    live = ref["fired"] > 0
    a = np.array([np.nan if v is None else v for v in one["mean_values"]]); b = np.array([np.nan if v is None else v for v in two["mean_values"]])
    ok = np.array_equal(np.isnan(a), ~live) and np.array_equal(np.isnan(b), ~live) and bounds.within(b[live], a[live], 2 * ref["means_B"][live])
    bad |= not ok
    print(f"  {m} mean values within the float32 bound {'ok' if ok else 'FAIL'}")
sys.exit(1 if bad else 0)
PYEOF

echo "4. the SVG is XML with two histogram panels:"
$PY - <<'PYEOF'
import xml.etree.ElementTree as ET
for p in ("run/a/eval.svg", "run/b/eval.svg", "r2/0/eval.svg"):
    root = ET.parse(p).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text or "" for t in root.iter(ns + "text")]
    assert any("Firing frequency" in t for t in texts) and any("Mean value when firing" in t for t in texts), texts
    assert sum(1 for _ in root.iter(ns + "rect")) > 2
    print(f"  {p} ok")
PYEOF

echo "5. bad input:"
expect_fail() { # NAME WANT_MESSAGE ARGS... : exits non-zero, names the input, writes nothing
  local name=$1 want=$2; shift 2
  rm -rf out_bad
  if "$S" evaluate "$@" --set evaluate.out=out_bad > "$name.log" 2>&1; then echo "  $name: succeeded"; exit 1; fi
  grep -qF -- "$want" "$name.log" || { echo "  $name: message lacks \"$want\":"; cat "$name.log"; exit 1; }
  [ ! -e out_bad ] || { echo "  $name: wrote out_bad"; exit 1; }
  echo "  $name: $(grep -m1 -F -- "$want" "$name.log")"
}
mkdir -p emptyrun
expect_fail missing "nope/sae.safetensors" --set 'evaluate.sae=[nope/sae.safetensors]' --set evaluate.data=rows.safetensors
expect_fail emptydir "emptyrun: no sae.safetensors" --set 'evaluate.sae=[emptyrun]' --set evaluate.data=rows.safetensors
expect_fail nodata "evaluate.data: absent.safetensors: not found" --set 'evaluate.sae=[run]' --set evaluate.data=absent.safetensors
expect_fail width "run/a/sae.safetensors has d_model 16 but the rows of narrow.safetensors have width 8" --set 'evaluate.sae=[run]' --set evaluate.data=narrow.safetensors
expect_fail notckpt "rows.safetensors: not an SAE checkpoint" --set 'evaluate.sae=[rows.safetensors]' --set evaluate.data=rows.safetensors
expect_fail past "evaluate.first_row: 500 is past the end of rows.safetensors (192 rows)" --set 'evaluate.sae=[run]' --set evaluate.data=rows.safetensors --set evaluate.first_row=500
expect_fail nan "nan.safetensors: row 100 holds NaN or Inf" --set 'evaluate.sae=[run]' --set evaluate.data=nan.safetensors --ranks 2
# The worker alone (no launcher checks first) refuses the same way.
rm -rf out_bad
if mpirun -np 2 "$BIN/saev-worker" evaluate --set 'evaluate.sae=[nope.safetensors]' --set evaluate.data=rows.safetensors --set evaluate.out=out_bad > worker.log 2>&1; then
  echo "  worker: succeeded"; exit 1
fi
grep -q "nope.safetensors: no such checkpoint" worker.log && [ ! -e out_bad ] || { cat worker.log; exit 1; }
echo "  worker: $(grep -m1 "no such checkpoint" worker.log)"

echo "6. a run directory with a link back up (looprun/x/back -> ..) is walked once, not forever:"
mkdir -p looprun/x && cp run/a/sae.safetensors looprun/x/ && ln -sfn .. looprun/x/back
timeout 120 "$S" evaluate --set 'evaluate.sae=[looprun]' --set evaluate.data=rows.safetensors > loop.log 2>&1 || { cat loop.log; echo "  loop: failed"; exit 1; }
grep -q "looprun/x/back: skipped, a link back to a folder above it" loop.log && [ -s looprun/x/eval.json ] || { cat loop.log; echo "  loop: no warning or no eval.json"; exit 1; }
grep -q "evaluate: 1 SAE(s) on rows" loop.log || { cat loop.log; echo "  loop: the checkpoint was found more than once"; exit 1; }
echo "  loop: $(grep -m1 "skipped, a link back" loop.log)"
echo "all evaluate checks passed"
