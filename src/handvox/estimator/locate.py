"""The learned hand locator: which pixels of a depth image are the hand, and where its centre is.

The depth-only segmenter (:mod:`handvox.estimator.segment`) takes the hand for an end of the
nearest sizeable object. That rule fails in the scenes users have: an object held in the hand or
nearer than it, a forearm entering from the lower edge of a head-mounted camera, a table under the
hand, a second hand. The locator learns the hand from rendered scenes of all those kinds instead
(:mod:`handvox.train.locator`): a small 2-D encoder-decoder over the depth image sampled on a grid
about :data:`GRID_WIDTH` cells across, with three outputs per output cell (every
:data:`OUT_STRIDE` grid cells):

- ``heat``: logits of a softmax over the image: where the centre (the mean of the 21 joints) lies.
  One hand a frame, so one distribution; its peak mass is the locator's confidence.
- ``mask``: logit that the cell shows the hand or its own forearm (not an object, a second hand,
  the body, a table).
- ``depth``: the centre's depth as an offset (per 100 mm) from the mean valid depth around the
  cell: the network sees depth, so the offset is what it learns.

The encoding of targets and the decoding of outputs live here together (:func:`encode_targets`,
:func:`decode`), so that training and inference cannot disagree on the grid's geometry. Grid
cell ``(r, c)`` is the image pixel ``(r * s, c * s)``; output cell ``(i, k)`` covers grid cells
``2i .. 2i + 1`` and so is centred on grid coordinate ``2i + 0.5``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numba
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scipy import ndimage
from torch import Tensor, nn
from torch.nn import functional as F

from handvox.atomic import atomic_path, write_text
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.estimator.cpu import frozen_for_cpu
from handvox.estimator.segment import (
    _ARM_SHELL_MM,
    _EIGHT,
    Segmentation,
    SegmentConfig,
    _check,
    _fill_small_holes,
    _miss,
    _select,
    segment_hand,
)

GRID_WIDTH = 160  # cells across: ~4 px of a 640-wide frame, a finger (~15 mm) stays resolved
OUT_STRIDE = 2  # output cells per grid cell, each way
_PAD = 8  # the encoder halves three times
_DEPTH_SCALE_MM = 100.0  # the depth head's unit
_REF_KERNEL = 7  # grid cells around an output cell whose valid depths give its reference depth
HEAT_SIGMA = 1.0  # output cells: the centre's target spread


def grid_stride(width: int, grid_width: int = GRID_WIDTH) -> int:
    """Image pixels per grid cell for an image ``width`` pixels wide, on a grid about
    ``grid_width`` cells across (a locator's own: :attr:`LocatorNet.grid_width`)."""
    return max(1, round(width / grid_width))


def locator_input(depth: Tensor, stride: int, far_mm: float, min_depth_mm: float) -> Tensor:
    """``(B, H, W)`` float mm -> ``(B, 2, h, w)`` network input: depth in metres less one (0 where
    no reading) and validity, sampled every ``stride`` pixels and padded with "no reading" to a
    multiple of 8 cells."""
    d = depth[:, ::stride, ::stride].float()
    b, h, w = d.shape
    valid = torch.isfinite(d) & (d > min_depth_mm) & (d < far_mm)
    x = d.new_zeros(b, 2, h + (-h) % _PAD, w + (-w) % _PAD)  # the padding: no reading
    x[:, 0, :h, :w] = torch.where(valid, d / 1000.0 - 1.0, 0.0)
    x[:, 1, :h, :w] = valid
    return x


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LocatorNet(nn.Module):
    """``(B, 2, h, w)`` :func:`locator_input` -> ``(B, 3, h / 2, w / 2)``: heat logits, mask logits,
    depth offsets. Encoder to 1/8 of the grid with dilated convolutions there (a view of ~30
    cells: the hand and what touches it), decoder back to 1/2 with skips. ``grid_width``: the
    grid it reads (:func:`grid_stride`), fixed by the frames it was trained on."""

    def __init__(self, width: int = 16, grid_width: int = GRID_WIDTH) -> None:
        super().__init__()
        self.width, self.grid_width = width, grid_width
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1 = nn.Sequential(_block(2, c1, 2), _block(c1, c1))
        self.enc2 = nn.Sequential(_block(c1, c2, 2), _block(c2, c2))
        self.enc3 = nn.Sequential(_block(c2, c3, 2), _block(c3, c3, 1, 2), _block(c3, c3, 1, 4))
        self.dec2 = _block(c3 + c2, c2)
        self.dec1 = _block(c2 + c1, c1)
        self.head = nn.Conv2d(c1, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:]), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], 1))
        return self.head(d1)


