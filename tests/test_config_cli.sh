#!/usr/bin/env bash
# `saev config` end to end: a misspelled key fails with status 2 and a message naming
# file:line:column (counted in the YAML below), --set overrides and --ranks/--device show
# in the printed resolved config, a sweep prints one document per grid point, and the
# printed YAML is itself a valid config that resolves to the same text.
set -euo pipefail
S="$SAEV_BIN/saev"
T="${SAEV_TEST_TMP:-$(mktemp -d)}"
mkdir -p "$T"
fail() { echo "FAIL: $*"; exit 1; }

# Line 3 is "  sede: 3": the key starts at column 3.
cat >"$T/typo.yaml" <<'YAML'
run:
  name: demo
  sede: 3
YAML
set +e
err=$("$S" config "$T/typo.yaml" 2>&1 >/dev/null); rc=$?
set -e
echo "$err"
[ $rc -eq 2 ] || fail "misspelled key gave status $rc, want 2"
grep -qF "error: $T/typo.yaml:3:3: run.sede: unknown key (did you mean seed?)" <<<"$err" || fail "message lacks file:line:col and suggestion"

# A wrong type given through --set names the assignment; status 2.
set +e
err=$("$S" config "$T/typo.yaml" --set run.sede=x --set run.ranks=two 2>&1 >/dev/null); rc=$?
set -e
[ $rc -eq 2 ] || fail "bad config gave $rc, want 2"

cat >"$T/ok.yaml" <<'YAML'
run:
  name: demo
  seed: 3
YAML
out=$("$S" config "$T/ok.yaml" --set run.seed=11 --set run.out_dir=/tmp/x --ranks 4 --device cpu)
echo "$out"
grep -qx "  seed: 11" <<<"$out" || fail "--set run.seed=11 not applied"
grep -qx "  out_dir: /tmp/x" <<<"$out" || fail "--set run.out_dir not applied"
grep -qx "  ranks: 4" <<<"$out" || fail "--ranks 4 not applied"
grep -qx "  device: cpu" <<<"$out" || fail "--device cpu not applied"
grep -qx "  name: demo" <<<"$out" || fail "file value lost"
grep -qx "  log_level: info" <<<"$out" || fail "default missing"

# The printed config is a config: resolving it again gives the same text.
printf '%s\n' "$out" >"$T/resolved.yaml"
again=$("$S" config "$T/resolved.yaml")
[ "$again" = "$out" ] || fail "resolved config does not resolve to itself"

# A 2x2 sweep: four documents, first key slowest.
out=$("$S" config "$T/ok.yaml" --set 'run.sweep={seed: [1, 2], log_level: [debug, warn]}')
[ "$(grep -c '^--- # config' <<<"$out")" -eq 4 ] || fail "sweep did not give 4 configs"
[ "$(awk '/^[a-z]/ {sec = $1} sec == "run:" && /^  (seed|log_level):/' <<<"$out" | tr -d ' ' | paste -sd,)" = "seed:1,log_level:debug,seed:1,log_level:warn,seed:2,log_level:debug,seed:2,log_level:warn" ] \
  || fail "sweep order"

# Usage errors: a missing CONFIG and a flag without a value.
set +e
"$S" config >/dev/null 2>&1; rc1=$?
"$S" config "$T/ok.yaml" --set >/dev/null 2>&1; rc2=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] || fail "usage errors gave $rc1/$rc2, want 2"
# The reference lists the run section's keys.
ref=$("$S" config --reference)   # captured first: grep -q in a pipe would SIGPIPE the writer under pipefail
grep -qE '^run\.ranks +int in \[1, 1000000\] +1 ' <<<"$ref" || fail "reference lacks run.ranks"
echo "test_config_cli: ok"
