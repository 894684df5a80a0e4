#!/usr/bin/env bash
# Regenerates the README's configuration reference (between the two marker lines) from
# `saev config --reference`, so the README cannot drift from the schema; tests/test_readme.sh
# fails when they differ.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
S="${1:-$ROOT/build}/bin/saev"
ref=$("$S" config --reference)
/usr/bin/python3 - "$ROOT/README.md" "$ref" <<'PY'
import sys
path, ref = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
a, b = text.index(begin) + len(begin), text.index(end)
text = text[:a] + "\n```\n" + ref.rstrip("\n") + "\n```\n" + text[b:]
open(path + ".tmp", "w").write(text)
import os; os.replace(path + ".tmp", path)
PY