def reference_depth(x: Tensor, cells: tuple[int, int, int, int] | None = None) -> Tensor:
    """``(B, 2, h, w)`` input -> ``(B, h / 2, w / 2)`` mm: the mean valid depth around each
    output cell (the depth head's zero), 1000 mm where there is none. ``cells``: only the output
    cells ``(r0, r1, c0, c1)`` (ends exclusive), ``(B, r1 - r0, c1 - c0)``, each the same number
    as on the whole grid (the same pooling windows, zeros past the grid's edge as its padding)."""
    d, valid = (x[:, 0] + 1.0) * 1000.0 * x[:, 1], x[:, 1]
    both = torch.stack([d, valid], 1)
    pad = _REF_KERNEL // 2
    if cells is None:
        pooled = F.avg_pool2d(both, _REF_KERNEL, OUT_STRIDE, pad)
    else:
        r0, r1, c0, c1 = cells
        h, w = both.shape[-2:]
        y0, y1 = OUT_STRIDE * r0 - pad, OUT_STRIDE * (r1 - 1) + pad + 1
        x0, x1 = OUT_STRIDE * c0 - pad, OUT_STRIDE * (c1 - 1) + pad + 1
        crop = both[..., max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
        crop = F.pad(crop, (max(-x0, 0), max(x1 - w, 0), max(-y0, 0), max(y1 - h, 0)))
        pooled = F.avg_pool2d(crop, _REF_KERNEL, OUT_STRIDE)
    total, count = pooled[:, 0], pooled[:, 1]
    return torch.where(count > 0, total / count.clamp_min(1e-6), torch.full_like(total, 1000.0))


def _out_coord(grid_coord: Tensor) -> Tensor:
    return (grid_coord - 0.5) / OUT_STRIDE


def encode_targets(centre_grid: Tensor, hand_grid: Tensor, out_shape: tuple[int, int]) -> dict:
    """Training targets of a batch.

    Args:
        centre_grid: ``(B, 3)``: the centre's column and row on the grid, and its depth (mm).
        hand_grid: ``(B, h, w)`` bool: grid cells showing the hand or its own forearm.
        out_shape: the network output's ``(h / 2, w / 2)``.
    Returns:
        ``heat`` ``(B, h2, w2)`` (a distribution: sums to 1), ``mask`` ``(B, h2, w2)`` float
        (a cell is hand when any of its grid cells is), ``depth`` ``(B,)`` mm.
    """
    h2, w2 = out_shape
    b = centre_grid.shape[0]
    rows = torch.arange(h2, dtype=torch.float32, device=centre_grid.device)
    cols = torch.arange(w2, dtype=torch.float32, device=centre_grid.device)
    cu, cv = _out_coord(centre_grid[:, 0]), _out_coord(centre_grid[:, 1])
    g = torch.exp(
        -(
            (cols[None, None, :] - cu[:, None, None]) ** 2
            + (rows[None, :, None] - cv[:, None, None]) ** 2
        )
        / (2 * HEAT_SIGMA**2)
    )
    heat = g / g.sum((1, 2), keepdim=True).clamp_min(1e-12)
    m = hand_grid.float()[:, None]
    m = F.pad(m, (0, w2 * OUT_STRIDE - m.shape[-1], 0, h2 * OUT_STRIDE - m.shape[-2]))
    mask = F.max_pool2d(m, OUT_STRIDE)[:, 0]
    return {"heat": heat.reshape(b, h2, w2), "mask": mask, "depth": centre_grid[:, 2]}


def soft_targets(out: Tensor, x: Tensor) -> dict:
    """Another locator's output ``out`` on input ``x`` as training targets, in
    :func:`encode_targets`'s form: its centre distribution, its mask's probabilities and its
    decoded depth (mm). What a fine-tune keeps of the locator it starts from, on the scenes that
    one was trained on (learning without forgetting, Li and Hoiem 2016)."""
    b, _, h2, w2 = out.shape
    heat = F.softmax(out[:, 0].reshape(b, -1), 1).reshape(b, h2, w2)
    return {"heat": heat, "mask": torch.sigmoid(out[:, 1]), "depth": decode(out, x).centre[:, 2]}


def locator_loss(out: Tensor, x: Tensor, target: dict) -> dict[str, Tensor]:
    """The three losses of a batch: cross-entropy of the centre's distribution, the mask's
    binary cross-entropy, and the depth's L1 (per 100 mm) weighted by the centre's distribution."""
    b = out.shape[0]
    logp = F.log_softmax(out[:, 0].reshape(b, -1), 1)
    heat = target["heat"].reshape(b, -1)
    loss_heat = -(heat * logp).sum(1).mean()
    loss_mask = F.binary_cross_entropy_with_logits(out[:, 1], target["mask"])
    z = reference_depth(x) + _DEPTH_SCALE_MM * out[:, 2]
    err = (z - target["depth"][:, None, None]).abs() / _DEPTH_SCALE_MM
    loss_depth = (heat.reshape(err.shape) * err).sum((1, 2)).mean()
    return {"heat": loss_heat, "mask": loss_mask, "depth": loss_depth}


@dataclass
class Located:
    """:func:`decode` of a batch: ``centre`` ``(B, 3)`` grid column, row and depth (mm);
    ``confidence`` ``(B,)``: the heat mass within ``HEAT_SIGMA`` * 2 cells of the peak;
    ``mask`` ``(B, h2, w2)``: the hand probability per output cell; ``heat`` ``(B, h2, w2)``:
    the centre's distribution, and ``out``, ``x``: the network's output and input, kept for
    :func:`second_peak`."""

    centre: Tensor
    confidence: Tensor
    mask: Tensor
    heat: Tensor
    out: Tensor
    x: Tensor


# A sequence's last hand steers which peak is taken (decode's ``near``): a Gaussian of this
# spread about where the hand was, over a floor, so that a peak far from it needs this many times
# the heat to win (the hand moved, or the last one was wrong) instead of never winning.
NEAR_SIGMA_MM = 100.0  # a hand at 3 m/s moves 100 mm between frames at 30 frames/s
NEAR_FLOOR = 0.1


def decode(out: Tensor, x: Tensor, window: int = 3, near: Tensor | None = None) -> Located:
    """Network output ``(B, 3, h2, w2)`` of input ``x`` -> :class:`Located`: the centre is the
    distribution's mean within ``window`` cells of its peak (sub-cell, robust to a second mode),
    its depth the depth head's mean there under the same weights.

    ``near``: ``(B, 3)`` output-cell column, row and spread (cells) of a prior on the centre (a
    sequence's last hand; NaN rows: none): the peak is that of the heat times
    ``NEAR_FLOOR + (1 - NEAR_FLOOR) * gaussian``; the mean about it is the heat's own."""
    b, _, h2, w2 = out.shape
    p = F.softmax(out[:, 0].reshape(b, -1), 1).reshape(b, h2, w2)
    choose = p
    if near is not None:
        near = near.to(p)
        rr = torch.arange(h2, device=p.device, dtype=p.dtype)[None, :, None]
        cc = torch.arange(w2, device=p.device, dtype=p.dtype)[None, None, :]
        c0, r0, sd = (near[:, k, None, None] for k in range(3))
        g = torch.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * sd**2))
        g = torch.nan_to_num(NEAR_FLOOR + (1 - NEAR_FLOOR) * g, nan=1.0)
        choose = p * g
    peak = choose.reshape(b, -1).argmax(1).tolist()
    centre = torch.empty(b, 3, dtype=p.dtype, device=p.device)
    total = torch.empty(b, dtype=p.dtype, device=p.device)
    for i, k in enumerate(peak):
        centre[i], total[i] = _about_peak(p[i], out[i : i + 1], x[i : i + 1], k, window)
    return Located(centre, total, torch.sigmoid(out[:, 1]), p, out, x)


