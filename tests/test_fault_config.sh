#!/usr/bin/env bash
# test_fault_config.sh: hostile or broken configs are refused with file:line, status 2,
# in bounded time and memory, and nothing is written (`saev config` and `saev train`):
#  - a YAML alias bomb (9 levels of 9 aliases: 9^9 = 387 million values once expanded,
#    tens of GB if copied); refused at the alias that crosses 100000 values;
#  - a 10 MB scalar; refused as a value over 1 MiB (line of the value);
#  - mappings nested 200 deep, and the same nesting through --set; refused at depth 64;
#  - a key given twice; refused at the second, naming the first's line and column;
#  - a sweep grid of 10^6 configs; refused at the axis that passes 100000.
# Bounds: each run must end within 60 s of wall time and peak below 512 MiB of resident
# memory (measured by /usr/bin/python3's resource.getrusage of the child; the unbounded
# alias expansion would need ~50x that). The expected lines are counted in the files
# written below.
set -euo pipefail
S="$SAEV_BIN/saev"
PY=/usr/bin/python3
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
fail() { echo "FAIL: $*"; exit 1; }

# Runs CMD..., prints "<status> <seconds> <peak KiB>" and saves its stderr in NAME.err.
measure() {
  local name=$1; shift
  $PY - "$name" "$@" <<'PYEOF'
import resource, subprocess, sys, time
name, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
with open(name + ".err", "wb") as err, open(name + ".out", "wb") as out:
    try:
        rc = subprocess.run(cmd, stdout=out, stderr=err, timeout=60).returncode
    except subprocess.TimeoutExpired:
        rc = 124
dt = time.monotonic() - t0
print(rc, f"{dt:.1f}", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PYEOF
}
# expect NAME REGEX CMD...: status 2, message matching REGEX, within the bounds.
expect() {
  local name=$1 re=$2; shift 2
  read -r rc secs kib < <(measure "$name" "$@")
  echo "$name: status $rc, ${secs}s, peak $((kib / 1024)) MiB"
  [ "$rc" = 2 ] || { cat "$name.err" | head -c 2000; fail "$name: status $rc, want 2"; }
  [ "$kib" -lt $((512 * 1024)) ] || fail "$name: peak memory $((kib / 1024)) MiB, over 512 MiB"
  grep -Eq -- "$re" "$name.err" || { head -c 2000 "$name.err"; fail "$name: message does not match /$re/"; }
}

# The alias bomb: a0 is a list of 9 strings, each next level 9 aliases of the previous.
# Line 1 "a0: &a0 [...]", line k+1 defines a<k>. Values counted so far (each alias
# counts itself plus the copy it makes): root 1, a0 10, a1 1+9*11 = 100, a2 910, a3 8200,
# a4 73810, in all 83031; a5's first alias of a4 (line 6) adds 73811 and crosses 100000.
{
  echo 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]'
  for k in 1 2 3 4 5 6 7 8 9; do
    p=$((k - 1)); echo "a$k: &a$k [*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p,*a$p]"
  done
} > bomb.yaml
expect bomb "bomb.yaml:6:[0-9]+: a5\[0\]: alias \*a4 expands the config past 100000 values" "$S" config bomb.yaml

# A 10 MB scalar on line 2.
{ echo "run: {name: big}"; printf 'train: {out_dir: "'; head -c 10000000 /dev/zero | tr '\0' x; echo '"}'; } > big.yaml
expect big "big.yaml:2:[0-9]+: train.out_dir: a value of 10000000 bytes, over the limit of 1048576" "$S" config big.yaml

# 200 levels of flow mappings on line 1: {a: {a: ... }}; level 65 is the first refused.
$PY -c 'print("{a: " * 200 + "1" + "}" * 200)' > deep.yaml
expect deep "deep.yaml:1:[0-9]+: (a\.){63}a: nested more than 64 levels deep" "$S" config deep.yaml
deep_value=$($PY -c 'print("[" * 200 + "1" + "]" * 200)')
: > empty.yaml
expect deep-set "--set train.lr=.*nested more than 64 levels deep" "$S" config empty.yaml --set "train.lr=$deep_value"

# A key given twice: line 4 repeats line 2's key.
cat > dup.yaml <<'YAML'
train:
  lr: 0.001
  steps: 10
  lr: 0.002
YAML
expect dup "dup.yaml:4:3: train.lr: duplicate key \(first given at line 2, column 3\)" "$S" config dup.yaml

# A sweep of 6 axes of 10 values: 10^6 configs. The grid passes 100000 at the sixth axis
# (line 8, column 5: "    f: [...]").
{ echo "train:"; echo "  sweep:"; for k in a b c d e f; do echo "    $k: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"; done; } > sweep.yaml
expect sweep "sweep.yaml:8:5: train.f: the sweep grid exceeds 100000 configs" "$S" config sweep.yaml

# The same files through a command that writes: refused before anything is written.
expect bomb-train "bomb.yaml:6:" "$S" train bomb.yaml --set train.out_dir="$T/never"
[ ! -e "$T/never" ] || fail "a refused config left $T/never behind"
echo "test_fault_config: ok"
