#!/usr/bin/env bash
# test_sae_train.sh: `saev train CONFIG.yaml [--set ...] [--ranks N]` end to end, on 1 and 2 ranks.
#  1. every fixture case through `saev train` (a YAML file per case: sae.init = the case's
#     init file, data = its batches with shuffle: false, the case's hyperparameters):
#     per-step loss terms and final weights within 1e-4 of saev's PyTorch reference
#     (fixtures/sae/*/expected.safetensors);
#  2. the same cases on 2 ranks (same global batch) agree with 1 rank within the bound
#     that the other summation order allows (derived below, about 1e-4)
#     (invariant: only the float summation order differs);
#  3. a run killed after its step-6 checkpoint and resumed (shuffled data, sampled
#     Matryoshka prefixes, a 2x2 train.sweep trained together) ends bit for bit equal to an
#     uninterrupted run (invariant), every SAE with config.resolved.yaml and metrics.json;
#  4. NaN in the data and an infinite loss stop the run naming the step (and the SAE),
#     and the last good checkpoint stays;
#  5. config errors (unknown key, a sweep whose configs disagree on the batch stream, no
#     train.data) exit 2 naming the file and key before anything is written;
#  6. the device layer: unusable run.device / train.precision combinations exit 2 naming
#     them; `--device cuda` either says why it cannot (no CUDA in this build, no GPU) or,
#     on a GPU, trains a fixture case within 1e-4 of saev's reference like the CPU;
#  7. metrics lines carry the loader's rate (loader_tokens_per_s), and a loader slowed to
#     200 ms a batch (SAEV_TRAIN_LOADER_DELAY_MS, a slow disk) is reported as the
#     bottleneck, with a rate no higher than batch_size / 0.2 s.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
FIX=${SAEV_FIXTURES:-$ROOT/tests/fixtures}
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP" && mkdir -p "$TMP"
PY=/usr/bin/python3
CMP="$PY $ROOT/tests/sae_compare.py"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
SAEV="$BIN/saev"

case_yaml() { # the fixture's hyperparameters as a config file
  $PY - "$1" <<'PYEOF'
import json, sys
d = sys.argv[1].rstrip("/"); c = json.load(open(d + "/case.json")); a = c["activation"]
sae = {"d_sae": c["d_sae"], "activation": a["kind"], "dead_threshold_tokens": c["dead_threshold_tokens"],
       "init": d + "/init.safetensors"}
for k in ("l1_coeff", "k", "momentum"):
    if k in a: sae[k] = a[k]
sae["aux"] = {"k_aux": a["k_aux"], "alpha": a["aux_alpha"]} if "k_aux" in a else "none"
if len(c["matryoshka_prefixes"]) > 1: sae["matryoshka"] = {"prefixes": c["matryoshka_prefixes"]}
train = {"data": d + "/batches.safetensors", "shuffle": False, "batch_size": c["batch_size"], "steps": c["n_steps"],
         "lr": c["lr"], "lr_schedule": c["lr_schedule"], "lr_warmup": c["lr_warmup"], "grad_clip": c["grad_clip"],
         "metrics_every": 1, "sae": sae}
print(json.dumps({"train": train}, indent=1).replace('"none"', "none"))  # JSON is YAML; none unquoted
PYEOF
}

