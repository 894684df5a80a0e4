# test_slurm.sh: `saev submit` on a real local Slurm 22.05 cluster (tests/slurm_cluster.sh:
# munged, slurmctld and two slurmd fake nodes, started here and stopped by PID).
#   1. a 2-task job on one node runs saev-worker comm-selftest through srun --mpi=pmix
#      (its closed-form checks need both ranks wired into one MPI world);
#   2. a 2-node job (-N 2, one task per node) does the same across nodes;
#   3. a step whose MPI world (1 rank) is not SLURM_NTASKS (2) fails loudly with the
#      worker's message, and the job ends FAILED;
#   4. a sweep of 4 configs with slurm.group_size=2 runs as a 2-task job array: each
#      task's log (%A_%a.out) shows exactly its group's 2 configs, and the 4 together are
#      the 4 configs `saev config` expands the sweep into (the reference);
#   5. `saev status` lists the recorded jobs.
set -euo pipefail
source "$SAEV_ROOT/tests/slurm_cluster.sh"
trap 'exit 143' TERM INT
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP"
mkdir -p "$TMP"
slurm_cluster_start "$TMP/cluster"
SAEV=$SAEV_BIN/saev
WORK=$TMP/work
mkdir -p "$WORK"
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_ok() { # job id, what
    slurm_wait_job "$1" 120 || fail "$2: job $1 did not finish"
    local st
    st=$(slurm_job_state "$1")
    [ "$st" = "COMPLETED 0:0" ] || { cat "$3" >&2 || true; fail "$2: job $1 ended $st"; }
}

# 1. two tasks on one node.
cat >one.yaml <<'YAML'
run:
  name: one
  out_dir: runs
slurm:
  tasks_per_node: 2
  time: "5"
YAML
id=$("$SAEV" submit worker comm-selftest one.yaml)
log=runs/one/slurm/logs/$id.out
wait_ok "$id" "2-task job" "$log"
grep -q "comm-selftest ok: 2 ranks, local rank 0 of 2" "$log" || { cat "$log"; fail "2-task job: no 2-rank self-test line"; }
grep -q -- "--mpi=pmix" runs/one/slurm/one.sbatch || fail "script does not start ranks with srun --mpi=pmix"
echo "ok 1: 2 tasks on one node through srun --mpi=pmix"

# 2. two nodes, one task each (ranks on different nodes: local size 1).
id=$("$SAEV" submit worker comm-selftest one.yaml --nodes 2 --tasks-per-node 1 --job-name two-nodes)
log=runs/one/slurm/logs/$id.out
wait_ok "$id" "2-node job" "$log"
grep -q "comm-selftest ok: 2 ranks, local rank 0 of 1" "$log" || { cat "$log"; fail "2-node job: no 2-rank self-test line"; }
grep -q "on 2 nodes (n\[1-2\])" "$log" || { cat "$log"; fail "2-node job did not span n1 and n2"; }
grep -q "^#SBATCH --nodes=2$" runs/one/slurm/two-nodes.sbatch || fail "2-node script lacks --nodes=2"
echo "ok 2: 2 nodes"

# 3. world-size mismatch: a 1-rank MPI world inside a step Slurm counts as 2 tasks
#    (what happens when ranks are not wired by the job's MPI plugin).
cat >bad.sbatch <<EOS
#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --output=$WORK/bad-%j.out
srun --mpi=pmix -n 1 env SLURM_NTASKS=2 $SAEV_BIN/saev-worker comm-selftest
EOS
id=$(sbatch --parsable bad.sbatch)
slurm_wait_job "$id" 120 || fail "mismatch job did not end"
st=$(slurm_job_state "$id")
[ "${st%% *}" = FAILED ] || { cat "bad-$id.out"; fail "mismatch job ended $st, want FAILED"; }
grep -q "MPI world size 1 differs from SLURM_NTASKS=2" "bad-$id.out" || { cat "bad-$id.out"; fail "mismatch job without the worker's message"; }
echo "ok 3: world-size mismatch fails loudly"

