#!/usr/bin/env bash
# berth's main job on its built-in busybox image: a service with a published
# port on 127.0.0.1, curl'd from the host, ps/logs/exec/stats, then clean up;
# then the article's VM-versus-container table, measured on this host (docs/compare.md).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m berth.demo
report="${TMPDIR:-/tmp}/berth-compare-busybox.html"
.venv/bin/berth compare busybox --html "$report"
echo "plots and the same table: $report"
