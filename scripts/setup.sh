#!/usr/bin/env bash
# Idempotent set-up on Debian 12 as root: Debian packages, a virtual
# environment with berth installed, and berth's small C helpers.
# Every package berth needs is listed in scripts/apt.d/*.txt (one per line).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

mapfile -t pkgs < <(cat scripts/apt.d/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.berth-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# C helpers (guest agent, container monitor) land in the venv's libexec.
make -s -C csrc OUT="$PWD/$VENV/libexec/berth"

# Byte-compile berth so every exec'd berth-runtime/berth starts from .pyc
# files even where PYTHONDONTWRITEBYTECODE is set (it stops writing, not reading).
"$VENV/bin/python" -m compileall -q -j 0 src >/dev/null
