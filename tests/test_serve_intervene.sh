#!/usr/bin/env bash
# `saev serve`'s intervention endpoint (POST /api/sae/<i>/intervene) on the viewer's
# fixture (tests/viewer_fixture.sh: a tiny DINOv2, SAEs on block -2), with a patch probe on
# block -1 as the demo has one (a second store holds blocks -2 and -1 for it):
#  - one edit (the image's top latent scaled by -10) against `saev intervene` run on the
#    same image, SAE and edit: the same patch labels before and after. Both go through
#    edit_apply and intervene_predict on the same store tokens, so the labels must be
#    identical (no tolerance: any difference is a different code path);
#  - a zero edit (scale 1, and no edits at all) answers after == before bit for bit, labels
#    and probabilities (cJSON prints doubles so that they read back exactly);
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
viewer_start serve.log runs/v --probe runs/probe/probe.safetensors --set "serve.web=$SAEV_ROOT/web"
/usr/bin/python3 "$SAEV_ROOT/tests/viewer_intervene.py" 127.0.0.1 "$PORT" "$S" v.yaml runs/probe/probe.safetensors \
  || { viewer_stop serve.log || true; tail -20 serve.log; exit 1; }
viewer_stop serve.log
echo "test_serve_intervene: ok"
