#!/usr/bin/env bash
# `saev serve`'s intervention endpoint (POST /api/sae/<i>/intervene) on the viewer's
# fixture (tests/viewer_fixture.sh: a tiny DINOv2, SAEs on block -2), with a patch probe on
# block -1 as the demo has one (a second store holds blocks -2 and -1 for it):
#  - one edit (the first of the image's top latents at -10x or +10x that changes a label)
#    against `saev intervene` run on the same image, SAE and edit: the same labels before
#    and after, and for the class probe the same probabilities. Both go through edit_apply
#    and intervene_predict on the same store tokens, so the float32 probabilities are the
#    same numbers; the bound, 2^-52 |p|, is only cJSON's 15-digit printing of them;
#  - a zero edit (scale 1, and no edits at all) answers after == before bit for bit, labels
#    and probabilities (cJSON prints doubles so that they read back exactly);
#  - the first server finds its probe under the served folders, the second is given --probe;
#  - bad input: 400 for bad parameters, 404 for unknown latents, images, uploads.
# The server runs without ASan here (test_serve_api.sh runs the ASan server); timings are
# printed, not checked.
set -euo pipefail
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"
. "$SAEV_ROOT/tests/viewer_fixture.sh"
viewer_fixture
viewer_probe
S="$SAEV_BIN/saev"
ASAN_SAEV="$S"
# No --probe: the server finds the probe under the folders it serves (runs/probe).
viewer_start serve.log runs/v runs/probe --set "serve.web=$SAEV_ROOT/web"
grep -q "intervention panel reads runs/probe/probe.safetensors" serve.log || { tail -20 serve.log; echo "FAIL: the probe under runs/probe was not picked"; exit 1; }
/usr/bin/python3 "$SAEV_ROOT/tests/viewer_intervene.py" 127.0.0.1 "$PORT" "$S" v.yaml runs/probe/probe.safetensors store patch \
  || { viewer_stop serve.log || true; tail -20 serve.log; exit 1; }
viewer_stop serve.log
# A class probe (CLS of block -1) on the data set's Fashion-MNIST folder: SAEs on its
# block -2, and the class probabilities compared too.
"$S" activations v.yaml --set data.kind=folder --set data.root=data/fashion --set 'model.layers=[-2, -1]' --set activations.out=store3 > log.txt 2>&1 || { cat log.txt; exit 1; }
"$S" train v.yaml --set train.data=store3 --set train.out_dir=runs/c > log.txt 2>&1 || { cat log.txt; exit 1; }
"$S" probe v.yaml --set probe.data=store3 --set probe.layer=-1 --set probe.target=class --set probe.pool=cls --set probe.l2=1.0e-2 \
    --set probe.out=runs/cprobe > log.txt 2>&1 || { cat log.txt; exit 1; }
viewer_start serve2.log runs/c --probe runs/cprobe/probe.safetensors --set "serve.web=$SAEV_ROOT/web"
/usr/bin/python3 "$SAEV_ROOT/tests/viewer_intervene.py" 127.0.0.1 "$PORT" "$S" v.yaml runs/cprobe/probe.safetensors store3 class \
  || { viewer_stop serve2.log || true; tail -20 serve2.log; exit 1; }
viewer_stop serve2.log
echo "test_serve_intervene: ok"
