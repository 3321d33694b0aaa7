#!/usr/bin/env bash
# Screenshot a run's report.html with headless Chromium (Debian package `chromium`), to look at it.
# Usage: benchmarks/screenshot_report.sh RUN [OUT.png]
set -euo pipefail
run=${1:?usage: screenshot_report.sh RUN [OUT.png]}
out=${2:-$run/report.png}
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1200,2400 --screenshot="$out" "file://$(realpath "$run")/report.html" 2>/dev/null
echo "wrote $out"
