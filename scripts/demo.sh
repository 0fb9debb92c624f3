#!/usr/bin/env bash
# berth's main job on its built-in busybox image: a service with a published
# port on 127.0.0.1, curl'd from the host, ps/logs/exec/stats, then clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m berth.demo
