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

# berth-runtime is exec'd once per container operation, so its start-up is on
# every container's critical path. pip's console-script wrapper imports `re`
# and runs site (with the editable install's .pth): replace it with a launcher
# that runs the interpreter isolated (-I: no PYTHON* variables, so bytecode is
# cached even under PYTHONDONTWRITEBYTECODE) and without site (-S), putting
# berth's source and the venv's site-packages on sys.path directly. It needs
# only the standard library, so when the distribution's python3 is the venv's
# version it runs on that one (Debian builds it with PGO and LTO: ~8 ms less
# per container than a plain build, see bench/runtime_vs_runc.py).
py="$PWD/$VENV/bin/python3"
berth_dir=$("$py" -c 'import berth, os; print(os.path.dirname(os.path.dirname(berth.__file__)))')
purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rt_py="$py"
want=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x "/usr/bin/python$want" ]; then rt_py="/usr/bin/python$want"; fi
printf '#!%s -IS\nimport os, sys\nsys.path[:0] = ["%s", "%s"]\nos.environ.setdefault("BERTH_LIBEXEC", "%s")\nfrom berth.cli.runtime import entry\nentry()\n' \
  "$rt_py" "$berth_dir" "$purelib" "$PWD/$VENV/libexec/berth" > "$VENV/bin/berth-runtime.tmp"
chmod 755 "$VENV/bin/berth-runtime.tmp"
mv "$VENV/bin/berth-runtime.tmp" "$VENV/bin/berth-runtime"

# `berth` itself gets the same kind of launcher: it is on the path of every
# `berth run` (pip's wrapper, site and the .pth cost ~7 ms, see bench/README.md).
# Its dependencies (rich, zstandard, pyroute2, ...) are in the venv's
# site-packages, which is on sys.path; no package there needs a .pth file.
# Without site, sys.prefix would be the base interpreter's: set it (and
# sys.executable, for `python -m berth...` children such as the monitor's
# exit command) to the venv as site would, so libexec() and the default
# runtime (sys.prefix/bin/berth-runtime) are the venv's. -I ignores PYTHON*
# variables only; BERTH_* variables are read by berth itself.
venv_abs=$(cd "$VENV" && pwd)
printf '#!%s -IS\nimport sys\nsys.path[:0] = ["%s", "%s"]\nsys.prefix = sys.exec_prefix = "%s"\nsys.executable = "%s"\nfrom berth.cli.main import entry\nentry()\n' \
  "$rt_py" "$berth_dir" "$purelib" "$venv_abs" "$venv_abs/bin/python3" > "$VENV/bin/berth.tmp"
chmod 755 "$VENV/bin/berth.tmp"
mv "$VENV/bin/berth.tmp" "$VENV/bin/berth"

# C helpers (guest agent, container monitor) land in the venv's libexec.
make -s -C csrc OUT="$PWD/$VENV/libexec/berth"

# Byte-compile berth so every exec'd berth-runtime/berth starts from .pyc
# files even where PYTHONDONTWRITEBYTECODE is set (it stops writing, not reading).
"$VENV/bin/python" -m compileall -q -j 0 src >/dev/null