fail=0
for dir in "$FIX"/sae/*/; do
  name=$(basename "$dir")
  case_yaml "$dir" > "$TMP/$name.yaml"
  "$SAEV" train "$TMP/$name.yaml" --set train.out_dir="$TMP/$name-1" > "$TMP/$name-1.log" 2>&1 || { cat "$TMP/$name-1.log"; exit 1; }
  echo "fixture $name, 1 rank, against saev's reference:"
  $CMP fixture "$dir" "$TMP/$name-1" || fail=1
  "$SAEV" train "$TMP/$name.yaml" --ranks 2 --set train.out_dir="$TMP/$name-2" > "$TMP/$name-2.log" 2>&1 || { cat "$TMP/$name-2.log"; exit 1; }
  # 2 ranks sum each gradient over the batch in another order: per step, either side's
  # update is off by at most gamma_S (the d_sae-term products of the forward and
  # backward) plus gamma_B (the batch sum), relative; Adam's m / sqrt(v) at most doubles
  # a relative error, and the steps add (first order): steps * 2 * 2 * (gamma_S + gamma_B).
  tol=$(PYTHONPATH="$ROOT/tests" $PY -c "import json, sae_compare as c; k = json.load(open('$dir/case.json')); print('%.3g' % (k['n_steps'] * 4 * (c.gamma(k['d_sae']) + c.gamma(k['batch_size']))))")
  echo "fixture $name, 2 ranks vs 1 rank (bound $tol):"
  $CMP same "$TMP/$name-2" "$TMP/$name-1" "$tol" || fail=1
done
for f in config.resolved.yaml metrics.json; do
  [ -s "$TMP/$name-1/$f" ] || { echo "no $f beside the outputs"; fail=1; }
done
grep -q "ranks: 2" "$TMP/$name-2/config.resolved.yaml" || { echo "config.resolved.yaml does not hold the resolved run.ranks"; fail=1; }

# Resume: shuffled, sampled prefixes, a sweep of four SAEs (batch-top-k / top-k x centred input or not).
$CMP make-data "$TMP/data.safetensors" 700 16 3
cat > "$TMP/sweep.yaml" <<YAML
run:
  ranks: 2
train:
  data: $TMP/data.safetensors
  batch_size: 64
  steps: 10
  lr: 0.003
  lr_schedule: warmup-cosine
  lr_warmup: 3
  shuffle: true
  seed: 5
  checkpoint_every: 6
  metrics_every: 1
  sae: {d_sae: 48, k: 4, dead_threshold_tokens: 128, aux: {k_aux: 6}, init: datapoint, scale_data: true,
        matryoshka: {n_prefixes: 4}}
  sweep: {sae.activation: [batch-top-k, top-k], sae.center_input: [false, true]}
YAML
"$SAEV" train "$TMP/sweep.yaml" --set train.out_dir="$TMP/full" > "$TMP/full.log" 2>&1 || { cat "$TMP/full.log"; exit 1; }
members=$(cd "$TMP/full" && ls -d sae-*)
[ "$(echo $members | wc -w)" = 4 ] || { echo "sweep: expected 4 SAE folders, got: $members"; exit 1; }
if SAEV_TRAIN_KILL_AFTER_STEPS=8 "$SAEV" train "$TMP/sweep.yaml" --set train.out_dir="$TMP/killed" > "$TMP/killed.log" 2>&1; then
  echo "the killed run did not die"; exit 1
fi
first=$(echo $members | cut -d' ' -f1)
grep -q '"step": 6' "$TMP/killed/$first/metrics.jsonl"
[ ! -e "$TMP/killed/$first/metrics.json" ] || { echo "killed run: metrics.json written for an unfinished SAE"; fail=1; }
"$SAEV" train "$TMP/sweep.yaml" --set train.out_dir="$TMP/killed" --set train.resume=true > "$TMP/resume.log" 2>&1 || { cat "$TMP/resume.log"; exit 1; }
grep -q "resuming at step 6" "$TMP/resume.log" || { echo "resume: no 'resuming at step 6'"; fail=1; }
for m in $members; do
  for f in sae.safetensors train_state.safetensors; do
    if cmp -s "$TMP/full/$m/$f" "$TMP/killed/$m/$f"; then echo "resume: $m $f bit-identical"; else echo "resume: $m $f DIFFERS"; fail=1; fi
  done
  if [ "$(wc -l < "$TMP/killed/$m/metrics.jsonl")" != 10 ]; then echo "resume: metrics lines not 10"; fail=1; fi
  for f in config.resolved.yaml metrics.json; do [ -s "$TMP/killed/$m/$f" ] || { echo "resume: $m has no $f"; fail=1; }; done
done
grep -q '"finished": true, "steps": 10, "tokens": 640' "$TMP/killed/$first/metrics.json" || { echo "metrics.json: wrong summary"; cat "$TMP/killed/$first/metrics.json"; fail=1; }

# NaN in the data at row 200 = batch 3 (shuffle off, batch 64): the run stops at step 3.
$CMP make-data "$TMP/nan.safetensors" 700 16 4 200
cat > "$TMP/nan.yaml" <<YAML
train: {data: $TMP/nan.safetensors, out_dir: $TMP/nan, shuffle: false, batch_size: 64, steps: 8, checkpoint_every: 2,
        sae: {d_sae: 32, k: 4}}
YAML
if "$SAEV" train "$TMP/nan.yaml" --ranks 2 > "$TMP/nan.log" 2>&1; then
  echo "NaN data: the run succeeded"; fail=1
fi
grep -q "step 3: NaN or Inf in the training data" "$TMP/nan.log" || { echo "NaN data: no message naming step 3"; cat "$TMP/nan.log"; fail=1; }
$PY -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; m=json.loads(f.read(n))['__metadata__']; sys.exit(0 if m['step']=='2' else 1)" "$TMP/nan/sae.safetensors" \
  || { echo "NaN data: the step-2 checkpoint did not stay"; fail=1; }
# Finite data whose squares overflow float32 (x·1e25): the loss is Inf; the run stops naming step and SAE.
$CMP make-data "$TMP/huge.safetensors" 700 16 4 -1 1e25
if "$SAEV" train "$TMP/nan.yaml" --set train.data="$TMP/huge.safetensors" --set train.out_dir="$TMP/diverge" \
     --set train.shuffle=true --set train.sae.activation=relu > "$TMP/diverge.log" 2>&1; then
  echo "diverging run succeeded"; fail=1
fi
grep -Eq "step [0-9]+: SAE 0 .*not finite" "$TMP/diverge.log" || { echo "diverge: no message naming step and SAE"; cat "$TMP/diverge.log"; fail=1; }
grep -h "not finite\|NaN or Inf" "$TMP/diverge.log" "$TMP/nan.log" | head -2

# Config errors: status 2, file:line:col and the key, nothing written.
expect_usage() { # NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  set +e; "$SAEV" train "$@" > "$TMP/$name.log" 2>&1; local rc=$?; set -e
  [ $rc = 2 ] || { echo "$name: exit $rc, expected 2"; cat "$TMP/$name.log"; fail=1; }
  grep -Eq -e "$pat" "$TMP/$name.log" || { echo "$name: message does not match '$pat'"; cat "$TMP/$name.log"; fail=1; }
}
{ cat "$TMP/sweep.yaml"; echo "  bogus: 1"; } > "$TMP/unknown.yaml"
expect_usage unknown-key "unknown.yaml:17:3: train.bogus: unknown key" "$TMP/unknown.yaml" --set train.out_dir="$TMP/bad1"
expect_usage unknown-set "--set train.sae.kk=3: train.sae.kk: unknown key" "$TMP/sweep.yaml" --set train.out_dir="$TMP/bad1" --set train.sae.kk=3
printf 'train:\n  data: %s\n  steps: 3\n  sweep: {batch_size: [32, 64]}\n' "$TMP/data.safetensors" > "$TMP/badsweep.yaml"
expect_usage sweep-batch "badsweep.yaml: sweep config 2: train.batch_size differs" "$TMP/badsweep.yaml" --set train.out_dir="$TMP/bad2"
printf 'train:\n  steps: 3\n' > "$TMP/nodata.yaml"
expect_usage no-data "nodata.yaml: train.data is required" "$TMP/nodata.yaml" --set train.out_dir="$TMP/bad3"
expect_usage bf16 "sweep.yaml: precision bf16 is not implemented.*train.precision bf16" "$TMP/sweep.yaml" --set train.out_dir="$TMP/bad4" --set train.precision=bf16
expect_usage tf32-cpu "sweep.yaml: precision tf32 needs device cuda" "$TMP/sweep.yaml" --set train.out_dir="$TMP/bad4" --set train.precision=tf32 --device cpu
printf 'train:\n  data: %s\n  steps: 3\n  sweep: {precision: [fp32, tf32]}\n' "$TMP/data.safetensors" > "$TMP/badprec.yaml"
expect_usage sweep-precision "badprec.yaml: sweep config 2: train.precision differs" "$TMP/badprec.yaml" --set train.out_dir="$TMP/bad4"
for d in bad1 bad2 bad3 bad4; do [ ! -e "$TMP/$d" ] || { echo "$d: a failed config wrote $TMP/$d"; fail=1; }; done

# --device cuda: a usage error saying why where it cannot run, else (a GPU) the fixture's numbers.
set +e; "$SAEV" train "$TMP/$name.yaml" --device cuda --set train.out_dir="$TMP/$name-cuda" > "$TMP/$name-cuda.log" 2>&1; rc=$?; set -e
if [ $rc = 2 ] && grep -Eq "train: device cuda: (this saev-c was built without CUDA|no usable GPU)" "$TMP/$name-cuda.log"; then
  echo "$(grep -Eo 'device cuda: [^(;]*' "$TMP/$name-cuda.log" | head -1)(GPU training check skipped)"
  [ ! -e "$TMP/$name-cuda" ] || { echo "device cuda: the refused run wrote $TMP/$name-cuda"; fail=1; }
elif [ $rc = 0 ]; then
  grep -q "device cuda" "$TMP/$name-cuda.log" || { echo "device cuda: the log does not say it trained on cuda"; fail=1; }
  echo "fixture $name on cuda, against saev's reference:"
  $CMP fixture "$FIX/sae/$name" "$TMP/$name-cuda" || fail=1
else
  echo "device cuda: exit $rc"; cat "$TMP/$name-cuda.log"; fail=1
fi

# The loader's rate beside the step rate; a slow loader is named as the bottleneck.
$PY - "$TMP/$name-1/metrics.jsonl" <<'PYEOF' || { echo "metrics.jsonl: no positive loader_tokens_per_s on every line"; fail=1; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if lines and all(l["loader_tokens_per_s"] > 0 and l["tokens_per_s"] > 0 for l in lines) else 1)
PYEOF
SAEV_TRAIN_LOADER_DELAY_MS=200 "$SAEV" train "$TMP/nan.yaml" --set train.data="$TMP/data.safetensors" --set train.out_dir="$TMP/slow" \
  --set train.steps=3 --set train.metrics_every=1 > "$TMP/slow.log" 2>&1 || { cat "$TMP/slow.log"; exit 1; }
grep -q "the data loader takes .* of the step time .*bound by reading" "$TMP/slow.log" || { echo "slow loader: no bottleneck warning"; cat "$TMP/slow.log"; fail=1; }
$PY - "$TMP/slow/metrics.jsonl" <<'PYEOF' || { echo "slow loader: loader_tokens_per_s above 64 rows / 0.2 s"; cat "$TMP/slow/metrics.jsonl"; fail=1; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if len(lines) == 3 and all(0 < l["loader_tokens_per_s"] <= 64 / 0.2 for l in lines) else 1)
PYEOF
grep -h "data loader takes" "$TMP/slow.log"

[ $fail = 0 ] && echo "test_sae_train: all passed"
exit $fail
