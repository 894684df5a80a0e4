#!/usr/bin/env bash
# The front door: every command listed by `saev --help` answers --help with status 0; an
# unknown command and a missing argument are usage errors (status 2); `saev inspect`
# lists the tensors of a fixture model (names and shapes from its config.json: hidden 48,
# patch 8, 32x32 input -> 17 positions).
set -euo pipefail
S="$SAEV_BIN/saev"
cmds=$("$S" --help | awk '/^  [a-z]/{print $1}')
[ -n "$cmds" ]
for c in $cmds; do
  "$S" "$c" --help > /dev/null || { echo "FAIL: saev $c --help"; exit 1; }
done
set +e
"$S" no-such-command >/dev/null 2>&1; rc=$?
"$S" >/dev/null 2>&1; rc2=$?
"$S" inspect >/dev/null 2>&1; rc3=$?
set -e
[ $rc -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] || { echo "FAIL: usage errors gave $rc $rc2 $rc3, want 2"; exit 1; }
out=$("$S" inspect "$SAEV_FIXTURES/hf-vit/clip/model.safetensors")
grep -E "embeddings.position_embedding.weight +F32 +\[17, 48\]" <<<"$out" >/dev/null
grep -E "^.*: 55 tensors" <<<"$out" >/dev/null
# A malformed file is an error naming it, not a crash.
bad=$(mktemp); printf 'garbage' > "$bad"
set +e
msg=$("$S" inspect "$bad" 2>&1); rc=$?
set -e
rm -f "$bad"
[ $rc -eq 1 ] && grep -q "$bad" <<<"$msg" || { echo "FAIL: malformed file: $rc $msg"; exit 1; }
echo "test_cli: ok ($(wc -w <<<"$cmds") commands)"
