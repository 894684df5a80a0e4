#!/usr/bin/env bash
# test_checkers_nan.sh: the tests' own checkers fail on NaN. Each checker is first shown
# passing on clean input (so that its failure below is the NaN's doing), then fed the same
# input with one NaN and must fail:
#   sae_compare.py fixture / same    (worst error over tensors and steps)
#   store_check.py layout / export   (a store and a saev export against the closed form)
#   activations_check.py forward     (a store row against `saev forward`)
#   store_loader_check.py closed     (the loader's rows against the closed form)
#   bounds.py within                 (test_evaluate_cli's float32 bound check)
# A NaN compares false with everything, so `max(worst, e)`, `err.max() > 0` and
# `if d > worst` all pass it by silently; these checks are why that cannot happen again.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
FIX=${SAEV_FIXTURES:-$ROOT/tests/fixtures}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T" && cd "$T"
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONPATH="$ROOT/tests"

passes() { local name=$1; shift; "$@" > "$name.pass.log" 2>&1 || { echo "  $name: fails on clean input:"; cat "$name.pass.log"; exit 1; }; }
fails() {
  local name=$1; shift
  if "$@" > "$name.nan.log" 2>&1; then echo "  $name: passed with a NaN in its input:"; cat "$name.nan.log"; exit 1; fi
  echo "  $name: fails on NaN, as it must"
}

# poison.py SRC DST NAME INDEX: SRC's tensors with element INDEX of tensor NAME made NaN.
cat > poison.py <<'PYEOF'
import sys, numpy as np
from sae_compare import load, save
src, dst, name, index = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t, _ = load(src)
t = {k: np.array(v, dtype=np.float32) for k, v in t.items()}
t[name].reshape(-1)[index] = np.nan
save(dst, t)
PYEOF

