#!/usr/bin/env bash
# Print the path of a Python >= 3.12 to build .venv with, or fail with a clear message.
# Order: $PYTHON, the version in .python-version via pyenv, any pyenv 3.12+, python3.13/3.12 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }

candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
if [ -f .python-version ]; then
  candidates+=("$pyenv_root/versions/$(tr -d '[:space:]' < .python-version)/bin/python")
fi
for dir in $(ls -d "$pyenv_root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
  candidates+=("$dir/bin/python")
done
candidates+=(python3.13 python3.12 python3)

for candidate in "${candidates[@]}"; do
  path=$(command -v "$candidate" 2>/dev/null || true)
  if [ -n "$path" ] && ok "$path"; then
    echo "$path"
    exit 0
  fi
done
echo "error: Atrium needs Python 3.12 or newer and none was found." >&2
echo "Install it (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
exit 1
