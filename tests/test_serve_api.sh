#!/usr/bin/env bash
# `saev serve` API under AddressSanitizer: on a small demo-like pipeline (viewer_fixture.sh),
# tests/viewer_api.py checks statuses and bodies against float64 references, bad input,
# traversal attempts, oversized and truncated uploads and 64 concurrent clients for 30 s;
# the server must then stop on SIGINT with status 0 and no ASan report. Then --host: a
# warning, and only that address bound.
set -euo pipefail
T="${SAEV_TEST_TMP:-$(mktemp -d)}"; rm -rf "$T"; mkdir -p "$T"; cd "$T"
. "$SAEV_ROOT/tests/viewer_fixture.sh"
viewer_fixture
viewer_asan_build
# A copy of the page with symlinks: one inside (allowed), two leading out (refused).
cp -r "$SAEV_ROOT/web" web
ln -s /etc web/leak
ln -s /etc/hostname web/leak.txt
ln -s js/app.js web/inner.js
# A bad directory is a usage error naming it.
set +e
"$SAEV_BIN/saev" serve nowhere > bad.txt 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "nowhere: not a directory" bad.txt || { cat bad.txt; echo "FAIL: serve of a missing folder gave $rc"; exit 1; }
viewer_start serve.log runs/v --set serve.web=web
/usr/bin/python3 "$SAEV_ROOT/tests/viewer_api.py" 127.0.0.1 "$PORT" runs/v store web "${VIEWER_LOAD_SECONDS:-30}" \
  || { viewer_stop serve.log || true; tail -20 serve.log; exit 1; }
viewer_stop serve.log
# --host: another address is announced with a warning, and only that address is bound
# (libmicrohttpd binds every interface unless given one).
"$SAEV_BIN/saev" serve runs/v --host 127.0.0.2 --port 0 --set serve.web=web > host.log 2>&1 &
hpid=$!
for i in $(seq 1 300); do grep -q "saev serve: http" host.log && break; sleep 0.1; done
hport=$(grep -o 'http://127.0.0.2:[0-9]*' host.log | sed 's/.*://')
grep -q "warning.*listening on 127.0.0.2, not 127.0.0.1" host.log || { cat host.log; echo "FAIL: --host gave no warning"; kill -INT $hpid; exit 1; }
curl -sf -o /dev/null "http://127.0.0.2:$hport/api/saes" || { echo "FAIL: not reachable on 127.0.0.2"; kill -INT $hpid; exit 1; }
if curl -s -o /dev/null "http://127.0.0.1:$hport/api/saes"; then echo "FAIL: --host 127.0.0.2 also answers on 127.0.0.1"; kill -INT $hpid; exit 1; fi
kill -INT $hpid; wait $hpid
echo "test_serve_api: ok"
