"""Hand segmentation and centre of mass (COM) from a depth image alone.

Step 1 of the estimator: the volume the network sees is centred on this COM. Nothing here looks at
labels; it assumes the hand is an end of the nearest sizeable object in front of the camera (the
setting of NYU, ICVL, MSRA and HANDS17), the forearm being the rest of it.

Method:
1. Validity: a pixel is a reading if finite, deeper than ``min_depth_mm`` and nearer than
   ``far_mm`` (0 and NYU's 2001 background both mean "no reading"). Only readings nearer than
   ``max_depth_mm`` can be the hand.
2. Nearest object, on a ``stride``-subsampled grid for speed: take the nearest remaining reading,
   label (8-connected, ``scipy.ndimage.label``) the readings within ``band_mm`` behind it, and keep
   the components whose physical area (pixel footprint ``(d/fx)(d/fy)`` summed) reaches
   ``min_area_mm2``; of those, the one with the nearest ``near_percentile`` depth ``d0`` wins. If
   none does, that band was speckle: drop it and look deeper. So isolated near pixels never win.
3. Object: the grid samples reached from the winner's near part through neighbours at most
   ``step_mm`` apart in depth (and within ``band_mm`` of ``d0``): the hand and its forearm, not the
   body or wall behind them. A second growth through steps up to ``gap_mm`` adds parts of the hand
   seen past a step (fingers curled behind the palm); those points count for the final centre
   only, so that a wall or body bridged by a sensor's mixed pixels cannot win a choice.
   Full-resolution pixels join through their grid cell (and its neighbours: thin fingers the
   grid missed) when their depth fits the cells'.
4. Candidate centres (``_centre``), on a few thousand of the object's points, each weighed by its
   pixel's footprint ``z^2`` so that the mean is over the surface (a nearer arm does not outweigh
   a farther hand): (a) from the robust nearest point, mean shift (flat, ``seed_radius_mm``) then
   refine: repeatedly the mean of the points within ``radius_mm``, less the arm: points 20-90 mm
   beyond ``radius_mm`` lie on the arm (no hand point is that far from the hand's centre); if they
   lie to one side, points more than ``arm_cut_mm`` from the centre towards them are past the
   wrist. (b) From each end of the object's long axis (in the image plane, within ``reach_mm``),
   the same refine with the arm's direction fixed to "away from that end": the end is taken for the
   hand's tip, and the cut cannot turn round onto the hand once the centre reaches the arm; an arm
   leaving the image counts as arm beyond the cut. (a) alone takes the forearm when it is nearer
   than the hand (an arm pointing at the camera) or leaves the image.
5. Choice: the candidate whose points (on its end's side, up to 30 mm past its centre) are most
   rugged (``_ruggedness``): outline and depth steps on a ~3 mm grid, and bumps of the depth
   inside; a forearm's end is smooth. One whose points reach the image border loses
   ``_BORDER_PENALTY`` (likely the arm leaving the image: datasets keep the hand in view). On
   synth_hand frames (seeds 0-3) the COM lands more than 50 mm from the joints' mean in 1.1 % of
   frames; the nearest point's centre, its other end tried only when smooth, did in 14 % (10 %
   more than 50 mm off the visible hand: on the forearm).
6. COM: the chosen candidate's centre re-found on all the object's points (step 3's second
   growth); its points form the mask (holes up to ``max_hole_px`` filled). Then, where the arm's
   direction is known, ``finger_shift_mm`` towards the fingers, and ``ray_shift_mm`` along the
   viewing ray: the visible surface's mean lies behind the 21 joints' mean (the joints are 4 per
   finger, so their mean sits near the knuckles, and inside the hand). Both fitted on
   ``handvox.synth.hand`` frames (seeds 1-3, 900 frames; least squares of the joint mean minus
   the centre on the two directions): 24.9 and 8.0 mm. On those frames the COM to 21-joint-mean
   distance falls from 29.3 to 15.7 mm mean; 14.2 mm of it is the surface-to-joints scatter (the
   visible hand's true mean, shifted the same way, is that far off). Set both to 0 for the
   visible surface's mean.

Limits: a hand touching the body merges with it where no depth step parts them; a hand whose
fingers leave the image is penalised like an arm; a hand seen edge-on and smooth can lose to a
forearm (~1 % of synth_hand frames); the nearest sizeable object is taken for the hand and arm,
whatever it is. ``refine_iters=0`` gives the plain mean within ``radius_mm`` of the nearest point.

Anything that cannot be a hand gives ``found=False`` with a reason, never a zero COM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from handvox.camera import Camera
from handvox.errors import DataError

# Bumped whenever the method changes what it returns for the same input and config: training
# runs key their cached segmentation scans on it.
SEGMENT_VERSION = 2
_EIGHT = np.ones((3, 3), dtype=bool)
_CENTRE_POINTS = 4000
_ARM_SHELL_MM = (20.0, 90.0)  # beyond radius_mm: arm (or body), never hand
_BORDER_PX = 10  # a candidate with this many pixels on the image border touches it
_BORDER_PENALTY = 1.0  # ruggedness a candidate touching the image border loses
_SCORED_PAST_CENTRE_MM = 30.0  # a candidate is scored on its points up to this far armwards
_BUMP_WEIGHT = 0.5  # per mm of mean |depth Laplacian|: on synth_hand, 0.5 beat 0, 1, 2
_RUGGED_CELL_MM = 3.0  # ruggedness grid: fingers (~15 mm) stay resolved, dropouts vanish
_STEP_MM = 20.0  # a depth step between neighbours: a finger over the palm, or an outline
_jit = numba.njit(cache=True, nogil=True)


@dataclass(frozen=True)
class SegmentConfig:
    """Thresholds of ``segment_hand`` (millimetres unless said).

    ``min_ruggedness`` is unused since candidates are always compared; it stays so that saved
    models load.
    """

    far_mm: float = 2000.0  # readings at or beyond this are "no reading" (NYU stores 2001)
    min_depth_mm: float = 10.0  # nearer readings are sensor artefacts
    max_depth_mm: float = 1500.0  # nothing farther is taken for a hand
    band_mm: float = 200.0  # depth kept behind the nearest point (a hand pointing at us ~150)
    near_percentile: float = 2.0  # "nearest depth" of a component, robust to stray pixels
    min_area_mm2: float = 2500.0  # smaller objects are not a hand (a hand shows ~8000-15000)
    min_pixels: int = 30  # too few points for a centre, whatever their area
    seed_radius_mm: float = 85.0  # mean-shift ball from the nearest point onto the hand
    radius_mm: float = 110.0  # ball around the centre that holds the whole hand
    arm_cut_mm: float = 65.0  # the wrist lies about this far from the centre towards the arm
    refine_iters: int = 10  # most re-centring steps per stage; 0 = mean around the nearest point
    max_hole_px: int = 200  # mask holes up to this size (full-resolution pixels) are filled
    stride: int = 0  # subsampling for labelling; 0 = about 160 pixels across
    min_ruggedness: float = 7.0  # unused (kept for saved models)
    reach_mm: float = 500.0  # hand and forearm fit in this from either end
    step_mm: float = 30.0  # larger depth steps between grid neighbours part surfaces
    gap_mm: float = 50.0  # ... except for the final points (hand parts seen past a step)
    finger_shift_mm: float = 24.9  # COM moved this far away from the arm (fitted, see above)
    ray_shift_mm: float = 8.0  # and this far along the viewing ray (fitted, see above)
    # "depth": this module's rule; "learned": handvox.estimator.locate's locator, which uses the
    # thresholds above for the mask around the centre it finds (estimator.locate.find_hand).
    method: str = "depth"
    # With "learned": the locator folder ("": the shipped one). A pose net learns its locator's
    # centres, so a model trained with another one records it here and is run with it.
    locator: str = ""
    # With "learned": the grid sampling phases a frame read without a prior is read at (1 or
    # 4). The grid takes every s-th pixel; on a frame where two candidates are close to a tie,
    # which one wins can turn on that choice (a real SR305 frame with a head beside the hand:
    # docs/benchmarks.md, "The next locator candidates"). With four, the first phase's reading
    # stands unless more phases put the hand elsewhere (handvox.estimator.locate). Two would
    # never outvote the first (one against one is a tie, which the first wins): not offered.
    locator_phases: int = 1
    # With "learned": the share of the locator's heat a second candidate (its strongest peak at
    # least OTHER_APART_MM from the first) must hold to be offered (Segmentation.other) to a
    # caller that can tell the hand asked for from another: the estimator, told which hand the
    # frames show, keeps whichever of the two its handedness classifier calls that hand (a
    # second person's or the user's other hand can win the heat). 0: no second candidate.
    other_min_heat: float = 0.0
    # How much less "left" the classifier must find the second candidate than the first (whose
    # p_left is at least 0.5) for a right hand's frame to take it: None takes it only where its
    # p_left is below 0.5; a number d, where it is below the first's minus d. A left hand seen
    # beside the asked-for one makes both look left-ish when the classifier's cube holds parts
    # of both; the one that looks less so is the right hand (docs/rules/
    # 2026-12-08-second-candidate-margin.md).
    other_margin: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("depth", "learned"):
            raise ValueError(f"segment method must be 'depth' or 'learned', got {self.method!r}")
        if self.locator_phases not in (1, 4):
            raise ValueError(f"locator_phases must be 1 or 4, got {self.locator_phases!r}")
        if not 0.0 <= self.other_min_heat < 1.0:
            raise ValueError(f"other_min_heat must be in [0, 1), got {self.other_min_heat!r}")
        if self.other_margin is not None and not 0.0 <= self.other_margin < 1.0:
            raise ValueError(f"other_margin must be None or in [0, 1), got {self.other_margin!r}")


@dataclass
class Segmentation:
    """Result of ``segment_hand``.

    mask: ``(H, W)`` bool, the hand's pixels. com_xyz: ``(3,)`` mm, OpenCV frame, or None.
    com_uvd: ``(3,)`` u, v (px), d (mm), or None. reason: why nothing was found ("" if found).
    other: a second candidate found apart from this one (``SegmentConfig.other_min_heat``), or
    None; it has no ``other`` of its own.
    """

    mask: np.ndarray
    com_xyz: np.ndarray | None
    com_uvd: np.ndarray | None
    found: bool
    reason: str = ""
    other: Segmentation | None = None


def _miss(shape: tuple[int, int], reason: str) -> Segmentation:
    return Segmentation(np.zeros(shape, bool), None, None, False, "no hand found: " + reason)


def _check(depth: np.ndarray, camera: Camera) -> np.ndarray:
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise DataError(None, f"depth must be a 2-D (H, W) array, got shape {np.shape(depth)}")
    if depth.dtype.kind != "f":
        raise DataError(None, f"depth must be float mm (float32), got {depth.dtype}")
    camera.check_depth(depth)
    return depth


def _nearest_object(
    depth: np.ndarray, cand: np.ndarray, stride: int, camera: Camera, cfg: SegmentConfig
) -> tuple[np.ndarray | None, str]:
    """The nearest sizeable component of ``cand`` on the subsampled image.

    Returns (component mask, "") or (None, reason).
    """
    px_area = stride * stride / (camera.fx * camera.fy)  # footprint at 1 mm depth, mm^2
    remaining = cand.copy()
    largest = (0, 0.0)  # (full-resolution pixels, mm^2) of the biggest rejected object
    while remaining.any():
        near = depth[remaining].min()
        band = remaining & (depth <= near + cfg.band_mm)
        labels, n = ndimage.label(band, _EIGHT)
        ids = labels[band]
        d = depth[band]
        area = np.bincount(ids, d * d, n + 1) * px_area
        count = np.bincount(ids, minlength=n + 1) * stride * stride
        big = np.flatnonzero((area >= cfg.min_area_mm2) & (count >= cfg.min_pixels))
        big = big[big > 0]
        if big.size:
            near_d = [np.percentile(d[ids == k], cfg.near_percentile) for k in big]
            return labels == big[int(np.argmin(near_d))], ""
        k = int(np.argmax(area[1:])) + 1
        if area[k] > largest[1]:
            largest = (int(count[k]), float(area[k]))
        remaining &= ~band
    # Counted on the subsampled image, hence "~".
    return None, (
        f"nearest object too small (~{largest[0]} px, {largest[1]:.0f} mm^2 "
        f"< {cfg.min_area_mm2:g} mm^2)"
    )


@_jit
def _grow(depth, core, step):
    """``(h, w)`` bool: the samples of ``depth`` (> 0 where usable) reached from ``core`` through
    8-neighbours at most ``step`` apart in depth (flood fill)."""
    h, w = depth.shape
    out = np.zeros((h, w), np.bool_)
    stack = np.empty(h * w, np.int64)
    n = 0
    for r in range(h):
        for c in range(w):
            if core[r, c] and depth[r, c] > 0:
                out[r, c] = True
                stack[n] = r * w + c
                n += 1
    while n > 0:
        n -= 1
        r, c = stack[n] // w, stack[n] % w
        here = depth[r, c]
        for rr in range(max(r - 1, 0), min(r + 2, h)):
            for cc in range(max(c - 1, 0), min(c + 2, w)):
                there = depth[rr, cc]
                if not out[rr, cc] and there > 0 and abs(there - here) <= step:
                    out[rr, cc] = True
                    stack[n] = rr * w + cc
                    n += 1
    return out


def _full_resolution(
    grids: list[np.ndarray], small: np.ndarray, depth: np.ndarray, usable: np.ndarray, s: int,
    slack: list[float],
) -> list[np.ndarray]:  # fmt: skip
    """Full-resolution ``(H, W)`` masks of grid regions: the usable pixels of a region's cells and
    of the cells around it (thin fingers the grid missed) whose depth lies within ``slack`` of
    those cells' depths (not the body behind a finger's edge)."""
    shape = depth.shape
    ring = [ndimage.binary_dilation(g, _EIGHT) for g in grids]
    rows, cols = np.flatnonzero(ring[-1].any(1)), np.flatnonzero(ring[-1].any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1  # the last grid holds the rest
    box = np.s_[r0 * s : r1 * s, c0 * s : c1 * s]
    sub, ok = depth[box], usable[box]

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a[r0:r1, c0:c1], s, 0), s, 1)[: sub.shape[0], : sub.shape[1]]

    out = []
    for g, rg, sl in zip(grids, ring, slack, strict=True):
        lo = ndimage.minimum_filter(np.where(g, small, np.inf), 3) - sl
        hi = ndimage.maximum_filter(np.where(g, small, -np.inf), 3) + sl
        full = np.zeros(shape, bool)
        full[box] = up(rg) & ok & (sub >= up(lo)) & (sub <= up(hi))
        out.append(full)
    return out


def _fill_small_holes(
    mask: np.ndarray, max_px: int, bounds: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Fill holes of at most ``max_px`` pixels (sensor dropouts inside the hand): the
    background components (4-connected) of the mask's bounding box that do not reach its edge,
    as ``scipy.ndimage.binary_fill_holes`` and ``label`` find them. ``bounds``: that box
    ``(y0, y1, x0, x1)`` (ends exclusive) where the caller knows it, which saves two passes over
    the image."""
    if max_px <= 0 or not mask.any():
        return mask
    if bounds is None:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bounds = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    box = np.s_[bounds[0] : bounds[1], bounds[2] : bounds[3]]  # fill on the crop: far cheaper
    crop = mask[box]
    filled = _filled(np.ascontiguousarray(crop).ravel(), crop.shape[1], max_px)
    if filled is None:
        return mask
    mask = mask.copy()
    mask[box] = filled.reshape(crop.shape)
    return mask


