"""What a run reports: the running means of its training losses (:class:`RunningMeans`),
``log.csv`` (:func:`write_log`, one row per validation), ``curves.png`` (:func:`plot_curves`),
progress bars and the closing line."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from handvox.atomic import atomic_path, write_text
from handvox.train.distributed import Dist

LOG_FIELDS = (
    "epoch", "step", "train_loss", "train_mm", "train_tsdf", "val_mm", "val_pct20", "val_pct40",
    "val_pct50", "val_tsdf", "val_tsdf_raw", "lr", "time_s",
)  # fmt: skip


@dataclass
class RunningMeans:
    """Sums over the training samples since the last log row: of the loss, the joint error
    (mm) and the TSDF L2, and the number of samples."""

    loss: float = 0.0
    mm: float = 0.0
    tsdf: float = 0.0
    samples: float = 0.0

    def add(self, n: int, loss: float, mm: float = 0.0, tsdf: float = 0.0) -> None:
        """A batch of ``n`` samples: its mean ``loss`` and ``tsdf``, its summed ``mm``."""
        self.loss += loss * n
        self.mm += mm
        self.tsdf += tsdf * n
        self.samples += n

    def summed(self, ctx: Dist, device: torch.device) -> RunningMeans:
        """The sums of all processes."""
        return RunningMeans(*ctx.sum(list(dataclasses.astuple(self)), device))

    def means(self, mode: str, tsdf_weight: float) -> dict[str, float | None]:
        """The log row's ``train_*`` columns (None where the mode has no such loss)."""
        n = self.samples
        return {
            "train_loss": self.loss / n if n else None,
            "train_mm": self.mm / n if n and mode != "refine" else None,
            "train_tsdf": self.tsdf / n if n and tsdf_weight > 0 else None,
        }

    def postfix(self, mode: str) -> str:
        """The progress bar's: mean loss (and joint error) so far."""
        if not self.samples:
            return ""
        s = f"loss {self.loss / self.samples:.4g}"
        if mode != "refine":
            s += f" {self.mm / self.samples:.1f} mm"
        return s


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """``log.csv``: one row per validation (columns :data:`LOG_FIELDS`, empty when n/a)."""

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    lines = [",".join(LOG_FIELDS)]
    lines += [",".join(fmt(r.get(k)) for k in LOG_FIELDS) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def plot_curves(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """``curves.png``: training loss and validation error against epochs."""
    ep = [r["epoch"] for r in rows]

    def col(k: str) -> list[float]:
        return [np.nan if r.get(k) is None else r[k] for r in rows]

    # matplotlib's object API, not pyplot: no global backend or figure registry to manage.
    fig = Figure(figsize=(11, 4.2))
    a, b = fig.subplots(1, 2)
    a.plot(ep, col("train_loss"), "o-", label="train loss")
    if any(np.isfinite(col("val_tsdf"))):
        a.plot(ep, col("val_tsdf"), "s-", label="val TSDF L2")
        a.plot(ep, col("val_tsdf_raw"), "k:", label="val TSDF L2, raw input")
    if any(np.isfinite(col("train_tsdf"))):
        a.plot(ep, col("train_tsdf"), "^--", label="train TSDF L2")
    a.set(xlabel="epoch", ylabel="loss (MSE)", yscale="log", title="loss")
    a.grid(alpha=0.3)
    a.legend()
    if any(np.isfinite(col("val_mm"))):
        b.plot(ep, col("train_mm"), "o--", label="train (augmented)")
        b.plot(ep, col("val_mm"), "s-", label="validation")
        b.set(xlabel="epoch", ylabel="mean joint error (mm)", title="joint error")
        b.legend()
    else:
        b.text(0.5, 0.5, "no pose net trained in this mode", ha="center", va="center")
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def progress_bar(iterable=None, *, show: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, redrawn twice a second on a terminal and every 30 s in a log file."""
    interval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, disable=not show, mininterval=interval, dynamic_ncols=True, **kwargs)


def say(msg: str) -> None:
    """A line on stderr that keeps apart from a progress bar being drawn."""
    tqdm.write(msg, file=sys.stderr)


def best_summary(best: dict[str, float]) -> str:
    """The closing line's account of the best validation."""
    if "val_mm" in best:
        pct = "/".join(f"{best[f'val_pct{t}']:.1f}" for t in (20, 40, 50))
        msg = f"best validation error {best['val_mm']:.2f} mm (20/40/50 mm: {pct} %)"
    elif "val_tsdf" in best:
        msg = f"best validation TSDF L2 {best['val_tsdf']:.5f}"
    else:
        msg = "no validation"
    return msg + (f" at epoch {best['epoch']:g}" if best else "")
