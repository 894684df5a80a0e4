# viewer_fixture.sh: sourced by the viewer's tests. Builds, in the current folder, a small
# pipeline like the demo's (segmentation photos with Fashion-MNIST items, a random tiny
# DINOv2 at 56 px, 7x7 patches, its block -2 recorded, a sweep of two top-k SAEs trained,
# evaluated, and their visuals with 10 latents rendered: the server renders the others),
# and `saev` built with AddressSanitizer in its own build folder ($SAEV_BIN/../asan), for
# the tests to run the server under (that binary does not sit where it finds web/ by
# itself: give it serve.web).
#   viewer_fixture          -> data/ model/ store/ runs/v/<sae>/{sae.safetensors,eval.json,visuals/}
#   viewer_probe            -> store2/ runs/probe/probe.safetensors (a patch probe on block -1)
#   viewer_asan_build       -> $ASAN_SAEV (the ASan binary)
viewer_fixture() {
  local S="$SAEV_BIN/saev"
  "$S" demo-data data --per-class 1 --seg-images 60 >/dev/null
  "$S" make-model --family dinov2 --preset tiny --seed 3 --out model >/dev/null
  cat > v.yaml <<YAML
run: {name: v, out_dir: runs, ranks: 1}
data: {kind: ade20k, root: data/segmentation, split: training}
preprocess: {size: 64, crop: 56}   # pipeline unset: the ViT's family (dinov2), as recorded stores leave it
model: {path: model, layers: [-2]}
activations: {out: store, batch_size: 8}
train:
  data: store
  layer: -2
  batch_size: 256
  steps: 40
  lr_warmup: 3
  sae: {d_sae: 96, k: 4}
  sweep: {sae.k: [4, 8]}
evaluate: {sae: [runs/v], data: store, layer: -2}
visuals: {sae: [runs/v], data: store, layer: -2, top_k: 8, n_render: 10}
YAML
  "$S" run v.yaml > run.log 2>&1 || { cat run.log; echo "FAIL: the fixture pipeline failed"; exit 1; }
}

# A patch probe on block -1 (as the demo has), from a second store holding blocks -2 and
# -1: viewer_probe -> runs/probe/probe.safetensors (for serve --probe).
viewer_probe() {
  local S="$SAEV_BIN/saev"
  "$S" activations v.yaml --set 'model.layers=[-2, -1]' --set activations.out=store2 > probe.log 2>&1 || { cat probe.log; exit 1; }
  "$S" probe v.yaml --set probe.data=store2 --set probe.layer=-1 --set probe.target=patch --set probe.l2=1.0e-1 \
      --set probe.out=runs/probe > probe.log 2>&1 || { cat probe.log; echo "FAIL: the fixture probe failed"; exit 1; }
}

viewer_asan_build() {
  local B="$SAEV_BIN/../asan"
  mkdir -p "$B"
  # One build at a time when both viewer tests run in parallel (ctest -j).
  (
    flock 9
    if [ ! -f "$B/CMakeCache.txt" ]; then
      cmake -S "$SAEV_ROOT" -B "$B" -DSAEV_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS="-fsanitize=address -fno-omit-frame-pointer" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" > "$B/configure.log" 2>&1 || { cat "$B/configure.log"; exit 1; }
    fi
    nice cmake --build "$B" --target saev -j2 > "$B/build.log" 2>&1 || { tail -30 "$B/build.log"; exit 1; }
  ) 9>"$B.lock" || { echo "FAIL: the ASan build of saev failed"; exit 1; }
  ASAN_SAEV="$B/bin/saev"
}

# Starts the ASan server in the background: viewer_start LOG ARGS...; sets SERVER_PID, PORT.
viewer_start() {
  local log="$1"; shift
  # LD_PRELOAD unset: under `make test-asan` it holds that suite's dlopen shim, and this
  # server's own ASan runtime must come first in the library list.
  env -u LD_PRELOAD ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0" LSAN_OPTIONS="suppressions=$SAEV_ROOT/tests/asan/lsan.supp:print_suppressions=0" \
    "$ASAN_SAEV" serve "$@" --port 0 > "$log" 2>&1 &
  SERVER_PID=$!
  local i
  for i in $(seq 1 600); do
    PORT=$( (grep -o 'http://127.0.0.1:[0-9]*' "$log" || true) | head -1 | sed 's/.*://')
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; echo "FAIL: the server exited at start"; exit 1; }
    sleep 0.1
  done
  cat "$log"; echo "FAIL: the server did not start within 60 s"; exit 1
}

# Stops it with SIGINT: it must exit 0 with nothing from AddressSanitizer in its log.
viewer_stop() {
  local log="$1"
  kill -INT "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  if [ $rc -ne 0 ] || grep -q "Sanitizer" "$log"; then
    cat "$log"; echo "FAIL: the server under ASan ended with status $rc or an ASan report"; exit 1
  fi
}