@_jit
def _filled(crop, w, max_px):
    """The flat mask ``crop`` (rows of ``w``) with its holes of at most ``max_px`` pixels set;
    None when there are none. One flood fill from the edge's background, then one per hole
    (a stack of pixel indices; each pixel is pushed once; a hole's pixels, once popped, are kept
    at the stack's far end, which the frontier never reaches)."""
    n = crop.size
    h = n // w
    seen = crop.copy()  # the mask, and background already reached
    stack = np.empty(n, np.int64)
    top = 0
    for i in range(n):
        y, x = i // w, i % w
        if (y == 0 or x == 0 or y == h - 1 or x == w - 1) and not seen[i]:
            seen[i] = True
            stack[top] = i
            top += 1
    out = crop
    changed = False
    for start in range(-1, n):
        if start >= 0:  # the first round floods from the edge, the others find holes
            if seen[start]:
                continue
            seen[start] = True
            stack[0] = start
            top = 1
        size = 0
        while top > 0:
            top -= 1
            i = stack[top]
            size += 1
            if start >= 0:
                stack[n - size] = i
            y, x = i // w, i % w
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                j = ny * w + nx
                if 0 <= ny < h and 0 <= nx < w and not seen[j]:
                    seen[j] = True
                    stack[top] = j
                    top += 1
        if start >= 0 and size <= max_px:
            if not changed:
                out, changed = crop.copy(), True
            for k in range(n - size, n):
                out[stack[k]] = True
    return out if changed else None


