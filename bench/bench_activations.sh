#!/usr/bin/env bash
# bench_activations.sh: the activations stage end to end on the demo set (decode +
# preprocess + ViT-S/16 forward + collective HDF5 writes), images/s and GB/s written at
# 1 and 2 ranks, next to dd's sequential write rate into the same folder in the same run,
# and the 1-rank/2-rank ratio next to its target: one rank on all cores (forward lanes)
# should reach at least 90 % of two ranks. The machine's load (uptime) is printed first:
# on a shared machine compare only figures of one run.
#
# usage: bench/bench_activations.sh [BUILD_DIR] [WORK_DIR]
#   BUILD_DIR default build; WORK_DIR default a fresh folder under /tmp (kept for reuse:
#   data and model are made once). SAEV_BENCH_PRESET=vit-b-16 for a bigger model.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
W="${2:-/tmp/saev-bench-activations}"
S="$BUILD/bin/saev"
PRESET="${SAEV_BENCH_PRESET:-vit-s-16}"
mkdir -p "$W"; cd "$W"
[ -d data ] || "$S" demo-data data >/dev/null
[ -d "model-$PRESET" ] || "$S" make-model --family clip --preset "$PRESET" --seed 0 --out "model-$PRESET" >/dev/null
cat > bench.yaml <<YAML
run: {name: bench}
data: {kind: folder, root: data/fashion}
model: {path: model-$PRESET, layers: [-2]}
activations: {out: store, batch_size: 32, dtype: float32}
YAML
echo "bench_activations: demo set ($(find data/fashion -mindepth 2 -type f | wc -l) images), CLIP $PRESET, layer -2, float32; $(nproc) cores"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}; load:$(uptime | sed 's/.*load average://')"
printf "%-22s %12s %12s %10s\n" "run" "images/s" "GB/s" "seconds"
for ranks in 1 2; do
  rm -rf store
  log=$("$S" activations bench.yaml --ranks "$ranks" 2>&1) || { echo "$log"; exit 1; }
  line=$(grep "activations: store:" <<<"$log" | tail -1)
  ips=$(sed -E 's/.*\(([0-9.]+) images\/s.*/\1/' <<<"$line")
  gbs=$(sed -E 's/.*, ([0-9.]+) GB\/s.*/\1/' <<<"$line")
  sec=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<<"$line")
  printf "%-22s %12s %12s %10s\n" "saev activations x$ranks" "$ips" "$gbs" "$sec"
  eval "ips$ranks=$ips"
done
bytes=$(du -sb store | cut -f1)
# dd: the same number of bytes, sequential, flushed to disk, into the same folder.
dd_out=$(dd if=/dev/zero of=dd.bin bs=4M count=$(( (bytes + 4194303) / 4194304 )) conv=fdatasync 2>&1 | tail -1)
rm -f dd.bin
dd_rate=$(awk '{for(i=1;i<=NF;i++) if($i ~ /^[0-9.]+$/ && $(i+1) ~ /B\/s/) {r=$i; u=$(i+1)}} END {if(u=="MB/s") r/=1000; if(u=="kB/s") r/=1e6; print r}' <<<"$dd_out")
printf "%-22s %12s %12s %10s\n" "dd (same bytes)" "-" "$dd_rate" "-"
echo "store size: $((bytes / 1000000)) MB"
awk -v a="$ips1" -v b="$ips2" 'BEGIN {r = (b > 0) ? 100 * a / b : 0; printf "1 rank / 2 ranks: %.0f %% (target >= 90 %%: %s)\n", r, (r >= 90) ? "met" : "NOT met"}'
