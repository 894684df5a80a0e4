#!/usr/bin/env bash
# test_evaluate_cli.sh: `saev evaluate` end to end.
#  1. Two trained checkpoints built from saev's reference weights after 6 training steps
#     (fixtures/sae/{topk_auxk,batchtopk}/expected.safetensors, with the SAE config in the
#     metadata; the batch-top-k one with data_scale 0.5) in one run directory, evaluated
#     on the fixtures' 192 activation rows: every metric, frequency and mean value agrees
#     with an independent float64 numpy evaluation (rel. 1e-5; counts exactly);
#  2. evaluated twice: byte-identical eval.json and eval.svg;
#  3. 2 ranks vs 1 rank: the float64 sums within 1e-9 relative, counts and histograms equal;
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
$PY - <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, "."); import st
x = st.read("rows.safetensors")[0]["activations"].astype(np.float64)
bad = 0
for m in "ab":
    w, meta = st.read(f"run/{m}/sae.safetensors"); cfg = json.loads(meta["saev_sae_config"])
    xs = x * cfg["data_scale"]
    h = xs @ w["W_enc"].astype(np.float64) + w["b_enc"]
    if cfg["activation"] == "top-k":   # the k largest per row, kept even when negative
        f = np.zeros_like(h); idx = np.argsort(-h, axis=1)[:, :cfg["k"]]
        np.put_along_axis(f, idx, np.take_along_axis(h, idx, 1), 1)
    else:                              # batch-top-k at evaluation: JumpReLU with the learned threshold
        f = np.where(h > float(w["threshold"][0]), h, 0.0)
    xh = f @ w["W_dec"].astype(np.float64) + w["b_dec"]
    N, d = xs.shape; fire = f != 0; n_fired = fire.sum(0)
    sse = ((xs - xh) ** 2).sum(); sst = ((xs - xs.mean(0)) ** 2).sum()
    freqs = n_fired / N
    with np.errstate(invalid="ignore"): means = f.sum(0) / n_fired
    ref = {"l0": fire.sum(1).mean(), "l1": np.abs(f).sum(1).mean(), "mse": sse / (N * d), "nmse": sse / sst,
           "explained_variance": 1 - sse / sst, "nmse_uncentered": sse / (xs ** 2).sum(),
           "mse_data_units": sse / (N * d) / cfg["data_scale"] ** 2}
    got = json.load(open(f"run/{m}/eval.json"))
    for k, v in ref.items():
        err = abs(got[k] - v) / abs(v)
        ok = err < 1e-5; bad |= not ok
        print(f"  {m} {cfg['activation']:12s} {k:20s} {got[k]:.8g} vs {v:.8g} (rel {err:.1e}) {'ok' if ok else 'FAIL'}")
    counts = {"n_tokens": N, "n_dead": int((n_fired == 0).sum()), "n_almost_dead": int((freqs < 1e-7).sum()), "n_dense": int((freqs > 1e-2).sum())}
    for k, v in counts.items():
        ok = got[k] == v; bad |= not ok
        print(f"  {m} {k} {got[k]} vs {v} {'ok' if ok else 'FAIL'}")
    gf = np.array(got["freqs"]); gm = np.array([np.nan if v is None else v for v in got["mean_values"]])
    ok = np.array_equal(gf, freqs) and np.array_equal(np.isnan(gm), np.isnan(means)) and \
         np.allclose(gm[~np.isnan(gm)], means[~np.isnan(means)], rtol=1e-5, atol=1e-6)
    bad |= not ok
    print(f"  {m} per-latent frequencies (exact) and mean values (1e-5) {'ok' if ok else 'FAIL'}")
    fh = np.histogram(np.clip(np.log10(freqs + 1e-9), -9, 0), bins=got["freq_hist"]["counts"].__len__(), range=(-9, 0))[0]
    ok = fh.tolist() == got["freq_hist"]["counts"] and sum(got["mean_value_hist"]["counts"]) == int((n_fired > 0).sum())
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
$PY - <<'PYEOF'
import json, sys
bad = 0
for i, m in enumerate("ab"):
    one, two = json.load(open(f"run/{m}/eval.json")), json.load(open(f"r2/{i}/eval.json"))
    assert two["checkpoint"].endswith(f"run/{m}/sae.safetensors"), two["checkpoint"]
    for k, v in one["sums"].items():
        err = abs(two["sums"][k] - v) / abs(v)
        ok = err <= 1e-9; bad |= not ok
        print(f"  {m} sum {k:14s} rel {err:.1e} {'ok' if ok else 'FAIL'}")
    for k in ("n_tokens", "n_dead", "n_almost_dead", "n_dense", "freqs", "freq_hist"):
        ok = one[k] == two[k]; bad |= not ok
        print(f"  {m} {k} equal {'ok' if ok else 'FAIL'}")
    ok = all((a is None and b is None) or abs(a - b) <= 1e-9 * abs(a) for a, b in zip(one["mean_values"], two["mean_values"]))
    bad |= not ok
    print(f"  {m} mean values within 1e-9 {'ok' if ok else 'FAIL'}")
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
echo "all evaluate checks passed"
