#!/usr/bin/env bash
# Issue 14, item 4 on a lent GPU machine, as one call of the device tool (10 minutes a call): the
# paper's full system at 60^3 (refinement + pose, trained jointly: --mode joint) and the dense head
# (configs/heads.toml with the compact encoder's dense head) on the same capsule-hand frames, each
# for a fixed wall-clock share, with GPU utilisation sampled every second; both scored on the
# cross-domain suite. Frames are rendered on the fly by the data loader's workers (a render:
# source: the recipe of a 16-frame folder, new frames for every sample), nothing on disk.
#
#   run(command="bash benchmarks/device_heads.sh", timeout_s=590)
#   smoke test on a CPU: FRAMES=400 STEPS=3 SETFRAMES=2 WORKERS=2 SHARE=60 OUT=/tmp/dh bash benchmarks/device_heads.sh
#
# The device's own python3 holds torch, numpy, scipy, numba, matplotlib, pillow, tqdm and
# safetensors (/work/.library/device/KINDS.md): handvox runs from src/ without installing.
set -euo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY=${PYTHON:-python3}
OUT=${OUT:-runs/device-heads}
FRAMES=${FRAMES:-200000}    # frames a run may draw (more than it trains on: all new)
STEPS=${STEPS:-3000}        # cap on each run's steps (each also stops at its time share)
SETFRAMES=${SETFRAMES:-100} # frames per cross-domain set

WORKERS=${WORKERS:-14}
DATA=${DATA:-/tmp/heads}
S=child_7y,average_adult,large_male,slender,broad  # the training shapes (eval.protocol)
mkdir -p "$OUT" "$DATA"
hv() { "$PY" -m handvox.cli "$@"; }
t0=$(date +%s)
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu-name.csv"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 \
        >"$OUT/gpu-util.csv" 2>/dev/null &
    SMI=$!
    trap 'kill $SMI 2>/dev/null || true' EXIT
fi
echo "== recipe $(date -u +%T)"
# The capsule hand of the training shapes, structured light, third person: a 16-frame folder
# whose meta.json is the recipe. Seed 701: used by no other set (leave-one-out 401-405, mix
# 601-606, mix validation 801-806).
hv synth --out "$DATA/recipe" --frames 16 --seed 701 --hand-shapes $S --workers 1 --quiet
for run in paper-joint dense; do
    echo "== train $run $(date -u +%T) ($(( $(date +%s) - t0 )) s in)"
    if [ "$run" = dense ]; then
        printf 'base = "%s"\n[estimator.pose]\nhead = "dense"\nfc = []\ndecoder = [64, 32]\n' \
            "$PWD/configs/heads.toml" >"$DATA/dense.toml"
        set -- --config "$DATA/dense.toml"
    else
        # The paper's networks and settings (60^3 x 5 mm, Table 3a + 3b, Adam 1e-4), batch 32.
        set -- --mode joint --batch-size 32 --lr 1e-4 --val-fraction 0.05
    fi
    # A validation (and the model in last/) every 250 steps: what is kept when the time is up.
    hv train "$@" --data "render:$DATA/recipe?seed=701&frames=$FRAMES" --out "$DATA/$run" --epochs 1000 \
        --val-every 250 --max-steps "$STEPS" --workers "$WORKERS" --quiet >"$OUT/$run.log" 2>&1 &
    pid=$!
    # Each run gets SHARE seconds; a stopped run is resumable (rerun the same command).
    for _ in $(seq "${SHARE:-180}"); do kill -0 $pid 2>/dev/null || break; sleep 1; done
    kill $pid 2>/dev/null || true
    wait $pid || true
    tail -n 5 "$OUT/$run.log"
    cp "$DATA/$run/log.csv" "$OUT/$run-log.csv"
    mkdir -p "$OUT/$run"
    cp "$DATA/$run/last/config.json" "$DATA/$run/last/model.safetensors" "$OUT/$run/" || true
done
echo "== score $(date -u +%T) ($(( $(date +%s) - t0 )) s in)"
for run in paper-joint dense; do
    "$PY" benchmarks/cross_domain.py --out "$DATA/xd" --frames "$SETFRAMES" \
        --model "$DATA/$run/last" --workers "$WORKERS" | tee "$OUT/$run-cross-domain.md"
    cp "$DATA/xd/metrics.json" "$OUT/$run-cross-domain.json"
done
"$PY" - "$OUT" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in ("paper-joint", "dense"):
    rows = list(csv.DictReader(open(out / f"{run}-log.csv")))
    steps = [r for r in rows if r["step"] and r["time_s"]]
    a, b = steps[0], steps[-1]
    rate = (int(b["step"]) - int(a["step"])) * 32 / max(float(b["time_s"]) - float(a["time_s"]), 1e-9)
    print(f"{run}: {b['step']} steps, {rate:.0f} samples/s, last validation {b['val_mm'] or '-'} mm")
util = out / "gpu-util.csv"
if util.is_file():
    u = [float(r[1].split()[0]) for r in csv.reader(open(util)) if len(r) > 1 and r[1].strip()[:1].isdigit()]
    if u:
        print(f"GPU utilisation: mean {sum(u) / len(u):.0f} % over {len(u)} samples")
PY
echo "== done $(date -u +%T) ($(( $(date +%s) - t0 )) s)"
