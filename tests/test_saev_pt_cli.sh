#!/usr/bin/env bash
# test_saev_pt_cli.sh: saev's sae.pt files through the command line (files written by torch
# as saev's dump does, both eras: tests/saev_pt_write.py).
#  1. `saev evaluate` opens each sae.pt directly (and finds sae.pt in a run directory):
#     L0 equals the float64 numpy codes' count exactly, L1 agrees within the summed
#     float32 rounding bound of the codes (saev_pt_write.py);
#  2. `saev import-sae` writes a safetensors checkpoint whose eval.json is identical to
#     the sae.pt's (every field but the checkpoint's name);
#     `saev inspect` describes a sae.pt (era, activation, sizes, centring, threshold);
#     with --scale-mean/--scale-norm (the preprint's (x - mean) / scalar, torch.save'd as
#     saev's files), evaluate on raw rows matches the numpy codes of the scaled rows; a
#     sae.pt given as a mean, a zero scalar, or two scales at once are refused;
#  3. bad input: each malformed file, a missing file and missing arguments exit 2 with a
#     message naming the file and leave no output behind; a run directory holding a sae.pt
#     beside its imported copy is refused (both would write the same eval.json).
# Skipped (77) without /usr/bin/python3 + torch (python3-torch).
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T" && cd "$T"
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
S="$BIN/saev"
$PY -c "import torch" 2>/dev/null || { echo "SKIP: /usr/bin/python3 cannot import torch (python3-torch)"; exit 77; }
$PY "$ROOT/tests/saev_pt_write.py" gen

CASES="preprint_relu current_relu current_topk current_batchtopk current_batchtopk_untrained current_matryoshka_topk"
for c in $CASES; do
  $PY - "$ROOT/tests" gen/$c.ref.safetensors $c.rows.safetensors <<'PYEOF'
import sys; sys.path.insert(0, sys.argv[1]); import sae_compare as sc
t, _ = sc.load(sys.argv[2]); sc.save(sys.argv[3], {"activations": t["x"]})
PYEOF
  mkdir -p run/$c
  cp gen/$c.pt run/$c/sae.pt
  "$S" import-sae gen/$c.pt --out imported/$c/sae.safetensors > import.log 2>&1 || { cat import.log; exit 1; }
  printf 'evaluate: {sae: [run/%s], data: %s.rows.safetensors, batch_size: 16}\n' $c $c > pt.yaml
  printf 'evaluate: {sae: [imported/%s/sae.safetensors], data: %s.rows.safetensors, batch_size: 16}\n' $c $c > st.yaml
  "$S" evaluate pt.yaml > ev.log 2>&1 || { cat ev.log; exit 1; }
  "$S" evaluate st.yaml > ev.log 2>&1 || { cat ev.log; exit 1; }
done

echo "1-2. evaluate on sae.pt: L0/L1 against numpy; the imported copy's eval.json identical:"
$PY - "$ROOT/tests" $CASES <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, sys.argv[1]); import sae_compare as sc
bad = 0
for c in sys.argv[2:]:
    t, _ = sc.load(f"gen/{c}.ref.safetensors")
    f, tol = t["f_ref"], t["tol"]
    B = f.shape[0]
    a = json.load(open(f"run/{c}/eval.json")); b = json.load(open(f"imported/{c}/eval.json"))
    a.pop("checkpoint"); b.pop("checkpoint")
    l0 = (f != 0).sum() / B
    l1 = np.abs(f).sum() / B
    l1_tol = tol.sum() / B + 1e-12 * l1  # per-code bound summed; float64 sums in evaluate
    ok = a == b and a["l0"] == l0 and abs(a["l1"] - l1) <= l1_tol
    print(f"  {c:30s} l0 {a['l0']:g} (numpy {l0:g})  l1 {a['l1']:.9g} (numpy {l1:.9g}, bound {l1_tol:.2g})  eval.json same: {a == b}")
    bad += not ok
sys.exit(1 if bad else 0)
PYEOF

echo "import-sae --scale-mean --scale-norm (the preprint's scaling) then evaluate on raw rows:"
for c in preprint_relu_scaled current_topk_scaled; do
  $PY - "$ROOT/tests" gen/$c.ref.safetensors $c.rows.safetensors <<'PYEOF'
