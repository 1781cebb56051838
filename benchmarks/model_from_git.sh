#!/usr/bin/env bash
# A model handvox shipped once, taken from git history: the model folder as commit REV held it.
# Runs that continue a model shipped before (configs/*.toml with init = "runs/...") start from it.
#
#   bash benchmarks/model_from_git.sh REV OUT
set -euo pipefail
REV=$1
OUT=$2
mkdir -p "$OUT"
for f in config.json model.safetensors; do
    git show "$REV:src/handvox/data/default_model/$f" >"$OUT/$f.tmp"
    mv "$OUT/$f.tmp" "$OUT/$f"
done
echo "the model of $REV in $OUT"