def _about_peak(p: Tensor, out: Tensor, x: Tensor, k: int, window: int) -> tuple[Tensor, Tensor]:
    """One frame's heat ``p`` ``(h2, w2)`` about its flat cell ``k``: the centre ``(3,)`` (grid
    column, row, depth mm) and the heat mass within ``window`` cells (:func:`decode`)."""
    h2, w2 = p.shape
    # the peak's window only: the depth head's reference is pooled there alone
    r0, r1 = max(k // w2 - window, 0), min(k // w2 + window + 1, h2)
    c0, c1 = max(k % w2 - window, 0), min(k % w2 + window + 1, w2)
    wgt = p[r0:r1, c0:c1]
    z = reference_depth(x, (r0, r1, c0, c1))[0] + _DEPTH_SCALE_MM * out[0, 2, r0:r1, c0:c1]
    rows = torch.arange(r0, r1, device=p.device, dtype=p.dtype)[:, None]
    cols = torch.arange(c0, c1, device=p.device, dtype=p.dtype)[None, :]
    s = wgt.sum()
    r, c = (wgt * rows).sum() / s, (wgt * cols).sum() / s
    return torch.stack([c * OUT_STRIDE + 0.5, r * OUT_STRIDE + 0.5, (wgt * z).sum() / s]), s


def second_peak(found: Located, apart_cells: float, window: int = 3) -> tuple[Tensor, float]:
    """The first frame of ``found``: the centre ``(3,)`` (as :class:`Located`'s) and heat mass
    of the heat's strongest peak more than ``apart_cells`` output cells from its centre (the mass
    0 where the heat holds none)."""
    p = found.heat[0]
    h2, w2 = p.shape
    col, row = (found.centre[0, :2] - 0.5) / OUT_STRIDE
    rr = torch.arange(h2, dtype=p.dtype)[:, None]
    cc = torch.arange(w2, dtype=p.dtype)[None, :]
    away = torch.where((rr - row) ** 2 + (cc - col) ** 2 > apart_cells**2, p, 0.0)
    k = int(away.reshape(-1).argmax())
    if float(away.reshape(-1)[k]) <= 0.0:
        return found.centre[0], 0.0
    centre, mass = _about_peak(away, found.out[:1], found.x[:1], k, window)
    return centre, float(mass)


# The shipped locator (trained by handvox.train.locator; its config.json says how).
DEFAULT_LOCATOR_DIR = Path(__file__).resolve().parents[1] / "data" / "locator"


def save_locator(net: LocatorNet, folder: str | Path, info: dict) -> Path:
    """``folder/model.safetensors`` and ``folder/config.json`` (``width``, ``grid_width`` and
    ``info``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    write_text(
        folder / "config.json",
        json.dumps({"width": net.width, "grid_width": net.grid_width, **info}, indent=2) + "\n",
    )
    return folder


def load_locator(folder: str | Path = DEFAULT_LOCATOR_DIR) -> LocatorNet:
    """A :class:`LocatorNet` from ``folder`` (:func:`save_locator`), in eval mode."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        # locators from before grid_width was a choice read the default grid
        net = LocatorNet(int(cfg["width"]), int(cfg.get("grid_width", GRID_WIDTH)))
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise DataError(folder, f"not a hand locator folder: {e}") from e
    return net.eval()


def locator_folder(config: SegmentConfig) -> Path:
    """The locator folder ``config`` names (``config.locator``; "": the shipped one)."""
    return Path(config.locator) if config.locator else DEFAULT_LOCATOR_DIR


@lru_cache(maxsize=4)
def locator_id(folder: str | Path = DEFAULT_LOCATOR_DIR) -> str:
    """A short hash of a locator's weights (the shipped one's by default; keys caches of its
    results)."""
    path = Path(folder) / "model.safetensors"
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    except OSError as e:
        raise DataError(Path(folder), f"not a hand locator folder: {e}") from None


class _Frozen(nn.Module):
    """A locator as inference runs it (:func:`frozen_for_cpu`), with the grid it reads."""

    def __init__(self, net: LocatorNet) -> None:
        super().__init__()
        self.net = frozen_for_cpu(net, torch.zeros(1, 2, 120, 160))
        self.grid_width = net.grid_width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@lru_cache(maxsize=4)
def _shipped(folder: str) -> nn.Module:
    """The locator of ``folder`` as inference runs it."""
    return _Frozen(load_locator(folder))


# Tracking (a sequence's last hand given): the locator reads a window of the grid around it
# instead of the whole frame, the hand's ball (``radius_mm``) plus this much motion each way;
# where the hand is not clearly in the window (its peak at the window's edge, or no cell near
# the peak called hand), the whole frame is read as without a prior's window.
TRACK_MARGIN_MM = 90.0  # 2.7 m/s at 30 frames/s; the centre's jitter is ~2 mm
_TRACK_EDGE_CELLS = 2  # output cells: a peak this near a window edge may belong outside it
# A window over this share of the grid saves too little: the whole frame is read (0: always).
TRACK_MAX_AREA = 0.6


def _cube_box(camera: Camera, xyz: np.ndarray, half_mm: float, shape: tuple[int, int]):
    """Pixel box ``(y0, y1, x0, x1)`` (ends exclusive, clipped to ``shape``) holding the image of
    the cube of half-width ``half_mm`` about ``xyz`` (so of every point within ``half_mm`` of it);
    None when the cube reaches behind the camera."""
    if xyz[2] - half_mm <= 1.0:
        return None
    u, v, _ = camera.xyz_to_uvd(xyz + half_mm * _CORNERS).T
    y0, y1 = max(0, int(np.floor(v.min()))), min(shape[0], int(np.ceil(v.max())) + 1)
    x0, x1 = max(0, int(np.floor(u.min()))), min(shape[1], int(np.ceil(u.max())) + 1)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


_CORNERS = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T.astype(np.float64)


def _read(net: nn.Module, depth: Tensor, s: int, cfg: SegmentConfig, cells: tuple, near):
    """The locator on the grid window ``cells`` ``(r0, r1, c0, c1)`` (starts multiples of
    :data:`_PAD`, so its strided convolutions sample the grid as on the whole frame): the
    :class:`Located` in the window's grid coordinates; None where it holds no reading.
    ``near``: ``(col, row, spread)`` of the prior in whole-frame output cells, or None."""
    r0, r1, c0, c1 = cells
    x = locator_input(depth[None, r0 * s : r1 * s, c0 * s : c1 * s], s, cfg.far_mm,
                      cfg.min_depth_mm)  # fmt: skip
    if not bool(x[:, 1].any()):
        return None
    if near is not None:
        near = torch.tensor([[near[0] - c0 / OUT_STRIDE, near[1] - r0 / OUT_STRIDE, near[2]]])
    return decode(net(x), x, near=near)


def _holds_hand(found: Located, cells: tuple, grid: tuple[int, int]) -> bool:
    """Whether a window's reading can stand for the whole frame's: the peak is not at an edge
    of the window inside the frame, and the locator calls some cell about it hand."""
    r0, r1, c0, c1 = cells
    col, row = (found.centre[0, :2].numpy() - 0.5) / OUT_STRIDE  # output cells in the window
    h2, w2 = found.mask.shape[-2:]
    e = _TRACK_EDGE_CELLS
    if (col < e and c0 > 0) or (row < e and r0 > 0):
        return False
    if (col > w2 - 1 - e and c1 < grid[1]) or (row > h2 - 1 - e and r1 < grid[0]):
        return False
    i, k = int(round(row)), int(round(col))
    about = found.mask[0, max(0, i - 2) : i + 3, max(0, k - 2) : k + 3]
    return bool(about.numel()) and float(about.max()) > 0.5


# Carrying (a HandTrack given): between two reads of the network, the hand cells of the last read
# are moved with the hand's image and only the full-resolution steps run. The carried centre is the
# kept points' mean plus the read's offset from it (the joints' mean lies behind the visible
# surface); a frame whose carried hand lost this share of the read's pixels, or whose centre lies
# this far from where the hand's motion would put it (the cells took in something else, or lost
# the hand), is read by the network after all.
_CARRY_MIN_SHARE = 0.6
_CARRY_MAX_DEVIATION_MM = 20.0


@dataclass
class HandTrack:
    """A sequence's hand, carried from frame to frame so that the locator's network reads only
    every ``every``-th frame (:func:`locate_hand`'s ``track``; 1: every frame). One per stream,
    owned by the caller and updated in place by each call; frames of one size and camera.

    Attributes:
        every: frames per network read.
        reads, carried: frames the network read, frames carried (for reports).
    """

    every: int = 1
    reads: int = 0
    carried: int = 0
    _state: tuple | None = None  # (shape, cells, (oy, ox, k), uv at the read, offset, pixels)
    _com: np.ndarray | None = None  # the last frame's centre
    _mean: np.ndarray | None = None  # the last frame's kept points' mean
    _step: np.ndarray = field(default_factory=lambda: np.zeros(3))  # its motion a frame
    _age: int = 0  # frames since the read

    def __post_init__(self) -> None:
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"HandTrack.every must be a whole number >= 1, got {self.every!r}")

    def read(self, camera: Camera, shape, cells, grid, com: np.ndarray, mean, kept: int) -> None:
        """The network's read of this frame: its hand cells ``cells`` (``grid``: ``(oy, ox, k)``,
        :func:`_pixels_about`), centre ``com``, and its kept pixels' points' ``mean`` and number
        ``kept``, carried from here."""
        if self._mean is None:
            self._step = np.zeros(3)
        # else the last carried motion goes on: the mean of other cells' pixels is no measure of it
        uv = camera.xyz_to_uvd(com)[:2]
        self._state = (shape, cells, grid, uv, com - mean, kept)
        self._com, self._mean, self._age = com, mean, 0
        self.reads += 1

    def forget(self) -> None:
        """No hand in this frame: the next one is read."""
        self._state, self._com, self._mean = None, None, None

    def carry(self, depth: np.ndarray, camera: Camera, cfg: SegmentConfig) -> Segmentation | None:
        """This frame's hand from the last read's cells (no network), or None where the next
        read is due or the carried hand does not hold."""
        if self._state is None or self._age + 1 >= self.every or depth.shape != self._state[0]:
            return None
        _, cells, (oy, ox, k), uv0, offset, pixels = self._state
        # Where the hand is now if it moves on as it did (the visible surface's motion, smoother
        # than the network's centre): cells left one frame behind lose a moving hand's front.
        guess = self._com + self._step
        du, dv = np.rint(camera.xyz_to_uvd(guess)[:2] - uv0).astype(int)
        picked = _pixels_about(depth, camera, cfg, guess, cells, (oy + dv, ox + du, k))
        if isinstance(picked, str) or picked[2] < _CARRY_MIN_SHARE * pixels:
            self._step = np.zeros(3)  # the motion is not known: the read starts from rest
            return None
        mask, mean, _ = picked
        com = mean + offset
        if np.linalg.norm(com - guess) > _CARRY_MAX_DEVIATION_MM:
            self._step = np.zeros(3)
            return None
        self._step, self._com, self._mean = mean - self._mean, com, mean
        self._age += 1
        self.carried += 1
        return Segmentation(mask, com, camera.xyz_to_uvd(com), True, "")


