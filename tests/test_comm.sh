#!/usr/bin/env bash
# Communication layer under mpirun -np 1 and -np 2: all-reduce (sum/max/mean of float,
# double, int64), broadcast, and failure propagation: a rank that exits with an error must
# take the whole job down, non-zero, with that rank's message, within seconds.
set -euo pipefail
W="$SAEV_BIN/saev-worker"
for np in 1 2; do
  out=$(mpirun -np $np --oversubscribe "$W" comm-selftest 2>&1)
  echo "$out"
  grep -q "comm-selftest ok: $np ranks" <<<"$out"
done

# Rank 1 fails on purpose; the job must end quickly with status != 0 and rank 1's message.
start=$(date +%s)
set +e
out=$(timeout 60 mpirun -np 2 --oversubscribe "$W" comm-selftest --fail-rank 1 2>&1)
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
echo "$out"
[ $rc -ne 0 ] || { echo "FAIL: job with a failing rank exited 0"; exit 1; }
[ $rc -ne 124 ] || { echo "FAIL: job with a failing rank hung"; exit 1; }
grep -q "\[rank 1\] error: rank 1 failing on purpose" <<<"$out" || { echo "FAIL: rank 1's message missing"; exit 1; }
[ $elapsed -le 10 ] || { echo "FAIL: took ${elapsed}s to go down"; exit 1; }

# The launcher passes the workers' status through (usage error: unknown stage -> 2).
set +e
"$W" no-such-stage >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || { echo "FAIL: unknown stage gave $rc, want 2"; exit 1; }
echo "test_comm: ok"
