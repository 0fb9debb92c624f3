#!/usr/bin/env bash
# berth's main job on its built-in default image. Replaced as the engine and
# compare land: for now berth-runtime runs a busybox bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m berth.demo