def locate_hand(
    depth: np.ndarray,
    camera: Camera,
    config: SegmentConfig,
    net: nn.Module | None = None,
    near_xyz: np.ndarray | None = None,
    window: bool = True,
    track: HandTrack | None = None,
) -> Segmentation:
    """The hand's centre and mask by the learned locator (``net``; default: the one ``config``
    names, :func:`locator_folder`).

    The centre is the located joint mean (no surface-to-joints shifts: the locator learned the
    joints' mean). The mask is what :func:`~handvox.estimator.segment.segment_hand` would keep
    around that centre (within ``radius_mm``; the arm, when it shows on one side, cut
    ``arm_cut_mm + finger_shift_mm`` from the centre, where the depth rule's cut lies from its
    shifted centre), among the pixels the locator calls hand or forearm and whose depth is
    within ``band_mm`` of the centre's: an object, a second hand, a table or the body in that
    ball are left out.

    Args:
        depth: ``(H, W)`` float mm; 0, NaN and values >= ``config.far_mm`` mean no reading.
        camera: intrinsics of the image (its size must be ``W x H``).
        near_xyz: ``(3,)`` mm, where the hand was in the sequence's last frame: of two
            candidates, the one near it is taken (:func:`decode`'s ``near``, spread
            :data:`NEAR_SIGMA_MM`). None or NaN: no prior.
        window: with ``near_xyz``, read only a window of the image about it
            (:data:`TRACK_MARGIN_MM`), the whole image where the hand is not clearly in it.
        track: a sequence's :class:`HandTrack`: the network reads every ``track.every``-th
            frame and the frames between carry its hand cells (:meth:`HandTrack.carry`).
    """
    depth = _check(depth, camera)
    if track is not None:
        carried = track.carry(depth, camera, config)
        if carried is not None:
            return carried
    seg = _locate(depth, camera, config, net, near_xyz, window, track)
    if track is not None and not seg.found:
        track.forget()
    return seg


