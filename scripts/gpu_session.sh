#!/usr/bin/env bash
# One GPU session, sized for a 15-minute device lease; every part is time-boxed and writes what it has.
#   1. `ul bench` in bf16 (flash attention through SDPA), MFU against the card's bf16 rating: shapes-32 at
#      batch 32 and 256, imagenet-512 (the paper's nets) at batch 8.
#   2. In parallel, one process each:
#      - the shapes-32 (b, c_lf) sweep at the CPU's 2,000-step budget, each run then `ul eval` (256 images,
#        64 decoder steps);
#      - the demo model (photos-64, both stages) in two variants, exported in fp16 and scored on held-out photos;
#      - `ul study --quick` with a long stage 2 (FD-shapes of stage-2 vs stage-1-prior samples).
#   3. Everything is packed into at most 8 files under $OUT.
# Usage (repo root, CUDA machine): OUT=/tmp/out scripts/gpu_session.sh [SECONDS]   (SCALE=0.02 for a CPU dry run)
set -u
OUT=${OUT:-/tmp/ul-gpu-out}
BUDGET=${1:-500}
SCALE=${SCALE:-1}          # multiplies step counts and training minutes (a CPU dry run: SCALE=0.01)
SWEEP_LIMIT=${SWEEP_LIMIT:-99}  # how many sweep runs (a CPU dry run: 2)
HOMES=${HOMES:-/tmp/ul-gpu-homes}
PHOTOS=${PHOTOS:-/tmp/ul-gpu-photos}
mkdir -p "$OUT" "$HOMES"
LOGS=$OUT/work/logs; mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
UL="python3 -m ul_engine.cli"
T0=$(date +%s)
s() { python3 -c "import math; print(max(1, math.ceil($1 * $SCALE)))"; }   # scaled count
m() { python3 -c "print(round(max(0.02, $1 * $SCALE), 3))"; }              # scaled minutes
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOGS/timeline.txt"; }

stamp "start; budget ${BUDGET}s, scale $SCALE"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())"; nproc) > "$LOGS/machine.txt" 2>&1

# 1. Bench, alone on the card so the timings are clean.
bench() {  # name, seconds, args...
  local name=$1 secs=$2; shift 2
  UL_HOME=$HOMES/bench timeout "$secs" $UL bench "$@" --json > "$LOGS/bench-$name.log" 2>&1
  stamp "bench $name: exit $?"
}
if [ "${BENCH:-1}" = 1 ]; then
bench shapes-32-b32 60 --preset shapes-32 --steps "$(s 20)"
bench shapes-32-b256 60 --preset shapes-32 --steps "$(s 20)" --set optim.batch_size=256
bench imagenet-512-b8 100 --preset imagenet-512 --steps "$(s 5)" --set optim.batch_size=8
fi

# 2a. The sweep: name and overrides per run.
SWEEP=(
  "lf1.3-b0 loss.loss_factor=1.3"          "lf1.5-b0 loss.loss_factor=1.5"          "lf2.1-b0 loss.loss_factor=2.1"
  "lf3-b0 loss.loss_factor=3"              "lf5-b0 loss.loss_factor=5"              "lf10-b0 loss.loss_factor=10"
  "lf1.3-b2 loss.loss_factor=1.3 loss.sigmoid_bias=2" "lf1.5-b2 loss.loss_factor=1.5 loss.sigmoid_bias=2"
  "lf2.1-b2 loss.loss_factor=2.1 loss.sigmoid_bias=2" "lf1.3-b4 loss.loss_factor=1.3 loss.sigmoid_bias=4"
  "lf1.5-b4 loss.loss_factor=1.5 loss.sigmoid_bias=4" "lf2.1-b4 loss.loss_factor=2.1 loss.sigmoid_bias=4"
  "lf10-b0-lr1e-3 loss.loss_factor=10 optim.lr=1e-3"
)
sweep_one() {  # name overrides...
  local name=$1; shift
  local sets=(); for o in "$@"; do sets+=(--set "$o"); done
  export UL_HOME=$HOMES/sweep-$name
  timeout -s TERM 250 $UL train --preset shapes-32 --name "$name" --steps "$(s 2000)" "${sets[@]}" \
    --set train.checkpoint_every="$(s 250)" --json > "$LOGS/train-$name.log" 2>&1
  timeout 90 $UL eval --run "$name" --n "$(s 256)" --json > "$LOGS/eval-$name.log" 2>&1
  stamp "sweep $name done"
}

