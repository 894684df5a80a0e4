#!/usr/bin/env bash
# Every example experiment under configs/ is a valid config (types, ranges, choices, no
# unknown key) and its sweep expands to the number of configs its comments promise.
set -euo pipefail
S="$SAEV_BIN/saev"
n=0
for f in "$SAEV_ROOT"/configs/*.yaml; do
  out=$("$S" config "$f") || { echo "FAIL: $f"; exit 1; }
  n=$((n + 1))
done
[ $n -ge 4 ] || { echo "FAIL: only $n example configs"; exit 1; }
# clip-imagenet sweeps lr (2) x sae.k (3) = 6 configs; demo sweeps 2 x 2 = 4.
docs() { "$S" config "$SAEV_ROOT/configs/$1" | grep -c '^run:$'; }
[ "$(docs clip-imagenet.yaml)" = 6 ] || { echo "FAIL: clip-imagenet does not expand to 6"; exit 1; }
[ "$(docs demo.yaml)" = 4 ] || { echo "FAIL: demo does not expand to 4"; exit 1; }
echo "test_configs: ok ($n configs)"