echo "sae_compare.py:"
case="$FIX/sae/relu_l1"
mkdir -p good bad
# A run directory whose weights and per-step metrics are the fixture's own expected values.
$PY - "$case" <<'PYEOF'
import json, sys, numpy as np
from sae_compare import load, save
case = sys.argv[1]
exp, _ = load(case + "/expected.safetensors")
save("good/sae.safetensors", {k: exp[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")})
keys = [("step_loss", "loss"), ("step_mse", "mse"), ("step_l0", "l0"), ("step_l1", "l1"),
        ("step_aux", "aux"), ("step_grad_norm", "grad_norm"), ("step_lr", "lr")]
with open("good/metrics.jsonl", "w") as f:
    for s in range(len(exp["step_loss"])):
        f.write(json.dumps({m: float(exp[k][s]) for k, m in keys}) + "\n")
PYEOF
cp good/metrics.jsonl bad/metrics.jsonl
$PY poison.py good/sae.safetensors bad/sae.safetensors W_dec 5
passes fixture $PY "$ROOT/tests/sae_compare.py" fixture "$case" good
fails fixture $PY "$ROOT/tests/sae_compare.py" fixture "$case" bad
passes same $PY "$ROOT/tests/sae_compare.py" same good good 0
fails same $PY "$ROOT/tests/sae_compare.py" same good bad 1e-4
# A NaN in a per-step metric only (weights clean).
mkdir -p badstep && cp good/sae.safetensors badstep/ && sed '3s/"loss": [^,]*/"loss": NaN/' good/metrics.jsonl > badstep/metrics.jsonl
grep -q NaN badstep/metrics.jsonl
fails fixture-step $PY "$ROOT/tests/sae_compare.py" fixture "$case" badstep

echo "store_check.py:"
N=9 L=2 P=4 D=8 IPF=0 SKIP=0
mpirun -np 1 "$BIN/saev-worker" store-selftest --images $N --layers $L --patches $P --d $D --batch 4 --ipf $IPF --patch-labels --dtype float32 --out store > selftest.log 2>&1 || { cat selftest.log; exit 1; }
cp -r store nanstore
$PY - <<'PYEOF'
import glob, h5py, numpy as np
f = h5py.File(sorted(glob.glob("nanstore/acts-*.h5"))[0], "r+")
a = f["activations"]; v = a[3]; v[1, 2, 5] = np.nan; a[3] = v; f.close()
PYEOF
passes layout $PY "$ROOT/tests/store_check.py" layout store float32 $N $L $P $D $IPF $SKIP
fails layout $PY "$ROOT/tests/store_check.py" layout nanstore float32 $N $L $P $D $IPF $SKIP
"$BIN/saev" export-saev store saev/shards --max-tokens-per-shard 40 > export.log 2>&1 || { cat export.log; exit 1; }
X=$(echo saev/shards/*/)  # export-saev names the directory by saev's metadata hash
passes export $PY "$ROOT/tests/store_check.py" export store "$X" 40
# NaN at the first value the byte-offset check reads (image 0, layer 0, token 0, dim 0).
$PY -c "import numpy as np; m = np.memmap('$X/acts000000.bin', dtype=np.float32, mode='r+'); m[0] = np.nan; m.flush()"
fails export $PY "$ROOT/tests/store_check.py" export store "$X" 40

echo "activations_check.py:"
$PY - <<'PYEOF'
import glob, h5py, numpy as np
from sae_compare import save
a = h5py.File(sorted(glob.glob("store/acts-*.h5"))[0], "r")["activations"][2, 0]  # image 2, layer 0: [T, D]
save("y.safetensors", {"layers": a[None, None].astype(np.float32)})
a = a.astype(np.float32).copy(); a[0, 0] = np.nan
save("ynan.safetensors", {"layers": a[None, None]})
PYEOF
passes forward $PY "$ROOT/tests/activations_check.py" forward store 2 y.safetensors
fails forward $PY "$ROOT/tests/activations_check.py" forward store 2 ynan.safetensors

echo "store_loader_check.py:"
# A dump of the store's rows in store order, as `saev-worker data-dump` writes it (1 rank,
# layer position 0, tokens 0..T-1).
$PY - $N $L $P $D <<'PYEOF'
import sys, numpy as np
from sae_compare import save
n, L, P, D = map(int, sys.argv[1:])
T = P + 1
ids = np.arange(n * T)
img, t = ids // T, ids % T
k = np.arange(D)
rows = ((((131 * img[:, None] + 7 * t[:, None] + 3 * k[None, :]) % 1001) - 500) / 64.0).astype(np.float32)
def dump(path, r):
    save(path, {"ids": ids.reshape(1, -1).astype(np.int64), "rows": r.reshape(1, -1, D)}, exact=True)
dump("clean.rank0.safetensors", rows)
rows[7, 3] = np.nan
dump("nan.rank0.safetensors", rows)
PYEOF
passes closed $PY "$ROOT/tests/store_loader_check.py" closed clean 1 $N 0 0 0 $((P + 1)) ordered
fails closed $PY "$ROOT/tests/store_loader_check.py" closed nan 1 $N 0 0 0 $((P + 1)) ordered

echo "bounds.py (test_evaluate_cli):"
# test_evaluate_cli.sh writes bounds.py and st.py into its own folder; take them from there
# by running its heredocs' definitions: the check is `within`.
sed -n "/^cat > st.py <<'PYEOF'$/,/^PYEOF$/p" "$ROOT/tests/test_evaluate_cli.sh" | sed '1d;$d' > st.py
sed -n "/^cat > bounds.py <<'PYEOF'$/,/^PYEOF$/p" "$ROOT/tests/test_evaluate_cli.sh" | sed '1d;$d' > bounds.py
[ -s st.py ] && [ -s bounds.py ] || { echo "  could not extract st.py / bounds.py from test_evaluate_cli.sh"; exit 1; }
passes within $PY -c "import sys; sys.path.insert(0, '.'); import bounds, numpy as np; sys.exit(0 if bounds.within([1.0, 2.0], [1.0, 2.0 + 1e-9], 1e-8) else 1)"
fails within $PY -c "import sys; sys.path.insert(0, '.'); import bounds, numpy as np; sys.exit(0 if bounds.within([1.0, float('nan')], [1.0, 2.0], 1e-8) else 1)"
fails within-bound $PY -c "import sys; sys.path.insert(0, '.'); import bounds, numpy as np; sys.exit(0 if bounds.within([1.0, 2.0], [1.0, 2.0], float('nan')) else 1)"
echo "every checker fails on NaN"
