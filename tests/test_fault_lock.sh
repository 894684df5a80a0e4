#!/usr/bin/env bash
# test_fault_lock.sh: two runs on one output. For `saev activations` (2 ranks) and then
# `saev train` (2 ranks) on a store:
#  1. run A starts; once it holds the output lock (dir/.saev.lock names its host and pid)
#     its rank 0 is paused (SIGSTOP), so A is certainly still running;
#  2. run B on the same output is refused: non-zero status, a message naming the output
#     and the holder "host <this host> pid <A's rank-0 pid>", and that pid is alive;
#  3. A is killed with kill -9 (every process of the job), leaving its lock file behind;
#  4. run C on the same output (resume) is not blocked by the stale lock and completes:
#     the store equals an undisturbed run's byte for byte (tests/activations_check.py
#     same), and training ends with a checkpoint.
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
CHK="$SAEV_ROOT/tests/activations_check.py"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*"; exit 1; }
host=$(hostname)

"$S" demo-data data --per-class 4 --seg-images 0 >/dev/null
"$S" make-model --family clip --preset tiny --seed 1 --out model >/dev/null
cat > a.yaml <<YAML
run: {ranks: 2}
data: {kind: folder, root: data/fashion}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-2]}
activations: {out: store, batch_size: 2}
train:
  data: ref
  layer: -2
  batch_size: 16
  steps: 3000
  lr: 0.001
  checkpoint_every: 500
  sae: {d_sae: 64, k: 4}
YAML
"$S" activations a.yaml --set activations.out=ref > ref.log 2>&1 || { cat ref.log; fail "reference run"; }

descendants() { $PY "$SAEV_ROOT/tests/proc_tree.py" "$1"; }

# lock_case NAME OUTDIR WHAT ARGS...: steps 1-3 for `saev WHAT ARGS` writing into OUTDIR.
lock_case() {
  local name=$1 out=$2 what=$3; shift 3
  "$S" "$what" "$@" > "$name-A.log" 2>&1 &
  local job=$! holder=""
  for _ in $(seq 1200); do  # up to 60 s for start-up under load
    holder=$(cat "$out/.saev.lock" 2>/dev/null || true)
    [[ "$holder" == *"pid "* ]] && break
    kill -0 $job 2>/dev/null || break
    sleep 0.05
  done
  [[ "$holder" == "host $host pid "*": saev $what" ]] || { cat "$name-A.log"; fail "$name: lock file holds '$holder'"; }
  local pid=${holder#*pid }; pid=${pid%%:*}
  kill -STOP "$pid" || fail "$name: the lock holder $pid is not running"
  set +e; timeout 120 "$S" "$what" "$@" > "$name-B.log" 2>&1; local rc=$?; set -e
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat "$name-B.log"; fail "$name: the second run gave status $rc"; }
  grep -qF "$out is in use by another run (host $host pid $pid: saev $what)" "$name-B.log" \
    || { cat "$name-B.log"; fail "$name: the refusal does not name the holder host $host pid $pid"; }
  kill -0 "$pid" || fail "$name: the named holder is not alive"
  echo "$name: second run refused, naming host $host pid $pid"
  local procs; procs="$(descendants $job) $job"
  kill -9 $procs 2>/dev/null || true
  set +e; wait $job; set -e
  [ -s "$out/.saev.lock" ] || fail "$name: the killed run left no lock file (the stale case is not tested)"
}

lock_case acts store activations a.yaml
"$S" activations a.yaml --set activations.resume=true > acts-C.log 2>&1 || { cat acts-C.log; fail "rerun after a killed run was blocked"; }
$PY "$CHK" same ref store

lock_case train runs/t train a.yaml --set train.out_dir=runs/t
"$S" train a.yaml --set train.out_dir=runs/t --set train.resume=true --set train.steps=600 > train-C.log 2>&1 \
  || { cat train-C.log; fail "train rerun after a killed run was blocked"; }
[ -s runs/t/sae.safetensors ] || fail "train rerun wrote no checkpoint"
echo "test_fault_lock: ok"