@_jit
def _select(xyz, border, com, axis, radius, cut, min_pixels, out):
    """Into ``out`` ``(N,)``: the points within ``radius`` of ``com``, less the arm beyond the
    wrist. ``axis`` ``(3,)``: the arm's fixed direction, or zeros to take it from the shell of
    points 20-90 mm beyond ``radius`` when they lie to one side. With a fixed direction, the cut
    applies where the arm shows beyond it, in that shell or at the image ``border``."""
    n = xyz.shape[0]
    lo2 = (radius + _ARM_SHELL_MM[0]) ** 2
    hi2 = (radius + _ARM_SHELL_MM[1]) ** 2
    fixed = axis[0] != 0.0 or axis[1] != 0.0 or axis[2] != 0.0
    shell, beyond, past_border = 0, 0, False
    sx, sy, sz = 0.0, 0.0, 0.0
    for i in range(n):
        dx, dy, dz = xyz[i, 0] - com[0], xyz[i, 1] - com[1], xyz[i, 2] - com[2]
        d2 = dx * dx + dy * dy + dz * dz
        along = dx * axis[0] + dy * axis[1] + dz * axis[2]
        if lo2 < d2 < hi2:
            shell += 1
            sx += dx
            sy += dy
            sz += dz
            if along > cut:
                beyond += 1
        if border[i] and along > cut:
            past_border = True
    direction = axis.copy()
    cutting = fixed and (beyond >= min_pixels or past_border)
    if not fixed and shell >= min_pixels:
        norm = np.sqrt(sx * sx + sy * sy + sz * sz) / shell
        # Only an arm leaving on one side; far points all around (a wall, the body) are not.
        if norm > radius / 2:
            cutting = True
            direction[0], direction[1], direction[2] = sx, sy, sz
            direction /= norm * shell
    for i in range(n):
        dx, dy, dz = xyz[i, 0] - com[0], xyz[i, 1] - com[1], xyz[i, 2] - com[2]
        inside = dx * dx + dy * dy + dz * dz <= radius * radius
        if cutting:
            inside &= dx * direction[0] + dy * direction[1] + dz * direction[2] <= cut
        out[i] = inside
    return direction if cutting else np.zeros(3)


