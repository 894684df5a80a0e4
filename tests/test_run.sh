#!/usr/bin/env bash
# `saev run`: one config through activations, train, evaluate and visuals (tiny CLIP on a
# small demo set): every stage's outputs appear, evaluate and visuals default to the
# training outputs (visuals to the training store), a second run resumes (the store: 0 to
# do; every SAE at its last step, its checkpoint and metrics unchanged; the visuals' pass
# reused), and a config error stops before any stage with
# status 2 and nothing written.
set -euo pipefail
S="$SAEV_BIN/saev"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"
"$S" demo-data data --per-class 2 --seg-images 0 >/dev/null
"$S" make-model --family clip --preset tiny --seed 3 --out model >/dev/null
cat > run.yaml <<YAML
run: {name: r, out_dir: runs, ranks: 2}
data: {kind: folder, root: data/fashion}
preprocess: {size: 32, crop: 32}
model: {path: model, layers: [-1]}
activations: {out: store, batch_size: 4}
train:
  data: store
  batch_size: 64
  steps: 12
  lr_warmup: 2
  sae: {d_sae: 96, k: 4}
  sweep: {lr: [0.001, 0.003]}
evaluate: {data: store}
visuals: {top_k: 3, n_render: 4, log_freq_range: [-3, 0], log_value_range: [-3, 2]}
YAML
# A config error: exit 2, nothing written.
set +e
"$S" run run.yaml --set train.sae.kk=3 > err.txt 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || { cat err.txt; echo "FAIL: config error gave $rc"; exit 1; }
grep -q "train.sae.kk: unknown key" err.txt
[ ! -e store ] && [ ! -e runs ] || { echo "FAIL: a failed config wrote outputs"; exit 1; }

"$S" run run.yaml > log1.txt 2>&1 || { cat log1.txt; exit 1; }
grep -q "activation store store complete" log1.txt
n_sae=$(find runs/r -name sae.safetensors | wc -l)
n_eval=$(find runs/r -name eval.json | wc -l)
n_vis=$(find runs/r -path '*/visuals/index.json' | wc -l)
n_png=$(find runs/r -path '*/visuals/latents/*' -name '*_heat.png' | wc -l)
[ "$n_sae" = 2 ] && [ "$n_eval" = 2 ] && [ "$n_vis" = 2 ] && [ "$n_png" -gt 0 ] \
  || { cat log1.txt; echo "FAIL: $n_sae checkpoints, $n_eval evaluations, $n_vis visuals, $n_png heatmaps (want 2, 2, 2, > 0)"; exit 1; }
# Again: the store is complete (0 to do) and training resumes at its end: both SAEs say
# so, neither starts over, and checkpoints and metrics are left as the first run wrote them.
for f in $(find runs/r -name sae.safetensors -o -name metrics.jsonl | sort); do sha256sum "$f"; done > before.sha
"$S" run run.yaml --set train.resume=true > log2.txt 2>&1 || { cat log2.txt; exit 1; }
grep -q "(0 to do)" log2.txt || { cat log2.txt; echo "FAIL: the second run redid activations"; exit 1; }
n_resumed=$(grep -c "resuming at step 12" log2.txt || true)
[ "$n_resumed" = 2 ] || { cat log2.txt; echo "FAIL: $n_resumed of 2 SAEs resumed at step 12"; exit 1; }
if grep -q "starting from step 0" log2.txt; then cat log2.txt; echo "FAIL: training started over"; exit 1; fi
for f in $(find runs/r -name sae.safetensors -o -name metrics.jsonl | sort); do sha256sum "$f"; done > after.sha
cmp before.sha after.sha || { diff before.sha after.sha; echo "FAIL: the resumed run changed the finished checkpoints or metrics"; exit 1; }
grep -q "visuals: .*reusing" log2.txt || { cat log2.txt; echo "FAIL: the second run did not reuse the visuals' pass"; exit 1; }
echo "test_run: ok"
