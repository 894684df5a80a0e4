#!/usr/bin/env bash
# test_sae_train.sh: the train stage end to end, on 1 and 2 ranks.
#  1. every fixture case through `saev-worker train` (init = the case's init file, data =
#     its batches in order): per-step loss terms and final weights within 1e-4 of saev's
#     PyTorch reference (fixtures/sae/*/expected.safetensors);
#  2. the same cases on 2 ranks (mpirun -np 2, same global batch) agree with 1 rank within 1e-5;
#  3. a run killed after its step-6 checkpoint and resumed (shuffled data, sampled
#     Matryoshka prefixes, a 2-SAE sweep) ends bit for bit equal to an uninterrupted run;
#  4. NaN in the data and an infinite loss stop the run naming the step (and the SAE),
#     and the last good checkpoint stays.
set -euo pipefail
ROOT=${SAEV_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${SAEV_BIN:-$ROOT/build/bin}
FIX=${SAEV_FIXTURES:-$ROOT/../shared/fixtures}
TMP=${SAEV_TEST_TMP:-$(mktemp -d)}
rm -rf "$TMP" && mkdir -p "$TMP"
PY=/usr/bin/python3
CMP="$PY $ROOT/tests/sae_compare.py"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W="$BIN/saev-worker"

case_args() { # the fixture's hyperparameters as train keys
  $PY - "$1" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1] + "/case.json")); a = c["activation"]
args = [f"data={sys.argv[1]}/batches.safetensors", f"sae.init={sys.argv[1]}/init.safetensors", "shuffle=false",
        f"batch_size={c['batch_size']}", f"steps={c['n_steps']}", f"lr={c['lr']}", f"lr_schedule={c['lr_schedule']}",
        f"lr_warmup={c['lr_warmup']}", f"grad_clip={c['grad_clip']}", f"sae.d_sae={c['d_sae']}",
        f"sae.activation={a['kind']}", f"sae.dead_threshold_tokens={c['dead_threshold_tokens']}", "metrics_every=1"]
if "l1_coeff" in a: args.append(f"sae.l1_coeff={a['l1_coeff']}")
if "k" in a: args.append(f"sae.k={a['k']}")
if "momentum" in a: args.append(f"sae.momentum={a['momentum']}")
if "k_aux" in a: args += [f"sae.aux.k_aux={a['k_aux']}", f"sae.aux.alpha={a['aux_alpha']}"]
else: args.append("sae.aux=none")
p = c["matryoshka_prefixes"]
if len(p) > 1: args.append("sae.matryoshka.prefixes=[" + ",".join(map(str, p)) + "]")
print(" ".join(args))
PYEOF
}

fail=0
for dir in "$FIX"/sae/*/; do
  name=$(basename "$dir")
  args=$(case_args "$dir")
  $W train $args out_dir="$TMP/$name-1" > "$TMP/$name-1.log" 2>&1 || { cat "$TMP/$name-1.log"; exit 1; }
  echo "fixture $name, 1 rank, against saev's reference:"
  $CMP fixture "$dir" "$TMP/$name-1" || fail=1
  mpirun -np 2 $W train $args out_dir="$TMP/$name-2" > "$TMP/$name-2.log" 2>&1 || { cat "$TMP/$name-2.log"; exit 1; }
  echo "fixture $name, 2 ranks vs 1 rank:"
  $CMP same "$TMP/$name-2" "$TMP/$name-1" 1e-5 || fail=1
done

# Resume: shuffled, sampled prefixes, a sweep of two SAEs (batch-top-k and top-k+Matryoshka).
$CMP make-data "$TMP/data.safetensors" 700 16 3
common="data=$TMP/data.safetensors batch_size=64 steps=10 lr=0.003 lr_schedule=warmup-cosine lr_warmup=3 shuffle=true seed=5 checkpoint_every=6 metrics_every=1 sae.d_sae=48 sae.k=4 sae.dead_threshold_tokens=128 sae.aux.k_aux=6 sae.init=datapoint sae.scale_data=true"
members="--member sae.activation=batch-top-k --member sae.activation=top-k sae.matryoshka.n_prefixes=4 sae.center_input=true"
mpirun -np 2 $W train $common out_dir="$TMP/full" $members > "$TMP/full.log" 2>&1 || { cat "$TMP/full.log"; exit 1; }
if SAEV_TRAIN_KILL_AFTER_STEPS=8 mpirun -np 2 $W train $common out_dir="$TMP/killed" $members > "$TMP/killed.log" 2>&1; then
  echo "the killed run did not die"; exit 1
fi
grep -q '"step": 6' "$TMP/killed/0/metrics.jsonl"
mpirun -np 2 $W train $common out_dir="$TMP/killed" resume=true $members > "$TMP/resume.log" 2>&1 || { cat "$TMP/resume.log"; exit 1; }
for m in 0 1; do
  for f in sae.safetensors train_state.safetensors; do
    if cmp -s "$TMP/full/$m/$f" "$TMP/killed/$m/$f"; then echo "resume: member $m $f bit-identical"; else echo "resume: member $m $f DIFFERS"; fail=1; fi
  done
  if [ "$(wc -l < "$TMP/killed/$m/metrics.jsonl")" != 10 ]; then echo "resume: metrics lines not 10"; fail=1; fi
done

# NaN in the data at row 200 = batch 3 (shuffle off, batch 64): the run stops at step 3.
$CMP make-data "$TMP/nan.safetensors" 700 16 4 200
if mpirun -np 2 $W train data="$TMP/nan.safetensors" out_dir="$TMP/nan" shuffle=false batch_size=64 steps=8 checkpoint_every=2 sae.d_sae=32 sae.k=4 > "$TMP/nan.log" 2>&1; then
  echo "NaN data: the run succeeded"; fail=1
fi
grep -q "step 3: NaN or Inf in the training data" "$TMP/nan.log" || { echo "NaN data: no message naming step 3"; cat "$TMP/nan.log"; fail=1; }
$PY -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; m=json.loads(f.read(n))['__metadata__']; sys.exit(0 if m['step']=='2' else 1)" "$TMP/nan/sae.safetensors" \
  || { echo "NaN data: the step-2 checkpoint did not stay"; fail=1; }
# Finite data whose squares overflow float32 (x·1e25): the loss is Inf; the run stops naming step and SAE.
$CMP make-data "$TMP/huge.safetensors" 700 16 4 -1 1e25
if $W train data="$TMP/huge.safetensors" out_dir="$TMP/diverge" batch_size=64 steps=8 sae.d_sae=32 sae.activation=relu > "$TMP/diverge.log" 2>&1; then
  echo "diverging run succeeded"; fail=1
fi
grep -Eq "step [0-9]+: SAE 0 .*not finite" "$TMP/diverge.log" || { echo "diverge: no message naming step and SAE"; cat "$TMP/diverge.log"; fail=1; }
grep -h "not finite\|NaN or Inf" "$TMP/diverge.log" "$TMP/nan.log" | head -2
[ $fail = 0 ] && echo "test_sae_train: all passed"
exit $fail