def _locate(depth, camera: Camera, cfg: SegmentConfig, net, near_xyz, window: bool, track):
    """:func:`locate_hand` by the network."""
    shape = depth.shape
    net = net or _shipped(str(locator_folder(cfg)))
    s = grid_stride(shape[1], net.grid_width)
    grid = (-(-shape[0] // s), -(-shape[1] // s))  # cells of depth[::s, ::s]
    whole = (0, grid[0], 0, grid[1])
    prior = near_xyz is not None and np.isfinite(near_xyz).all() and near_xyz[2] > 0
    near, cells, found = None, whole, None
    with torch.no_grad():
        t = torch.from_numpy(depth)
        if prior:
            near_xyz = np.asarray(near_xyz, np.float64)
            u, v, z = camera.xyz_to_uvd(near_xyz)
            spread = camera.fx * NEAR_SIGMA_MM / z / (s * OUT_STRIDE)
            # output cell (i, k) is centred on grid coordinate 2i + 0.5 (module docstring)
            near = ((u / s - 0.5) / OUT_STRIDE, (v / s - 0.5) / OUT_STRIDE, spread)
            box = _cube_box(camera, near_xyz, cfg.radius_mm + TRACK_MARGIN_MM, shape)
            if window and box is not None:
                y0, y1, x0, x1 = box
                r0, c0 = y0 // s // _PAD * _PAD, x0 // s // _PAD * _PAD
                cells = (r0, min(grid[0], -(-y1 // s)), c0, min(grid[1], -(-x1 // s)))
                area = (cells[1] - r0) * (cells[3] - c0)
                if area <= TRACK_MAX_AREA * grid[0] * grid[1]:
                    found = _read(net, t, s, cfg, cells, near)
                    if found is not None and not _holds_hand(found, cells, grid):
                        found = None
        phase = (0, 0)  # pixel rows and columns before the grid's first cell
        if found is None:
            cells = whole
            if near is None and cfg.locator_phases > 1:
                found, phase = _phase_vote(net, t, camera, s, cfg)
            else:
                found = _read(net, t, s, cfg, cells, near)
        if found is None:
            return _miss(shape, f"no valid depth pixels (0, NaN and >= {cfg.far_mm:g} mm mean "
                                "no reading)")  # fmt: skip
    col, row, d = found.centre[0].double().numpy()
    oy, ox = cells[0] * s + phase[0], cells[2] * s + phase[1]
    com = camera.uvd_to_xyz(np.array([col * s + ox, row * s + oy, d]))
    # Hand cells, one output cell wider (fingers at a cell's edge), at full resolution.
    cells_hand = ndimage.binary_dilation(found.mask[0].numpy() > 0.5, _EIGHT)
    k = s * OUT_STRIDE
    picked = _pixels_about(depth, camera, cfg, com, cells_hand, (oy, ox, k))
    if isinstance(picked, str):
        return _miss(shape, picked)
    mask, mean, kept = picked
    if track is not None:
        track.read(camera, shape, cells_hand, (oy, ox, k), com, mean, kept)
    other = None
    if cfg.other_min_heat > 0 and near is None:
        apart = camera.fx * OTHER_APART_MM / com[2] / k
        centre, mass = second_peak(found, apart)
        if mass >= cfg.other_min_heat:
            col, row, d = centre.double().numpy()
            com2 = camera.uvd_to_xyz(np.array([col * s + ox, row * s + oy, d]))
            picked = _pixels_about(depth, camera, cfg, com2, cells_hand, (oy, ox, k))
            if not isinstance(picked, str):
                other = Segmentation(picked[0], com2, camera.xyz_to_uvd(com2), True, "")
    return Segmentation(mask, com, camera.xyz_to_uvd(com), True, "", other)


# A second candidate (SegmentConfig.other_min_heat) lies at least this far from the first in the
# image (at the first's depth): a hand's own centre stays within ~20 mm, another hand's lies 100+
# mm away, and a peak between would be the same hand's fingers or arm.
OTHER_APART_MM = 120.0


# Two readings of one frame at different sampling phases agree when their centres lie this near
# (a hand's centre jitters by a few mm between phases; a second candidate lies 100+ mm away).
PHASE_AGREE_MM = 50.0


def _phase_vote(net: nn.Module, depth: Tensor, camera: Camera, s: int, cfg: SegmentConfig):
    """The whole frame read at four sampling phases (the grid starting 0 or
    ``s // 2`` pixels in along each axis, the first phase ``(0, 0)``): ``(Located, (dy, dx))`` of
    the first phase's reading, unless more phases agree on another centre than on its (within
    :data:`PHASE_AGREE_MM`): then the most confident reading of those. ``(None, (0, 0))`` where
    the frame holds no reading."""
    h = s // 2
    phases = list(dict.fromkeys([(0, 0), (0, h), (h, 0), (h, h)]))  # s = 1: one phase
    xs = [locator_input(depth[None, dy:, dx:], s, cfg.far_mm, cfg.min_depth_mm)
          for dy, dx in phases]  # fmt: skip
    if all(x.shape == xs[0].shape for x in xs):  # one batch: cheaper than a call each
        outs = net(torch.cat(xs)).split(1)
    else:
        outs = [net(x) for x in xs]
    reads = []
    for (dy, dx), x, out in zip(phases, xs, outs, strict=True):
        if not bool(x[:, 1].any()):
            continue
        found = decode(out, x)
        col, row, d = found.centre[0].double().numpy()
        xyz = camera.uvd_to_xyz(np.array([col * s + dx, row * s + dy, d]))
        reads.append((found, (dy, dx), xyz, float(found.confidence[0])))
    if not reads:
        return None, (0, 0)
    xyz = np.stack([r[2] for r in reads])
    agree = (np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) < PHASE_AGREE_MM).sum(1)
    if agree[0] >= agree.max():  # the first phase's stands on a tie
        return reads[0][0], reads[0][1]
    best = max((i for i in range(len(reads)) if agree[i] == agree.max()), key=lambda i: reads[i][3])
    return reads[best][0], reads[best][1]


def _pixels_about(depth, camera: Camera, cfg: SegmentConfig, com: np.ndarray, cells_hand, grid):
    """The mask of the hand about ``com``: the pixels of the hand cells ``cells_hand`` (bool,
    ``k`` pixels a cell from pixel ``(oy, ox)``: ``grid``) within ``band_mm`` of its depth and
    within ``radius_mm`` of it, the arm cut (:func:`~handvox.estimator.segment._select`), small
    holes filled; with the kept pixels' points' mean ``(3,)`` mm and their number. A string
    (why) where too few."""
    shape = depth.shape
    # Only pixels within the arm's shell of the centre can count (_select), so only their box
    # is read at full resolution.
    box = _cube_box(camera, com, cfg.radius_mm + _ARM_SHELL_MM[1], shape)
    if box is None:
        box = (0, shape[0], 0, shape[1])
    oy, ox, k = grid
    y0, y1 = max(box[0], oy, 0), min(box[1], oy + cells_hand.shape[0] * k)
    x0, x1 = max(box[2], ox, 0), min(box[3], ox + cells_hand.shape[1] * k)
    if y0 >= y1 or x0 >= x1:
        return "hand region too small (0 px)"
    rows, cols = _hand_pixels(depth, (y0, y1, x0, x1), cells_hand, grid, com[2],
                              (cfg.band_mm, cfg.min_depth_mm, cfg.far_mm))  # fmt: skip
    if rows.size < cfg.min_pixels:
        return f"hand region too small ({rows.size} px)"
    xyz = camera.uvd_to_xyz(np.stack([cols, rows, depth[rows, cols]], -1).astype(np.float64))
    on_border = (rows <= 1) | (cols <= 1) | (rows >= shape[0] - 2) | (cols >= shape[1] - 2)
    inside = np.empty(len(xyz), bool)
    _select(xyz, on_border, com, np.zeros(3), cfg.radius_mm, cfg.arm_cut_mm + cfg.finger_shift_mm,
            cfg.min_pixels, inside)  # fmt: skip
    if inside.sum() < cfg.min_pixels:
        return f"hand region too small ({int(inside.sum())} px)"
    r, c = rows[inside], cols[inside]  # rows in order (_hand_pixels)
    mask = np.zeros(shape, bool)
    mask[r, c] = True
    mask = _fill_small_holes(mask, cfg.max_hole_px, (r[0], r[-1] + 1, c.min(), c.max() + 1))
    # the mean as a product, not of a gathered copy: it is on the carried frames' path
    return mask, inside.astype(np.float64) @ xyz / len(r), len(r)


@numba.njit(cache=True, nogil=True)
def _hand_pixels(depth, box, cells, grid, d, limits):
    """Rows and columns ``(N,)``, in row order, of the pixels of ``depth`` in ``box``
    ``(y0, y1, x0, x1)`` that are readings (``near`` < depth < ``far``) within ``band`` of ``d``
    (``limits``: ``(band, near, far)``) and whose cell of ``cells`` (bool, ``k`` pixels a cell
    from pixel ``(oy, ox)``: ``grid``) is hand. One pass that visits the hand's cells only."""
    y0, y1, x0, x1 = box
    oy, ox, k = grid
    band, near, far = limits
    rows = np.empty((y1 - y0) * (x1 - x0), np.int64)
    cols = np.empty_like(rows)
    n = 0
    c0, c1 = (x0 - ox) // k, (x1 - 1 - ox) // k
    for y in range(y0, y1):
        row = cells[(y - oy) // k]
        for c in range(c0, c1 + 1):  # cell by cell: most of the box is not hand
            if not row[c]:
                continue
            for x in range(max(x0, ox + c * k), min(x1, ox + (c + 1) * k)):
                v = depth[y, x]
                if v > near and v < far and abs(v - d) <= band:
                    rows[n], cols[n] = y, x
                    n += 1
    return rows[:n], cols[:n]


# Each way of finding the hand (SegmentConfig.method), in words: what a report says and what a
# trained model's meta records (a user of the model must find the hand the same way).
HAND_FINDERS = {
    "depth": "the depth rule (handvox.estimator.segment)",
    "learned": "the learned hand locator (handvox.estimator.locate)",
}


def hand_finder(config: SegmentConfig) -> str:
    """How ``config`` finds the hand, in words (:data:`HAND_FINDERS`; a locator other than the
    shipped one named by its folder)."""
    words = HAND_FINDERS[config.method]
    if config.method == "learned" and config.locator:
        words += f", the one in {config.locator}"
    return words


def find_hand(
    depth: np.ndarray,
    camera: Camera,
    config: SegmentConfig | None = None,
    near_xyz: np.ndarray | None = None,
    track: HandTrack | None = None,
) -> Segmentation:
    """The hand by ``config.method``: ``"depth"`` (:func:`~handvox.estimator.segment.segment_hand`,
    the nearest object's end) or ``"learned"`` (:func:`locate_hand`, the locator
    ``config.locator`` names, the shipped one by default).
    ``near_xyz``: where the hand was in a sequence's last frame, a prior the locator uses, and
    ``track`` the sequence's :class:`HandTrack` (the depth rule takes the nearest object's end
    wherever it is, and ignores both)."""
    config = config or SegmentConfig()
    if config.method == "learned":
        return locate_hand(depth, camera, config, near_xyz=near_xyz, track=track)
    return segment_hand(depth, camera, config)
