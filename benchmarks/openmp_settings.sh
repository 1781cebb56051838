#!/usr/bin/env bash
# OpenMP's waiting for inference (docs/benchmarks.md, "OpenMP's wait policy"): per setting,
# `handvox bench` on a quiet machine, `handvox live` on a recording quiet, and the same beside
# two processes that keep both cores busy (LOAD_ROUNDS times).
#
#   bash benchmarks/openmp_settings.sh RECORDING.db3 [LOAD_ROUNDS]
# (a recording: python benchmarks/live_loop.py --parts speed --out DIR writes DIR/wave-11.db3)
set -uo pipefail
REC=$1
ROUNDS=${2:-1}
B="handvox bench --model src/handvox/data/default_model --frames 100 --batch 1 --no-peak --quiet"
L="handvox live --source bag:$REC --headless --jsonl /tmp/openmp-settings.jsonl"
live() { env "$@" $L 2>&1 | tail -1 | sed 's/^handvox live: //'; }
for cfg in "PASSIVE OMP_WAIT_POLICY=PASSIVE" "default -u OMP_WAIT_POLICY" \
           "spin10k GOMP_SPINCOUNT=10000" "spin30k GOMP_SPINCOUNT=30000"; do
    set -- $cfg
    name=$1
    shift
    fps=$(env "$@" $B 2>&1 | grep "^| fast" | awk -F'|' '{print $11}')
    echo "| $name | quiet | $fps | $(live "$@") |"
    for _ in $(seq "$ROUNDS"); do
        python3 -c "while True: pass" & P1=$!
        python3 -c "while True: pass" & P2=$!
        sleep 1
        echo "| $name | two busy processes | - | $(live "$@") |"
        kill $P1 $P2
        wait $P1 $P2 2>/dev/null
    done
done
