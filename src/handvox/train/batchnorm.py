"""Batch-norm statistics of an averaged model, recomputed on its training data.

Averaging weights (``handvox average``, :func:`handvox.estimator.weights.average_models`)
averages the batch-norm running means and variances with them, but the mean of several models'
statistics is not the statistics of the mean model's activations: SWA (Izmailov et al., 2018)
recomputes them with one pass over the training data, which is what
``torch.optim.swa_utils.update_bn`` does and what this module feeds it: the run's own training
batches (its sources, scan cache, split and augmentation, as ``handvox train`` draws them).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

from handvox.errors import HandvoxError
from handvox.estimator.weights import load_model, save_model
from handvox.train.config import load_config
from handvox.train.data import make_loaders, prepare_frames
from handvox.train.distributed import Dist
from handvox.train.trainer import _Model


def recompute_batch_norm(
    model_dir: str | Path, run_dir: str | Path, batches: int = 100, seed_epoch: int = 0
) -> int:
    """Replace the batch-norm statistics of the model in ``model_dir`` by those of its
    activations over ``batches`` training batches of the run in ``run_dir`` (its
    ``train_config.json``; the frames as that run scanned them, in ``run_dir/scan``), epoch
    ``seed_epoch``'s order; rewrite the folder atomically, with ``meta["batch_norm"]`` saying
    where they came from. Returns the number of batches used.

    Raises:
        HandvoxError: ``run_dir`` holds no ``train_config.json``, or ``batches`` < 1.
    """
    run_dir, model_dir = Path(run_dir), Path(model_dir)
    if batches < 1:
        raise HandvoxError("batch-norm statistics need at least one batch")
    config_file = run_dir / "train_config.json"
    if not config_file.is_file():
        raise HandvoxError(f"{run_dir}: no train_config.json (not a handvox train run folder)")
    cfg = replace(load_config(config_file), num_workers=0, progress=False)
    model = load_model(model_dir)
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for net in (model.pose_net, model.refine_net) if net is not None
               for m in net.modules()):  # fmt: skip
        return 0
    ctx = Dist()
    frames = prepare_frames(cfg, model.config, run_dir, ctx)
    loaders = make_loaders(cfg, frames, ctx, torch.device("cpu"))
    loaders.batches.set_epoch(seed_epoch, 0)
    net = _Model(model.pose_net, model.refine_net)
    volumes = [b["volume"] for b in itertools.islice(loaders.train, batches)]
    with torch.no_grad():
        update_bn(volumes, net)
    net.eval()
    meta = {**model.meta, "batch_norm": {"recomputed_on": str(run_dir), "batches": len(volumes),
                                         "batch_size": cfg.batch_size}}  # fmt: skip
    save_model(model_dir, model.config, model.pose_net, model.refine_net, meta)
    return len(volumes)
