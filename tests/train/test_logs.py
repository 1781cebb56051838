"""What a run reports: running means of the training losses and log.csv."""

from __future__ import annotations

import csv

import pytest
import torch

from handvox.train.distributed import Dist
from handvox.train.logs import LOG_FIELDS, RunningMeans, write_log


def test_running_means():
    m = RunningMeans()
    assert m.means("pose", 0.0) == {"train_loss": None, "train_mm": None, "train_tsdf": None}
    m.add(4, loss=0.5, mm=40.0)  # mm: the batch's sum
    m.add(2, loss=2.0, mm=50.0, tsdf=0.3)
    assert (m.loss, m.mm, m.tsdf, m.samples) == (6.0, 90.0, 0.6, 6)
    assert m.summed(Dist(), torch.device("cpu")) == m  # one process: its own sums
    assert m.means("joint", 1.0) == pytest.approx(
        {"train_loss": 1.0, "train_mm": 15.0, "train_tsdf": 0.1}
    )
    means = m.means("refine", 1.0)  # no pose net: no joint error
    assert means["train_mm"] is None and means["train_tsdf"] == pytest.approx(0.1)
    assert m.means("pose", 0.0)["train_tsdf"] is None


def test_log_csv_columns_and_empty_cells(tmp_path):
    rows = [
        {"epoch": 0, "step": 0, "train_loss": None, "val_mm": 61.123456789, "lr": 1e-3},
        {"epoch": 0.5, "step": 7, "train_loss": float("nan"), "val_mm": 20.0, "time_s": 3.5},
    ]
    write_log(tmp_path / "log.csv", rows)
    with open(tmp_path / "log.csv") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == list(LOG_FIELDS)
    assert (read[0]["val_mm"], read[0]["train_loss"], read[0]["lr"]) == ("61.1235", "", "0.001")
    assert read[1]["step"] == "7" and read[1]["train_loss"] == "" and read[1]["time_s"] == "3.5"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # written atomically
