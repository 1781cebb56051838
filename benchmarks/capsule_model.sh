#!/usr/bin/env bash
# The capsule-hand model: handvox's shipped model until the randomised-mix retrain (stages 1-3 of
# docs/model-card.md, trained on the capsule hand, structured light and no objects only), taken
# from git history. The mix run and the leave-one-out runs start from it (configs/mix_finetune.toml,
# configs/loo_finetune.toml: init = "runs/capsule-model"), so that each run's factors are the ones
# it was given; the shipped model saw them all.
#
#   bash benchmarks/capsule_model.sh [OUT]     (default runs/capsule-model)
set -euo pipefail
# 83dfae0: the last commit that shipped it
exec bash "$(dirname "$0")/model_from_git.sh" 83dfae0 "${1:-runs/capsule-model}"
