#!/bin/sh
# Smoke check of the built frozen bundle (packaging/build_bundle.sh): it answers --version and `ul doctor`,
# its session worker answers, a training worker started from the bundle trains a few steps, the demo model
# reconstructs a shipped photo, and the window comes up offscreen. Prints each step; exits non-zero on the
# first failure. Usage: sh packaging/smoke_bundle.sh [path/to/ul-studio]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXE=${1:-$ROOT/build/bundle/ul-studio/ul-studio}
[ -x "$EXE" ] || { echo "smoke: no bundle at $EXE; build it with make bundle" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ul-smoke-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export UL_HOME="$WORK/home" QT_QPA_PLATFORM=offscreen
cd "$WORK"  # nothing may come from the source tree
unset PYTHONPATH UL_DEMO_MODEL  # the bundle's own demo model

step() { printf '\n== %s\n' "$*"; }

step "version"
"$EXE" --version

step "ul doctor (ul-studio --cli doctor)"
"$EXE" --cli doctor > doctor.out
cat doctor.out
if grep -q -e MISSING -e "not found" doctor.out; then echo "smoke: doctor reports something missing" >&2; exit 1; fi

step "session worker (ul-studio --worker session): devices"
printf '%s\n%s\n' '{"id": 1, "op": "session.devices"}' '{"id": 2, "op": "session.shutdown"}' \
    | "$EXE" --worker --home "$UL_HOME" session > session.out
cat session.out
grep -q '"id":1,"ok":true' session.out

step "training worker started from the bundle (queue run → ul-studio --worker train)"
"$EXE" --cli train --preset smoke --steps 4 --name smoke --queue --json | tail -n 1
"$EXE" --cli queue run --json | tail -n 1 > queue.json
cat queue.json
"$EXE" --cli runs --json | tail -n 1 > runs.json
grep -q '"status": "completed"' runs.json

step "demo model: ul reconstruct --run demo on a shipped photo"
PHOTO=$(ls "$(dirname "$EXE")"/_internal/resources/samples/* | head -n 1)
"$EXE" --cli reconstruct --run demo "$PHOTO" --out rec --decoder-steps 2 --json | tail -n 1 > rec.json
cat rec.json
grep -q '"error": null' rec.json

step "window comes up offscreen (first expose, then quit)"
UL_STUDIO_BENCH_LAUNCH=1 "$EXE" --home "$UL_HOME" > window.out 2> window.err || { cat window.err; exit 1; }
cat window.out
grep -q launch_to_shown_s window.out

printf '\nsmoke: all checks passed (%s)\n' "$EXE"