@_jit
def _refine(xyz, weight, border, start, axis, radius, cut, min_pixels, iters):
    """Re-centre from ``start`` on the weighted mean of ``_select``'s points until still;
    returns the centre ``(3,)`` and the arm's direction ``(3,)`` (zeros if none shows)."""
    com = start.copy()
    used = np.empty(xyz.shape[0], np.bool_)
    direction = np.zeros(3)
    for _ in range(iters):
        direction = _select(xyz, border, com, axis, radius, cut, min_pixels, used)
        total, x, y, z = 0.0, 0.0, 0.0, 0.0
        for i in range(xyz.shape[0]):
            if used[i]:
                total += weight[i]
                x += weight[i] * xyz[i, 0]
                y += weight[i] * xyz[i, 1]
                z += weight[i] * xyz[i, 2]
        if total == 0.0:
            break
        new = np.array([x, y, z]) / total
        moved = np.abs(new - com).max()
        com = new
        if moved < 0.5:
            break
    return com, direction


def _mean_shift(xyz: np.ndarray, start: np.ndarray, radius: float, iters: int) -> np.ndarray:
    """Move to the mean of the points within ``radius`` until still; ``(3,)``."""
    com = start
    for _ in range(max(iters, 1)):
        now = ((xyz - com) ** 2).sum(-1) <= radius * radius
        if not now.any():
            break
        new = xyz[now].mean(0)
        moved = np.abs(new - com).max()
        com = new
        if moved < 0.5:
            break
    return com


