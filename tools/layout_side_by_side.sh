#!/bin/bash
# Nothing slower: `ul bench` (shapes-32 training img/s) and `ul bench --app` of the layout before (BASE) and after (NEW),
# alternating A B A B, so that drifting load hits both alike. Output: one JSON line per run in $OUT.
BASE=${BASE:?a checkout of the old layout, with its .venv}; NEW=${NEW:-.}; OUT=${OUT:-/tmp/side_by_side.jsonl}; ROUNDS=${ROUNDS:-2}
: > "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for side in base new; do
    dir=$BASE; [ "$side" = new ] && dir=$NEW
    home=$(mktemp -d)
    load=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$dir" && QT_QPA_PLATFORM=offscreen .venv/bin/ul --home "$home" bench --preset shapes-32 --steps 8 --app --json 2>/dev/null | tail -1) \
      | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(json.dumps({'side':'$side','round':$r,'load_before':$load,'result':d}))" >> "$OUT"
    rm -rf "$home"
  done
done
