"""Contact sheets of a synthetic dataset: what a person looks at before training on it."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from handvox.errors import DataError
from handvox.io.synthetic import SyntheticDataset
from handvox.viz.draw import render_frame, save_png


def write_preview(root: str | Path, out: str | Path | None = None, count: int = 16) -> Path:
    """A contact sheet of the first ``count`` frames present: raw depth with the canonical
    skeleton, 4 tiles a row. Default ``out``: ``root/preview.png``."""

    with warnings.catch_warnings():  # a shard's preview shows its own chunks; none is amiss
        warnings.simplefilter("ignore")
        ds = SyntheticDataset(root, load_clean=False)
    if len(ds) == 0:
        raise DataError(root, "no complete chunk to preview")
    tile, cols = 256, 4
    tiles = []
    for i in range(min(count, len(ds))):
        rec = ds[i]
        img = render_frame(rec.depth, rec.camera, rec.joint_set, gt_uvd=rec.joints_uvd,
                           size_px=tile, title=rec.frame_id)  # fmt: skip
        pad = np.zeros((tile, tile, 3), np.uint8)
        pad[: img.shape[0], : img.shape[1]] = img[:tile, :tile]
        tiles.append(pad)
    rows = math.ceil(len(tiles) / cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    sheet = np.concatenate(
        [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0
    )
    path = Path(out) if out is not None else Path(root) / "preview.png"
    save_png(path, sheet)
    return path