def _centre(
    xyz: np.ndarray,
    weight: np.ndarray,
    border: np.ndarray,
    cfg: SegmentConfig,
    start: np.ndarray | None = None,
    axis: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hand centre ``(3,)`` among the points ``(N, 3)`` (``weight`` and ``border`` ``(N,)``) and
    the arm's direction ``(3,)`` (zeros if unknown).

    Without ``axis``: sought from ``start`` (default: the robust nearest point) by mean shift,
    then re-centring with the arm's direction from the shell. With ``axis`` (unit, the arm's
    direction): re-centring from ``start`` with that direction fixed.
    """
    if start is None:
        z = xyz[:, 2]
        start = np.median(xyz[z <= np.percentile(z, cfg.near_percentile)], axis=0)
    if cfg.refine_iters <= 0:
        return xyz[((xyz - start) ** 2).sum(-1) <= cfg.radius_mm**2].mean(0), np.zeros(3)
    if axis is None:
        start, axis = _mean_shift(xyz, start, cfg.seed_radius_mm, cfg.refine_iters), np.zeros(3)
    return _refine(xyz, weight, border, start, axis, cfg.radius_mm, cfg.arm_cut_mm,
                   cfg.min_pixels, cfg.refine_iters)  # fmt: skip


def _ends(xyz: np.ndarray, com: np.ndarray, reach: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two ends ``(3,)`` of the points' long axis in the image plane, within ``reach`` of
    ``com``, each with the unit direction ``(3,)`` from it into the object (where its arm would
    go, were it the hand)."""
    near = xyz[((xyz - com) ** 2).sum(-1) <= reach * reach]
    flat = near[:, :2] - near[:, :2].mean(0)
    # In the image plane: on synth_hand frames a little better than in 3D, where depth noise and
    # a foreshortened arm tilt the axis.
    along = flat @ np.linalg.svd(flat, full_matrices=False)[2][0]
    out = []
    for end in (near[int(np.argmax(along))], near[int(np.argmin(along))]):
        inward = near.mean(0) - end
        norm = np.linalg.norm(inward)
        if norm >= 1.0:
            out.append((end, inward / norm))
    return out


