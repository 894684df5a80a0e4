#!/usr/bin/env bash
# test_install.sh: saev runs, and finds its worker and its data files (the Slurm
# templates), from each of the three places a user may have it:
#  1. the build in the source tree (ctest's own build);
#  2. an out-of-tree build (cmake -S <source> -B <elsewhere>; CUDA off to keep it short);
#  3. an installed prefix (cmake --install BUILD --prefix P): P/bin/saev, P/bin/saev-worker,
#     P/share/saev-c/slurm/*.sbatch. The installed templates are the ones used: a marker line
#     added to the installed copy shows up in the generated script.
# In each place: `saev submit ... --dry-run` writes the batch script (the templates were
# found), and `saev train` on a small data file runs saev-worker under mpirun (the worker
# was found beside saev) and writes its checkpoint.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
BUILD=${SAEV_BUILD:-$(dirname "$BIN")}
T=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$T" && mkdir -p "$T" && cd "$T"
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset SAEV_SLURM_TEMPLATES SAEV_SHARE_DIR

$PY "$ROOT/tests/sae_compare.py" make-data rows.safetensors 256 16 7
cat > t.yaml <<YAML
run: {name: inst, ranks: 1}
train: {data: rows.safetensors, batch_size: 64, steps: 3, sae: {d_sae: 32, k: 4}}
YAML

check() { # NAME SAEV: templates found (dry run) and the worker runs (a tiny training)
  local name=$1 saev=$2
  "$saev" submit train t.yaml --dry-run > "$name.sbatch" 2> "$name.err" || { cat "$name.err"; echo "FAIL: $name: submit --dry-run"; exit 1; }
  grep -q "^#SBATCH" "$name.sbatch" || { cat "$name.sbatch"; echo "FAIL: $name: no batch script"; exit 1; }
  "$saev" train t.yaml --set train.out_dir="out-$name" > "$name.train.log" 2>&1 || { cat "$name.train.log"; echo "FAIL: $name: train"; exit 1; }
  [ -s "out-$name/sae.safetensors" ] || [ -n "$(find "out-$name" -name sae.safetensors)" ] || { echo "FAIL: $name: no checkpoint"; exit 1; }
  echo "  $name: templates found, worker ran"
}

echo "1. in-tree build ($BIN):"
check intree "$BIN/saev"

echo "2. out-of-tree build:"
cmake -S "$ROOT" -B "$T/oot" -DSAEV_CUDA=OFF > oot.configure.log 2>&1 || { cat oot.configure.log; exit 1; }
cmake --build "$T/oot" -j "$(nproc)" --target saev saev-worker > oot.build.log 2>&1 || { tail -30 oot.build.log; exit 1; }
check outoftree "$T/oot/bin/saev"
# Same templates, same config: the same script as the in-tree build's (but for the paths
# of the programs, which differ by design).
diff <(grep -v "$T/oot\|$BIN" outoftree.sbatch) <(grep -v "$T/oot\|$BIN" intree.sbatch) > /dev/null \
  || { diff outoftree.sbatch intree.sbatch; echo "FAIL: out-of-tree script differs"; exit 1; }

echo "3. installed prefix:"
cmake --install "$BUILD" --prefix "$T/prefix" > install.log 2>&1 || { cat install.log; exit 1; }
for f in bin/saev bin/saev-worker share/saev-c/slurm/single.sbatch share/saev-c/slurm/array.sbatch; do
  [ -e "$T/prefix/$f" ] || { ls -R "$T/prefix"; echo "FAIL: $f not installed"; exit 1; }
done
echo "# saev-c installed-template marker" >> "$T/prefix/share/saev-c/slurm/single.sbatch"
check installed "$T/prefix/bin/saev"
grep -q "installed-template marker" installed.sbatch || { echo "FAIL: the installed saev did not use the installed templates"; exit 1; }
echo "  installed: the installed templates are the ones used"
echo "test_install: ok"