import sys; sys.path.insert(0, sys.argv[1]); import sae_compare as sc
t, _ = sc.load(sys.argv[2]); sc.save(sys.argv[3], {"activations": t["x"]})
PYEOF
  "$S" import-sae gen/$c.pt --out scaled/$c/sae.safetensors --scale-mean gen/$c.mean.pt --scale-norm gen/$c.scalar.pt > import.log 2>&1 || { cat import.log; exit 1; }
  grep -q "mean folded into the biases" import.log || { cat import.log; exit 1; }
  printf 'evaluate: {sae: [scaled/%s/sae.safetensors], data: %s.rows.safetensors, batch_size: 16}\n' $c $c > sc.yaml
  "$S" evaluate sc.yaml > ev.log 2>&1 || { cat ev.log; exit 1; }
done
$PY - "$ROOT/tests" preprint_relu_scaled current_topk_scaled <<'PYEOF'
import json, sys, numpy as np
sys.path.insert(0, sys.argv[1]); import sae_compare as sc
for c in sys.argv[2:]:
    t, _ = sc.load(f"gen/{c}.ref.safetensors")
    f, tol = t["f_ref"], t["tol"]
    a = json.load(open(f"scaled/{c}/eval.json"))
    l0, l1 = (f != 0).sum() / f.shape[0], np.abs(f).sum() / f.shape[0]
    l1_tol = tol.sum() / f.shape[0] + 1e-12 * l1
    print(f"  {c:30s} l0 {a['l0']:g} (numpy {l0:g})  l1 {a['l1']:.9g} (numpy {l1:.9g}, bound {l1_tol:.2g})")
    if not (a["l0"] == l0 and abs(a["l1"] - l1) <= l1_tol):
        sys.exit(1)
PYEOF
expect_fail0() { # phrase, command...
  local phrase=$1; shift
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ $rc -eq 2 ] && grep -qF -- "$phrase" <<<"$out" || { echo "FAIL: rc $rc: $out"; exit 1; }
  echo "  refused: $out" | head -1
}
expect_fail0 "gen/current_topk.pt: a saev sae.pt (JSON header line), not a torch.save'd tensor" \
  "$S" import-sae gen/current_topk.pt --out out/x.safetensors --scale-mean gen/current_topk.pt
expect_fail0 "gen/current_topk_scaled.mean.pt holds 24 values, not one scalar" "$S" import-sae gen/current_topk.pt --out out/x.safetensors --scale-mean gen/current_topk_scaled.mean.pt --scale-norm gen/current_topk_scaled.mean.pt
expect_fail0 "must be positive" "$S" import-sae gen/current_topk.pt --out out/x.safetensors --scale-norm 0
expect_fail0 "not both" "$S" import-sae gen/preprint_relu_scaled.pt --out out/x.safetensors --scale-norm 2 --data-scale 0.5

echo "inspect names the era and what it read:"
"$S" inspect gen/preprint_relu.pt | grep -F "saev preprint format (schema 0): relu, d_model 24, 96 latents, encoder input x - b_dec" \
  || { echo "FAIL: inspect of the preprint sae.pt"; exit 1; }
"$S" inspect gen/current_batchtopk.pt | grep -F "saev current format (schema 5): batch-top-k, d_model 24, 96 latents, k 6, threshold 0.75, encoder input x" \
  || { echo "FAIL: inspect of the current sae.pt"; exit 1; }

echo "3. bad input:"
expect_fail() { # name, expected phrase, command...
  local name=$1 phrase=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  if [ $rc -ne 2 ] || ! grep -qF -- "$phrase" <<<"$out"; then echo "  $name: rc $rc, output: $out"; exit 1; fi
  echo "  $name: exit 2, \"$phrase\""
}
for b in bad_truncated bad_noheader bad_schema bad_shape bad_compressed bad_global; do
  expect_fail "import-sae $b" "gen/$b.pt" "$S" import-sae gen/$b.pt --out out/$b.safetensors
  printf 'evaluate: {sae: [gen/%s.pt], data: current_topk.rows.safetensors}\n' $b > bad.yaml
  expect_fail "evaluate $b" "gen/$b.pt" "$S" evaluate bad.yaml
done
expect_fail "import-sae missing file" "gen/none.pt" "$S" import-sae gen/none.pt --out out/none.safetensors
expect_fail "import-sae without --out" "usage" "$S" import-sae gen/current_topk.pt
if [ -e out ] && [ -n "$(ls -A out)" ]; then echo "  refused imports left files: $(ls out)"; exit 1; fi
cp imported/current_topk/sae.safetensors run/current_topk/
printf 'evaluate: {sae: [run/current_topk], data: current_topk.rows.safetensors}\n' > dup.yaml
expect_fail "sae.pt beside its import" "would both write" "$S" evaluate dup.yaml
echo "ok"
