#!/usr/bin/env bash
# berth's main job on its built-in default image: the article's VM-versus-container
# table (shared/seed), measured on this host for busybox (docs/compare.md).
set -euo pipefail
cd "$(dirname "$0")/.."
report="${TMPDIR:-/tmp}/berth-compare-busybox.html"
.venv/bin/berth compare busybox --html "$report"
echo "plots and the same table: $report"
