#!/usr/bin/env bash
# A PNG screenshot of an `itictl report` page with headless Chromium (Debian: apt-get install chromium),
# as in docs/report.md: scripts/report_screenshot.sh REPORT.html OUT.png [WIDTH [HEIGHT]]
set -euo pipefail
REPORT=${1:?usage: report_screenshot.sh REPORT.html OUT.png [WIDTH [HEIGHT]]}
OUT=${2:?usage: report_screenshot.sh REPORT.html OUT.png [WIDTH [HEIGHT]]}
W=${3:-1280}
H=${4:-2400}
BIN=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$BIN" ] || { echo "no chromium on PATH (Debian: apt-get install -y chromium)" >&2; exit 1; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
"$BIN" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --no-first-run --user-data-dir="$PROFILE" \
  --virtual-time-budget=10000 --window-size="$W,$H" --screenshot="$(realpath -m "$OUT")" \
  "file://$(realpath "$REPORT")" 2>/dev/null
echo "$OUT"
