#!/usr/bin/env bash
# test_submit.sh: how `saev submit` shapes a job, checked on --dry-run scripts (no Slurm
# cluster needed; test_slurm.sh runs real jobs).
#   1. run.ranks without a slurm: section decides the task count (2 ranks -> 2 tasks on
#      one node; over 2 nodes -> 1 task each), and the job's command carries run.ranks;
#   2. run.ranks and slurm.nodes x slurm.tasks_per_node both given and different is
#      refused (status 2) naming both keys, and so is run.ranks that does not divide
#      over the nodes; both given and equal is fine;
#   3. flag values take their type from the slurm: schema: a string key keeps a value
#      YAML would read as a number ("--time 90", "--job-name 007", "--mem 64G"), an
#      integer key stays an integer (a non-number is refused naming slurm.nodes);
#   4. a dry run writes nothing.
set -euo pipefail
S="$SAEV_BIN/saev"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
has() { grep -qxF -- "$2" "$1" || { cat "$1" >&2; fail "$3: the script lacks \"$2\""; }; }
refused() { # file, message substring, what
    [ "$rc" = 2 ] || { cat "$1" >&2; fail "$3: exit status $rc, 2 expected"; }
    grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$3: message lacks \"$2\""; }
}

cat >ranks2.yaml <<'YAML'
run:
  name: r2
  out_dir: runs
  ranks: 2
YAML

# 1. run.ranks decides the shape when slurm: does not.
"$S" submit worker comm-selftest ranks2.yaml --dry-run >one.txt
has one.txt "#SBATCH --nodes=1" "run.ranks 2"
has one.txt "#SBATCH --ntasks-per-node=2" "run.ranks 2"
"$S" submit worker comm-selftest ranks2.yaml --nodes 2 --dry-run >two.txt
has two.txt "#SBATCH --nodes=2" "run.ranks 2 over 2 nodes"
has two.txt "#SBATCH --ntasks-per-node=1" "run.ranks 2 over 2 nodes"
"$S" submit worker comm-selftest --ranks 4 --dry-run --set run.out_dir=runs >flag.txt
has flag.txt "#SBATCH --ntasks-per-node=4" "--ranks 4"
"$S" submit config ranks2.yaml --dry-run >cmd.txt
grep -qF "run.ranks=2" cmd.txt || { cat cmd.txt >&2; fail "the job's command does not carry run.ranks=2"; }
echo "ok 1: run.ranks decides the task count without slurm.tasks_per_node"

# 2. conflicts are refused naming both keys.
set +e
"$S" submit worker comm-selftest ranks2.yaml --tasks-per-node 4 --dry-run >c1.txt 2>&1; rc=$?
set -e
refused c1.txt "run.ranks=2 conflicts with slurm.nodes x slurm.tasks_per_node = 1 x 4" "run.ranks 2 vs 4 tasks"
set +e
"$S" submit worker comm-selftest ranks2.yaml --nodes 3 --dry-run >c2.txt 2>&1; rc=$?
set -e
refused c2.txt "run.ranks=2 does not spread evenly over slurm.nodes=3" "run.ranks 2 over 3 nodes"
"$S" submit worker comm-selftest ranks2.yaml --tasks-per-node 2 --dry-run >same.txt
has same.txt "#SBATCH --ntasks-per-node=2" "run.ranks 2 and 2 tasks"
echo "ok 2: conflicting rank counts refused naming run.ranks and slurm.tasks_per_node"

# 3. flag types from the schema.
"$S" submit worker comm-selftest ranks2.yaml --time 90 --job-name 007 --mem 64G --dry-run >types.txt
has types.txt "#SBATCH --time=90" "--time 90"
has types.txt "#SBATCH --job-name=007" "--job-name 007"
has types.txt "#SBATCH --mem=64G" "--mem 64G"
set +e
"$S" submit worker comm-selftest ranks2.yaml --nodes two --dry-run >c3.txt 2>&1; rc=$?
set -e
refused c3.txt "slurm.nodes" "--nodes two"
echo "ok 3: flag values typed by the slurm: schema"

# 4. nothing written.
[ ! -e runs ] || { find runs >&2; fail "a dry run wrote runs/"; }
echo "ok 4: dry runs write nothing"
echo "test_submit: all ok"
