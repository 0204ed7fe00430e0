#!/bin/sh
# Build the frozen CPU one-folder bundle into build/bundle/ul-studio/ (`make bundle`); prints its size and the
# build time. Needs the project's .venv (make install); installs PyInstaller into it at the pinned version.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-.venv/bin/python}
"$PY" -m pip install -q -c packaging/constraints.txt pyinstaller pyinstaller-hooks-contrib
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath build/bundle --workpath build/pyinstaller packaging/ul-studio.spec
end=$(date +%s)
size=$(du -sh build/bundle/ul-studio | cut -f1)
echo "bundle: build/bundle/ul-studio ($size) built in $((end - start)) s"
