"""The toy training set of the train tests: a quarter-size NYU camera keeps images,
segmentation and TSDFs cheap; tiny estimators (tests.tiny) keep the networks so."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import load_file

from handvox.camera import Camera
from handvox.io.datasets import DatasetSpec
from handvox.train.config import TrainConfig
from tests.tiny import tiny_config

CAMERA = Camera.from_string("147,147,80,60,160,120")
FRAMES = 160  # toy_config: 40 validation frames (4 blocks of 10), 120 training: 15 steps an epoch


def toy_config(root: Path, refine: bool = False, dropout: float = 0.0, **kw) -> TrainConfig:
    """A TrainConfig of ``root`` (a toy dataset): tiny canonical-21 networks (16^3, FC 64),
    3 epochs of batches of 8 at lr 1e-3, no workers, no progress bar; ``kw`` overrides."""
    est = tiny_config("canonical21", refine=refine, fc=(64,), dropout=dropout)
    base = dict(data=(DatasetSpec("synthetic", str(root)),), estimator=est, epochs=3,
                batch_size=8, lr=1e-3, num_workers=0, val_fraction=0.2, val_block=10,
                progress=False)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))
