#!/usr/bin/env bash
# The capsule-hand model: handvox's shipped model until the randomised-mix retrain (stages 1-3 of
# docs/model-card.md, trained on the capsule hand, structured light and no objects only), taken
# from git history. The mix run and the leave-one-out runs start from it (configs/mix_finetune.toml,
# configs/loo_finetune.toml: init = "runs/capsule-model"), so that each run's factors are the ones
# it was given; the shipped model saw them all.
#
#   bash benchmarks/capsule_model.sh [OUT]     (default runs/capsule-model)
set -euo pipefail
OUT=${1:-runs/capsule-model}
REV=83dfae0  # the last commit that shipped it
mkdir -p "$OUT"
for f in config.json model.safetensors; do
    git show "$REV:src/handvox/data/default_model/$f" >"$OUT/$f.tmp"
    mv "$OUT/$f.tmp" "$OUT/$f"
done
echo "capsule-hand model in $OUT"
