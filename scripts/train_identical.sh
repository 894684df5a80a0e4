#!/usr/bin/env bash
# train_identical.sh BIN_BEFORE BIN_AFTER [WORKDIR]: checks that two builds of saev train
# bit-identically on the CPU: every SAE fixture case on 1 and 2 ranks, and a shuffled
# 6-SAE sweep (2 ranks, data scaling, datapoint init, sampled Matryoshka prefixes, a
# checkpoint mid-run). Compares every sae.safetensors and train_state.safetensors byte for
# byte, the sweep's sae-<hash> folder names, and metrics.jsonl up to the timing fields.
# For refactors of the trainer: build main in a separate folder
#   git archive main | tar -x -C /tmp/saev-main && cmake -S /tmp/saev-main -B /tmp/saev-main/build -DSAEV_CUDA=OFF && cmake --build /tmp/saev-main/build -j2
# then scripts/train_identical.sh /tmp/saev-main/build/bin build/bin
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=$1 B=$2 W=${3:-$(mktemp -d)}
FIX=${SAEV_FIXTURES:-$ROOT/tests/fixtures}
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$W"
eval "$(sed -n '/^case_yaml()/,/^}/p' "$ROOT/tests/test_sae_train.sh")"
# the same data path for both builds: train.data is part of a sweep member's folder hash
[ -f "$W/data.safetensors" ] || $PY "$ROOT/tests/sae_compare.py" make-data "$W/data.safetensors" 700 16 3
cat > "$W/sweep.yaml" <<YAML
run: {ranks: 2}
train:
  data: $W/data.safetensors
  batch_size: 64
  steps: 10
  lr: 0.003
  lr_warmup: 3
  seed: 5
  checkpoint_every: 6
  metrics_every: 1
  sae: {d_sae: 48, k: 4, dead_threshold_tokens: 128, aux: {k_aux: 6}, init: datapoint, scale_data: true, matryoshka: {n_prefixes: 4}}
  sweep: {sae.activation: [batch-top-k, top-k, relu], sae.center_input: [false, true]}
YAML
for side in a b; do
  bin=$A; [ $side = b ] && bin=$B
  rm -rf "$W/$side" && mkdir -p "$W/$side"
  for dir in "$FIX"/sae/*/; do
    name=$(basename "$dir")
    case_yaml "$dir" > "$W/$name.yaml"
    "$bin/saev" train "$W/$name.yaml" --set train.out_dir="$W/$side/$name-1" > "$W/$side/$name-1.log" 2>&1
    "$bin/saev" train "$W/$name.yaml" --ranks 2 --set train.out_dir="$W/$side/$name-2" > "$W/$side/$name-2.log" 2>&1
  done
  "$bin/saev" train "$W/sweep.yaml" --set train.out_dir="$W/$side/sweep" > "$W/$side/sweep.log" 2>&1
done
bad=0 n=0
[ "$(ls "$W/a/sweep")" = "$(ls "$W/b/sweep")" ] || { echo "sweep folders differ: $(ls "$W/a/sweep") vs $(ls "$W/b/sweep")"; bad=1; }
for f in $(cd "$W/a" && find . -name "*.safetensors" | sort); do
  n=$((n + 1))
  cmp -s "$W/a/$f" "$W/b/$f" || { echo "DIFFERS: $f"; bad=1; }
done
for f in $(cd "$W/a" && find . -name metrics.jsonl | sort); do
  diff <(sed 's/, "tokens_per_s.*//' "$W/a/$f") <(sed 's/, "tokens_per_s.*//' "$W/b/$f") > /dev/null || { echo "DIFFERS: $f"; bad=1; }
done
[ $n -gt 0 ] || { echo "no outputs compared"; exit 1; }
[ $bad = 0 ] && echo "train_identical: $n safetensors files bit-identical, metrics equal (timings aside), same sweep folders"
exit $bad