def _ruggedness(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, camera: Camera) -> float:
    """How much the pixels ``rows, cols`` look like a hand rather than a forearm, on a grid of
    about ``_RUGGED_CELL_MM`` at their depth: outline plus depth-step cells per square root of
    the cells (scale-free; a hand's fingers cut its outline and step over one another), plus
    ``_BUMP_WEIGHT`` times the mean |Laplacian| of depth (mm) inside, steps left out (knuckles
    and curled fingers bump where a forearm is smooth: a fist's outline alone is an arm's). On
    synth_hand frames the first term is 4.3-5.4 for a forearm's end, 5.9-10.7 for a hand
    (5-95 %); the second 0.7-2.2 and 1.3-4.7 mm. A cell is on when a third of its pixels are:
    dropouts along a silhouette (grazing-angle losses) are no outline."""
    if rows.size < 30:
        return 0.0
    d = depth[rows, cols]
    k = max(1, round(_RUGGED_CELL_MM * camera.fx / float(np.median(d))))
    rb, cb = (rows - rows.min()) // k + 1, (cols - cols.min()) // k + 1  # a margin of one cell
    h, w = rb.max() + 2, cb.max() + 2
    cell = rb * w + cb
    count = np.bincount(cell, minlength=h * w).reshape(h, w)
    on = count >= k * k / 3
    mean = np.bincount(cell, d, minlength=h * w).reshape(h, w) / np.maximum(count, 1)
    closed = on | ndimage.binary_closing(on, _EIGHT)
    edge = closed & ~ndimage.binary_erosion(closed, _EIGHT)
    step = np.zeros_like(on)
    sx = (np.abs(np.diff(mean, axis=1)) > _STEP_MM) & on[:, 1:] & on[:, :-1]
    sy = (np.abs(np.diff(mean, axis=0)) > _STEP_MM) & on[1:] & on[:-1]
    step[:, 1:] |= sx
    step[:, :-1] |= sx
    step[1:] |= sy
    step[:-1] |= sy
    score = float((edge | (step & closed)).sum() / np.sqrt(closed.sum()))
    inner = ndimage.binary_erosion(on, _EIGHT, iterations=2)[1:-1, 1:-1]
    c = mean[1:-1, 1:-1]
    lap = np.abs(4 * c - mean[:-2, 1:-1] - mean[2:, 1:-1] - mean[1:-1, :-2] - mean[1:-1, 2:])
    lap = lap[inner & (lap < _STEP_MM)]
    return score + (_BUMP_WEIGHT * float(lap.mean()) if lap.size >= 10 else 0.0)


