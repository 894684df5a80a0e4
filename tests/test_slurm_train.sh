# test_slurm_train.sh: training through Slurm (job arrays, cancel + resubmit = resume).
#
# Interface (launcher/cmd_submit.c, common/sae/train.h): `saev submit train CONFIG` runs
# `saev train` in the job; train.data is a safetensors file of `activations` [N,d];
# train.out_dir defaults to <run.out_dir>/<run.name>, sweep members go to
# train.out_dir/sae-<hash> (so the groups of an array never collide); `saev submit` sets
# train.resume=true, so a resubmitted job resumes from train_state.safetensors; per SAE
# the folder holds metrics.jsonl, sae.safetensors (every train.checkpoint_every steps)
# and, once finished, metrics.json (what `saev status` counts).
# Checks:
#   1. a sweep of 4 configs with group_size 2 runs as a 2-task array and `saev status`
#      reports all 4 SAEs finished;
#   2. invariant: a job (20000 steps, several seconds) cancelled (scancel) after its first checkpoint and resubmitted
#      ends with exactly the weights of an uncancelled run of the same config.
set -euo pipefail
source "$SAEV_ROOT/tests/slurm_cluster.sh"
trap 'exit 143' TERM INT
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP"
mkdir -p "$TMP/work"
slurm_cluster_start "$TMP/cluster"
SAEV=$SAEV_BIN/saev
cd "$TMP/work"
fail() { echo "FAIL: $*" >&2; exit 1; }
/usr/bin/python3 - <<'PY'
import json, struct, numpy as np
x = np.random.default_rng(0).standard_normal((4096, 64)).astype(np.float32)
head = json.dumps({"activations": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, x.nbytes]}}).encode()
head += b" " * (-len(head) % 8)
open("acts.safetensors", "wb").write(struct.pack("<Q", len(head)) + head + x.tobytes())
PY
cat >train.yaml <<'YAML'
run:
  name: t
  out_dir: runs
  device: cpu
train:
  data: acts.safetensors
  steps: 4000
  batch_size: 256
  checkpoint_every: 100
  metrics_every: 100
  sae: {d_sae: 1024, k: 8}
slurm:
  tasks_per_node: 1
  time: "10"
YAML

# 1. sweep of 4 in 2 groups.
id=$("$SAEV" submit train train.yaml --set run.name=sweep --set train.steps=200 --set 'train.sweep={lr: [0.001, 0.0003], sae.d_sae: [32, 64]}' --group-size 2)
slurm_wait_job "$id" 300 || fail "array did not finish"
for t in 0 1; do
    st=$(slurm_job_state "${id}_$t")
    [ "$st" = "COMPLETED 0:0" ] || { cat runs/sweep/slurm/logs/${id}_$t.out >&2; fail "array task $t ended $st"; }
done
"$SAEV" status runs/sweep | tee status.txt
grep -q "summary: 4 of 4 SAE output(s) finished, 4 config(s) submitted: complete" status.txt || fail "status does not report 4 finished SAEs"
echo "ok 1: sweep of 4 configs as a 2-task array"

# 2. uninterrupted reference, then cancel after the first checkpoint and resubmit.
ref=$("$SAEV" submit train train.yaml --set run.name=ref)
cut=$("$SAEV" submit train train.yaml --set run.name=cut)
# Cancel once the job has written its first checkpoint (squeue's output is captured, not
# piped into grep -q, whose early exit would SIGPIPE squeue under pipefail).
seen=0
for _ in $(seq 1 600); do
    [ -f runs/cut/sae.safetensors ] && { seen=1; break; }
    [ -n "$(squeue -h -j "$cut" 2>/dev/null)" ] || break
    sleep 0.1
done
[ $seen = 1 ] || fail "job $cut ended before its first checkpoint"
scancel "$cut"
slurm_wait_job "$cut" 60 || fail "cancelled job did not end"
# 4000 steps take ~10 s here and the cancel lands right after the first checkpoint (step
# 100), so the job must really have been cut short.
[ "$(slurm_job_state "$cut" | cut -d' ' -f1)" = CANCELLED ] || fail "job $cut finished before it was cancelled"
slurm_wait_job "$ref" 300 || fail "reference did not finish"
again=$("$SAEV" submit train train.yaml --set run.name=cut)
slurm_wait_job "$again" 300 || fail "resubmitted job did not finish"
[ "$(slurm_job_state "$again")" = "COMPLETED 0:0" ] || fail "resubmitted job failed"
grep -qi "resum" runs/cut/slurm/logs/$again.out || fail "the resubmitted job did not say it resumed"
a=$(find runs/ref -name sae.safetensors | sort | head -n 1)
b=$(find runs/cut -name sae.safetensors | sort | head -n 1)
[ -n "$a" ] && [ -n "$b" ] || fail "no sae.safetensors in runs/ref or runs/cut"
/usr/bin/python3 - "$a" "$b" <<'PY' || fail "resumed weights differ from the uncancelled run's"
import json, struct, sys
def tensors(p):
    raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n])
    return {k: raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)]
PY
echo "ok 2: cancelled + resubmitted = uninterrupted (bit-identical weights)"
