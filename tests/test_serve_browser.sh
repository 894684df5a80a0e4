#!/usr/bin/env bash
# `saev serve` in a real browser: headless Chromium (Debian's chromium + chromium-driver,
# driven by python3-selenium) loads the viewer of a small demo-like pipeline
# (viewer_fixture.sh), sorts the latents table, opens a latent and checks its top images
# loaded, uploads a photo the store has not seen, clicks a patch and sees its latents
# (tests/viewer_browser.py). The server runs under AddressSanitizer and must stop cleanly.
# Then, with the fixture's patch probe served (--probe), the image page's intervention
# panel: moving a slider changes the displayed prediction.
# Screenshots of each page: $SAEV_TEST_TMP/shots/{latents,latent,image,intervene}.png.
# With VIEWER_DIR=DIR (e.g. demo/runs/sae after `make demo`) the browser runs on those
# outputs instead, from the repository root where their recorded paths start
# (VIEWER_PROBE=demo/runs/probe/probe.safetensors adds the panel's check).
# Skips (77) only when Chromium, chromedriver or Selenium is not installed.
set -euo pipefail
for f in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$f" ] || { echo "skipped: $f is not installed (scripts/install-deps.sh installs chromium chromium-driver)"; exit 77; }
done
/usr/bin/python3 -c "import selenium" 2>/dev/null || { echo "skipped: python3-selenium is not installed"; exit 77; }
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"
. "$SAEV_ROOT/tests/viewer_fixture.sh"
viewer_asan_build
if [ -n "${VIEWER_DIR:-}" ]; then
  cd "$SAEV_ROOT"
  UPLOAD=$(ls demo/data-heldout/fashion/*/* 2>/dev/null | head -1)
  PROBE=()
  [ -n "${VIEWER_PROBE:-}" ] && PROBE=(--probe "$VIEWER_PROBE")
  viewer_start "$T/serve.log" "$VIEWER_DIR" ${PROBE[@]+"${PROBE[@]}"} --set "serve.web=$SAEV_ROOT/web"
  WITH_PROBE=${VIEWER_PROBE:+probe}
else
  viewer_fixture
  viewer_probe
  UPLOAD=data/segmentation/images/validation/$(ls data/segmentation/images/validation | head -1)
  viewer_start "$T/serve.log" runs/v --probe runs/probe/probe.safetensors --set "serve.web=$SAEV_ROOT/web"
  WITH_PROBE=probe
fi
/usr/bin/python3 "$SAEV_ROOT/tests/viewer_browser.py" "http://127.0.0.1:$PORT" "$T/shots" "$UPLOAD" "${WITH_PROBE:-}" \
  || { viewer_stop "$T/serve.log" || true; tail -20 "$T/serve.log"; exit 1; }
viewer_stop "$T/serve.log"
echo "screenshots: $T/shots/latents.png $T/shots/latent.png $T/shots/image.png $T/shots/intervene.png"
echo "test_serve_browser: ok"