# 4. a sweep of 4 configs in 2 groups as a job array; each task runs `saev config` on
#    its group file, which prints the group's resolved configs.
cat >sweep.yaml <<'YAML'
run:
  name: sweep
  out_dir: runs
slurm:
  group_size: 2
  time: "5"
sweep:
  run.seed: [10, 20]
  run.log_level: [info, debug]
YAML
# (saev submit sets train.resume=true so that a resubmitted job resumes; the reference too)
"$SAEV" config sweep.yaml --set run.ranks=1 --set train.resume=true >reference.txt
id=$("$SAEV" submit config sweep.yaml)
slurm_wait_job "$id" 120 || fail "array job did not end"
for t in 0 1; do
    st=$(slurm_job_state "${id}_$t")
    [ "$st" = "COMPLETED 0:0" ] || { cat runs/sweep/slurm/logs/${id}_$t.out >&2 || true; fail "array task $t ended $st"; }
done
[ -f runs/sweep/slurm/logs/${id}_0.out ] && [ -f runs/sweep/slurm/logs/${id}_1.out ] || fail "no %A_%a logs"
grep -q "^#SBATCH --array=0-1$" runs/sweep/slurm/sweep.sbatch || fail "array script lacks --array=0-1"
# Each task's log holds its two configs; strip the job's banner and the per-file
# headers, then the four in order must equal the reference.
: >got.txt
for t in 0 1; do
    grep -c "^--- # config" runs/sweep/slurm/logs/${id}_$t.out | grep -qx 2 || { cat runs/sweep/slurm/logs/${id}_$t.out; fail "task $t did not run 2 configs"; }
    grep -v "^saev: array\|^--- # config" runs/sweep/slurm/logs/${id}_$t.out >>got.txt
done
grep -v "^--- # config" reference.txt >want.txt
diff want.txt got.txt >&2 || fail "the array's configs differ from the sweep's"
echo "ok 4: sweep of 4 configs as a 2-task job array"

# 5. status lists the array.
"$SAEV" status runs/sweep >status.txt
grep -q "job $id *array" status.txt || { cat status.txt; fail "status does not list the array job"; }
echo "ok 5: status"

# 6. --dry-run: the script's contents, and nothing written; a group size that cuts
#    across a sweep axis is refused before anything is submitted.
"$SAEV" submit config sweep.yaml --set run.name=dry --dry-run --nodes 2 --tasks-per-node 4 --gpus-per-task 1 \
    --cpus-per-task 8 --mem 64G --time 2-00:00:00 --account acct --partition gpu --max-parallel 1 >dry.txt
[ ! -e runs/dry ] || fail "--dry-run wrote runs/dry"
for want in "#SBATCH --nodes=2" "#SBATCH --ntasks-per-node=4" "#SBATCH --gpus-per-task=1" "#SBATCH --cpus-per-task=8" \
    "#SBATCH --mem=64G" "#SBATCH --time=2-00:00:00" "#SBATCH --account=acct" "#SBATCH --partition=gpu" \
    "#SBATCH --array=0-1%1" "#SBATCH --requeue" "#SBATCH --output=$WORK/runs/dry/slurm/logs/%A_%a.out" "#   ranks: 8"; do
    grep -qxF -- "$want" dry.txt || { cat dry.txt; fail "dry run lacks \"$want\""; }
done
if "$SAEV" submit config sweep.yaml --set run.name=bad --group-size 3 --dry-run >bad.txt 2>&1; then fail "group_size 3 of a 2x2 grid accepted"; fi
grep -q "not a grid of their own" bad.txt || { cat bad.txt; fail "group_size 3: unclear message"; }
if "$SAEV" submit config sweep.yaml --time 1:2:3:4 --dry-run >bad.txt 2>&1; then fail "bad --time accepted"; fi
grep -q "slurm: time: \"1:2:3:4\" is not a Slurm time limit" bad.txt || { cat bad.txt; fail "bad --time: message does not name slurm.time"; }
echo "ok 6: --dry-run script contents and refusals"
echo "test_slurm: all ok"