def segment_hand(
    depth: np.ndarray, camera: Camera, config: SegmentConfig = SegmentConfig()
) -> Segmentation:
    """Find the hand (an end of the nearest sizeable object) and its centre of mass.

    Args:
        depth: ``(H, W)`` float mm; 0, NaN and values >= ``config.far_mm`` mean no reading.
        camera: intrinsics of the image (its size must be ``W x H``).
    Returns:
        Segmentation; ``found=False`` with a reason when no hand is there.
    Raises:
        DataError: depth not a 2-D float array of the camera's size.
    """
    cfg = config
    depth = _check(depth, camera)
    shape = depth.shape
    with np.errstate(invalid="ignore"):
        valid = (depth > cfg.min_depth_mm) & (depth < cfg.far_mm)
        if not valid.any():
            return _miss(
                shape,
                f"no valid depth pixels (0, NaN and >= {cfg.far_mm:g} mm mean no reading)",
            )
        cand = valid & (depth <= cfg.max_depth_mm)
    if not cand.any():
        return _miss(shape, f"no depth nearer than {cfg.max_depth_mm:g} mm")

    s = cfg.stride or max(1, round(shape[1] / 160))
    small = depth[::s, ::s]
    seed, reason = _nearest_object(small, cand[::s, ::s], s, camera, cfg)
    if seed is None:
        return _miss(shape, reason)

    # Robust nearest depth d0; the object grows from its near part through small depth steps.
    d0 = np.percentile(small[seed], cfg.near_percentile)
    # Nothing nearer is cut: near outliers connected to the object are few and barely move a mean.
    in_band = cand & (depth <= d0 + cfg.band_mm)
    grid = np.where(in_band[::s, ::s], small, 0).astype(np.float32)
    core = seed & (small <= d0 + cfg.step_mm)
    surface = _grow(grid, core, np.float32(cfg.step_mm))
    whole = _grow(grid, core, np.float32(max(cfg.gap_mm, cfg.step_mm))) | surface
    surface, whole = _full_resolution([surface, whole], small, depth, in_band, s,
                                      [cfg.step_mm, max(cfg.gap_mm, cfg.step_mm)])  # fmt: skip
    whole |= surface

    rows, cols = np.nonzero(whole)
    xyz = camera.uvd_to_xyz(np.stack([cols, rows, depth[rows, cols]], -1).astype(np.float64))
    on_border = (rows <= 1) | (cols <= 1) | (rows >= shape[0] - 2) | (cols >= shape[1] - 2)
    on_surface = surface[rows, cols]
    # A few thousand points fix a mean to well under a millimetre; the mask uses them all.
    k = max(1, len(xyz) // _CENTRE_POINTS)
    pts, edge, weight = xyz[::k], on_border[::k], xyz[::k, 2] ** 2
    first = on_surface[::k]
    if first.sum() < cfg.min_pixels:  # a surface too broken up to choose on: take everything
        on_surface[:], first = True, np.ones(len(pts), bool)

    # Candidates on the surface alone: from the nearest point, and from both ends.
    p, e, w = pts[first], edge[first], weight[first]
    com, arm = _centre(p, w, e, cfg)
    candidates = [(com, arm)]
    if cfg.refine_iters > 0:
        candidates += [
            _centre(p, w, e, cfg, end, axis) for end, axis in _ends(p, com, cfg.reach_mm)
        ]
    best, used = -np.inf, np.empty(int(on_surface.sum()), bool)
    sx, sr, sc, sb = xyz[on_surface], rows[on_surface], cols[on_surface], on_border[on_surface]
    for c, a in candidates:
        _select(sx, sb, c, a, cfg.radius_mm, cfg.arm_cut_mm, cfg.min_pixels, used)
        if a.any():  # its own end: an arm end's far side reaches into the wrist, and vice versa
            used &= (sx - c) @ a <= _SCORED_PAST_CENTRE_MM
        score = _ruggedness(sr[used], sc[used], depth, camera)
        score -= _BORDER_PENALTY * (sb[used].sum() >= _BORDER_PX)
        if score > best:
            best, com, arm = score, c, a

    # The final centre on all points, fingers seen past a step included.
    if cfg.refine_iters > 0 and arm.any():
        com, arm = _centre(pts, weight, edge, cfg, com, arm)
    inside = np.empty(len(xyz), bool)
    shown = _select(xyz, on_border, com, arm, cfg.radius_mm, cfg.arm_cut_mm, cfg.min_pixels,
                    inside)  # fmt: skip
    if inside.sum() < cfg.min_pixels:
        return _miss(shape, f"hand region too small ({int(inside.sum())} px)")
    arm = arm if arm.any() else shown
    com = com - cfg.finger_shift_mm * arm + cfg.ray_shift_mm * com / np.linalg.norm(com)

    mask = np.zeros(shape, bool)
    mask[rows[inside], cols[inside]] = True
    mask = _fill_small_holes(mask, cfg.max_hole_px)
    return Segmentation(mask, com, camera.xyz_to_uvd(com), True, "")


def segment_batch(
    depths: np.ndarray, camera: Camera, config: SegmentConfig = SegmentConfig()
) -> list[Segmentation]:
    """``segment_hand`` over ``(B, H, W)`` depths; one Segmentation per frame."""
    if not isinstance(depths, np.ndarray) or depths.ndim != 3:
        raise DataError(None, f"depths must be a (B, H, W) array, got shape {np.shape(depths)}")
    return [segment_hand(d, camera, config) for d in depths]