# 2b. The demo model: stage 1, stage 2, fp16 export, held-out scores, samples.
demo_one() {  # variant overrides...
  local v=$1; shift
  local sets=(); for o in "$@"; do sets+=(--set "$o"); done
  export UL_HOME=$HOMES/demo-$v
  local dir=$OUT/work/demo-$v; mkdir -p "$dir"
  timeout -s TERM 250 $UL train --preset photos-64 --name "demo-$v" --minutes "$(m 3.0)" \
    --set data.path="\"$PHOTOS/train\"" "${sets[@]}" --json > "$LOGS/demo-$v-stage1.log" 2>&1
  stamp "demo $v stage 1: exit $?"
  timeout -s TERM 120 $UL train --preset photos-64 --stage 2 --from-run "demo-$v" --name "demo-$v-s2" \
    --minutes "$(m 1.3)" --json > "$LOGS/demo-$v-stage2.log" 2>&1
  stamp "demo $v stage 2: exit $?"
  $UL export "demo-$v-s2" --out "$dir/bundle-fp32" --json > "$LOGS/demo-$v-export.log" 2>&1
  python3 packaging/demo/to_fp16.py "$dir/bundle-fp32" "$dir/bundle" >> "$LOGS/demo-$v-export.log" 2>&1
  rm -rf "$dir/bundle-fp32"
  timeout 60 $UL reconstruct --run "demo-$v-s2" "$PHOTOS"/heldout/*.png --out "$dir/heldout" \
    --decoder-steps 64 --json > "$LOGS/demo-$v-heldout.log" 2>&1
  rm -rf "$dir/heldout"
  timeout 60 $UL reconstruct --run "demo-$v-s2" resources/samples/* --out "$dir/samples" \
    --decoder-steps 64 --json > "$LOGS/demo-$v-samples.log" 2>&1
  timeout 60 $UL eval --run "demo-$v" --n "$(s 256)" --json > "$LOGS/demo-$v-eval.log" 2>&1
  timeout 60 $UL sample --run "demo-$v-s2" --n 16 --out "$dir/generated" --json > "$LOGS/demo-$v-sample.log" 2>&1
  stamp "demo $v done"
}

[ -d "$PHOTOS/train" ] || python3 packaging/demo/make_photo_crops.py --out "$PHOTOS" --per-photo "$(s 1500)" --held-out-per-photo 16 \
  > "$LOGS/photos.log" 2>&1
stamp "photo crops: exit $?"

export OMP_NUM_THREADS=1  # 16 processes on 16 cores: one thread each
pids=()
for entry in "${SWEEP[@]:0:$SWEEP_LIMIT}"; do sweep_one $entry & pids+=($!); done
demo_one a loss.loss_factor=1.5 loss.sigmoid_bias=2 & pids+=($!)
demo_one b loss.loss_factor=3 & pids+=($!)
( export UL_HOME=$HOMES/study
  timeout -s TERM 330 $UL study --quick --steps "$(s 250)" --stage2-steps "$(s 2000)" --fd "$(s 1000)" --eval-n "$(s 256)" \
    --tag gpu --out "$OUT/work/study/results.md" > "$LOGS/study.log" 2>&1
  stamp "study: exit $?" ) & pids+=($!)
stamp "phase 2: ${#pids[@]} processes"
# Wait, but pack before the budget ends whatever is still running (a device call that outlives its limit
# returns nothing that was not packed).
any_alive() { for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while [ "$(( $(date +%s) - T0 ))" -lt "$(( BUDGET - 25 ))" ] && any_alive "${pids[@]}"; do sleep 2; done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && { stamp "still running at the deadline: $pid"; pkill -TERM -P "$pid"; }; done
sleep 5
stamp "phase 2 done"

# 3. Pack (≤ 8 files come back; each ≤ 16 MiB).
cd "$OUT/work" || exit 1
for v in a b; do [ -d "demo-$v" ] && tar -cf "$OUT/demo-$v.tar" "demo-$v"; done
stamp "packing"
tar -czf "$OUT/results.tgz" logs study 2>/dev/null
cd "$OUT" && rm -rf work
echo "[$(( $(date +%s) - T0 ))s] packed"
ls -la "$OUT"
