#!/usr/bin/env bash
# Issue 12, item 6 on a lent GPU machine, as one call of the device tool (15 minutes of device
# time a session, 10 a call): render the randomised mix with the machine's cores, fine-tune the
# capsule-hand model on it on the GPU (configs/mix_finetune.toml, 4 of its 12 epochs), score it on
# the cross-domain suite. The capsule-hand model comes from git history, which the device's copy
# of the tree lacks: make it here first and carry it (bash benchmarks/capsule_model.sh).
# The model folder and the scores come back under $OUT; score the real frames here afterwards
# (handvox predict --model ..., the demo's sheets), and compare with the shipped model's figures
# in docs/benchmarks.md before anything ships.
#
#   run(command="bash benchmarks/device_mix.sh", carry=["runs/capsule-model"], timeout_s=590)
#   smoke test on a CPU: FRAMES=64 STEPS=4 SETFRAMES=4 WORKERS=2 OUT=/tmp/dm bash benchmarks/device_mix.sh
#
# The device's own python3 holds torch, numpy, scipy, numba, matplotlib, pillow, tqdm and
# safetensors (/work/.library/device/KINDS.md): handvox runs from src/ without installing.
set -euo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY=${PYTHON:-python3}
OUT=${OUT:-runs/device-mix}
FRAMES=${FRAMES:-4000}     # per source; 6 sources
STEPS=${STEPS:-4000}       # cap on training steps (4 epochs are ~3,000 at 24,000 frames)
SETFRAMES=${SETFRAMES:-100} # frames per cross-domain set
WORKERS=${WORKERS:-14}
DATA=${DATA:-/tmp/mix}
S=child_7y,average_adult,large_male,slender,broad  # the training shapes (eval.protocol)
mkdir -p "$OUT" "$DATA"
hv() { "$PY" -m handvox.cli "$@"; }
t0=$(date +%s)
echo "== render $(date -u +%T)"
# Seeds 601-606: used by no other set (leave-one-out: 401-405; locator: 3000+; tests: 98, 99).
hv synth --out "$DATA/base" --frames "$FRAMES" --seed 601 --hand-shapes $S --workers "$WORKERS" --quiet
hv synth --out "$DATA/mesh" --frames "$FRAMES" --seed 602 --hand-shapes $S --workers "$WORKERS" \
    --mesh-prob 1 --sensor all --sensor-camera --quiet
hv synth --out "$DATA/tof" --frames "$FRAMES" --seed 603 --hand-shapes $S --workers "$WORKERS" \
    --mesh-prob 0.5 --sensor time_of_flight --sensor-camera --quiet
hv synth --out "$DATA/stereo" --frames "$FRAMES" --seed 604 --hand-shapes $S --workers "$WORKERS" \
    --mesh-prob 0.5 --sensor active_stereo --sensor-camera --object-prob 0.3 --near-object-prob 0.3 --quiet
hv synth --out "$DATA/ego" --frames "$FRAMES" --seed 605 --hand-shapes $S --workers "$WORKERS" \
    --camera sr305 --view egocentric --mesh-prob 0.5 --object-prob 0.8 --near-object-prob 0.3 \
    --sensor all --sensor-camera --quiet
hv synth --out "$DATA/desk" --frames "$FRAMES" --seed 606 --hand-shapes $S --workers "$WORKERS" \
    --view desk --mesh-prob 0.5 --object-prob 0.4 --near-object-prob 0.5 --second-hand-prob 0.15 \
    --sensor all --sensor-camera --quiet
echo "== train $(date -u +%T) ($(( $(date +%s) - t0 )) s in)"
args=()
for d in base mesh tof stereo ego desk; do args+=(--data "synthetic:$DATA/$d"); done
hv train --config configs/mix_finetune.toml --out "$DATA/run" "${args[@]}" \
    --epochs 4 --workers "$WORKERS" --max-steps "$STEPS" --quiet 2>&1 | tail -n 40
cp "$DATA/run/best/config.json" "$DATA/run/best/model.safetensors" "$OUT/"
cp "$DATA/run/log.csv" "$OUT/train-log.csv"
echo "== score $(date -u +%T) ($(( $(date +%s) - t0 )) s in)"
"$PY" benchmarks/cross_domain.py --out "$DATA/xd" --frames "$SETFRAMES" --model "$DATA/run/best" \
    --workers "$WORKERS" | tee "$OUT/cross-domain.md"
cp "$DATA/xd/metrics.json" "$OUT/cross-domain.json"
echo "== done $(date -u +%T) ($(( $(date +%s) - t0 )) s)"
