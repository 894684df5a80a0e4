#!/usr/bin/env bash
# The README's configuration reference is what the schema says (`saev config --reference`),
# and the README gives the two front-door commands.
set -euo pipefail
README="$SAEV_ROOT/README.md"
ref=$("$SAEV_BIN/saev" config --reference)
block=$(sed -n '/<!-- config-reference:begin -->/,/<!-- config-reference:end -->/p' "$README" | sed '1,2d;$d' | sed '$d')
[ "$block" = "$ref" ] || { diff <(echo "$block") <(echo "$ref") | head -20; echo "FAIL: README reference out of date: run scripts/update-readme.sh"; exit 1; }
grep -q "make test" "$README" && grep -q "make demo" "$README"
echo "test_readme: ok ($(wc -l <<<"$ref") keys)"
