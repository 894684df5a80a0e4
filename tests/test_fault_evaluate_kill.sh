#!/usr/bin/env bash
# test_fault_evaluate_kill.sh: kill -9 of one rank during `saev evaluate` (2 ranks).
# A top-k SAE (d 64, 2048 latents, random weights written with its config in the
# metadata) is evaluated on 200000 random rows, long enough to be caught mid-pass. Once
# the job has started evaluating, rank 1 (found among this job's own processes by
# OMPI_COMM_WORLD_RANK in its environment) gets SIGKILL. Wanted: the whole job ends with
# a non-zero status within 20 s of the kill (Open MPI takes the job down; the bound
# leaves room for a loaded machine), no eval.json, eval.svg or temporary file is left,
# and no process of the job survives.
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*"; exit 1; }

$PY - "$SAEV_ROOT/tests" <<'PYEOF'
import json, os, sys, numpy as np
sys.path.insert(0, sys.argv[1]); from sae_compare import save
rng = np.random.default_rng(3)
d, S = 64, 2048
cfg = {"d_model": d, "d_sae": S, "activation": "top-k", "k": 16, "k_aux": 0, "data_scale": 1.0}
os.makedirs("run/a", exist_ok=True)
save("run/a/sae.safetensors", {"W_enc": rng.standard_normal((d, S)) / 8, "b_enc": np.zeros(S), "W_dec": rng.standard_normal((S, d)) / 8,
     "b_dec": np.zeros(d)}, {"format": "saev-c sae 1", "saev_sae_config": json.dumps(cfg), "step": "1"})
save("rows.safetensors", {"activations": rng.standard_normal((200000, d))})
PYEOF
cat > e.yaml <<YAML
run: {ranks: 2}
evaluate: {sae: [run], data: rows.safetensors, batch_size: 256}
YAML

"$S" evaluate e.yaml > eval.log 2>&1 &
job=$!
# This job's processes: descendants of the launcher.
descendants() { $PY "$SAEV_ROOT/tests/proc_tree.py" "$1"; }
rank1=""
for _ in $(seq 600); do  # up to 60 s for start-up under load
  if grep -q "evaluate: .*sae.safetensors" eval.log 2>/dev/null; then
    for p in $(descendants $job); do
      if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && grep -q saev-worker /proc/$p/cmdline 2>/dev/null; then rank1=$p; fi
    done
    [ -n "$rank1" ] && break
  fi
  kill -0 $job 2>/dev/null || break
  sleep 0.1
done
[ -n "$rank1" ] || { cat eval.log; fail "rank 1 of the evaluate job was not found running (did it end already?)"; }
procs=$(descendants $job)
t0=$(date +%s.%N)
kill -9 "$rank1"
set +e; wait $job; rc=$?; set -e
t1=$(date +%s.%N)
secs=$($PY -c "print(f'{$t1 - $t0:.1f}')")
echo "evaluate ended with status $rc ${secs}s after kill -9 of rank 1 (pid $rank1)"
tail -5 eval.log
[ "$rc" -ne 0 ] || fail "the job exited 0 after losing a rank"
$PY -c "import sys; sys.exit(0 if $t1 - $t0 < 20 else 1)" || fail "the job took ${secs}s to end, over 20 s"
left=$(ls run/a | grep -v '^sae.safetensors$' || true)
[ -z "$left" ] || fail "files left beside the checkpoint: $left"
sleep 1
for p in $procs; do
  if kill -0 "$p" 2>/dev/null && grep -q "saev" /proc/$p/cmdline 2>/dev/null; then fail "process $p of the job survived"; fi
done
echo "test_fault_evaluate_kill: ok"
