"""Hand segmentation and centre of mass (COM) from a depth image alone.

Step 1 of the estimator: the volume the network sees is centred on this COM. Nothing here looks at
labels; it assumes the hand is the nearest sizeable object in front of the camera (the setting of
NYU, ICVL, MSRA and HANDS17).

Method:
1. Validity: a pixel is a reading if finite, deeper than ``min_depth_mm`` and nearer than
   ``far_mm`` (0 and NYU's 2001 background both mean "no reading"). Only readings nearer than
   ``max_depth_mm`` can be the hand.
2. Nearest object, on a ``stride``-subsampled image for speed: take the nearest remaining reading,
   label (8-connected, ``scipy.ndimage.label``) the readings within ``band_mm`` behind it, and keep
   the components whose physical area (pixel footprint ``(d/fx)(d/fy)`` summed) reaches
   ``min_area_mm2``; of those, the one with the nearest ``near_percentile`` depth wins. If none
   does, that band was speckle: drop it and look deeper. So isolated near pixels never win.
3. Hand region: the winner's ``near_percentile`` depth ``d0`` is the robust nearest depth; readings
   nearer than ``d0 + band_mm`` connected to the winner form the region. The band cuts the
   body behind the hand; the forearm enters it and is cut in 3D next.
4. COM, at full resolution: back-project the region (Camera.uvd_to_xyz). Start at the robust
   nearest point (median of the nearest ``near_percentile`` % of points); mean-shift (flat kernel,
   ``seed_radius_mm``) onto the hand. Then refine, DeepPrior-style: repeatedly take the mean of
   the points within ``radius_mm`` of the current COM, less the forearm. The arm is what lies
   20-90 mm beyond ``radius_mm`` (no hand point is that far from the hand's centre); if those
   points lie to one side, points more than ``arm_cut_mm`` from the COM towards them are past
   the wrist and dropped. Without the cut the mean slides down the forearm (mean error on the
   benchmark scenes 29 mm instead of 2.5 mm; NYU test frame 1: 29 instead of 11 mm).
   ``refine_iters=0`` gives the plain mean within ``radius_mm`` of the nearest point. The final
   points are the mask; holes up to ``max_hole_px`` are filled.
5. Other end: a forearm pointing at the camera puts the elbow nearest, so step 4 can settle on
   the arm. If the result is smooth (outline + depth-step pixels per sqrt(pixels) below
   ``min_ruggedness``: a forearm's slab ~4-6, a hand's fingers ~9-16), the region's far ends
   within ``reach_mm`` (farthest point, end of the long axis) are tried too; one that does not
   leave the image and is clearly more rugged wins (synth_hand frames: cube hits 64 -> 92 %).

Limits: a hand resting on the body within ``band_mm`` merges with it and its COM is pulled towards
the body; a forearm that leaves the image within ~130 mm of the hand is not cut; a hand seen
edge-on, thinner than its forearm, can lose to it (1 of 200 benchmark scenes); the nearest
sizeable object is taken for the hand, whatever it is.

Anything that cannot be a hand gives ``found=False`` with a reason, never a zero COM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from handvox.camera import Camera
from handvox.errors import DataError

_EIGHT = np.ones((3, 3), dtype=bool)
_CENTRE_POINTS = 4000
_ARM_SHELL_MM = (20.0, 90.0)  # beyond radius_mm: arm (or body), never hand
_BORDER_PX = 10  # an end with more pixels on the image border leaves the image
_MARGIN = 1.0  # ruggedness an other end must gain to win
_STEP_MM = 20.0  # a depth step between neighbours: a finger over the palm, or an outline


@dataclass(frozen=True)
class SegmentConfig:
    """Thresholds of ``segment_hand`` (millimetres unless said)."""

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
    min_ruggedness: float = 7.0  # below: smooth like a forearm, so its other end is tried
    reach_mm: float = 500.0  # hand and forearm fit in this from either end


@dataclass
class Segmentation:
    """Result of ``segment_hand``.

    mask: ``(H, W)`` bool, the hand's pixels. com_xyz: ``(3,)`` mm, OpenCV frame, or None.
    com_uvd: ``(3,)`` u, v (px), d (mm), or None. reason: why nothing was found ("" if found).
    """

    mask: np.ndarray
    com_xyz: np.ndarray | None
    com_uvd: np.ndarray | None
    found: bool
    reason: str = ""


def _miss(shape: tuple[int, int], reason: str) -> Segmentation:
    return Segmentation(np.zeros(shape, bool), None, None, False, "no hand found: " + reason)


def _check(depth: np.ndarray, camera: Camera) -> np.ndarray:
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise DataError(None, f"depth must be a 2-D (H, W) array, got shape {np.shape(depth)}")
    if depth.dtype.kind != "f":
        raise DataError(None, f"depth must be float mm (float32), got {depth.dtype}")
    if depth.shape != (camera.height, camera.width):
        raise DataError(
            None,
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera is "
            f"{camera.width}x{camera.height}: its intrinsics do not apply",
        )
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


def _fill_small_holes(mask: np.ndarray, max_px: int) -> np.ndarray:
    """Fill holes of at most ``max_px`` pixels (sensor dropouts inside the hand)."""
    if max_px <= 0 or not mask.any():
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # fill on the crop: far cheaper
    crop = mask[box]
    holes = ndimage.binary_fill_holes(crop) & ~crop
    if holes.any():
        labels, n = ndimage.label(holes)
        small = np.bincount(labels.ravel(), minlength=n + 1) <= max_px
        small[0] = False
        mask = mask.copy()
        mask[box] = crop | small[labels]
    return mask


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


def _hand_points(xyz: np.ndarray, com: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    """The points ``(N,)`` bool within ``radius_mm`` of ``com``, less the arm beyond the wrist."""
    offset = xyz - com
    dist2 = (offset * offset).sum(-1)
    used = dist2 <= cfg.radius_mm**2
    # No hand point lies this far from its centre: what does is the arm (or the body).
    arm = (dist2 > (cfg.radius_mm + _ARM_SHELL_MM[0]) ** 2) & (
        dist2 < (cfg.radius_mm + _ARM_SHELL_MM[1]) ** 2
    )
    if arm.sum() >= cfg.min_pixels:
        towards_arm = xyz[arm].mean(0) - com
        norm = np.linalg.norm(towards_arm)
        # Only an arm leaving on one side; far points all around (a wall, a flat object) are not.
        if norm > cfg.radius_mm / 2:
            used &= offset @ towards_arm <= cfg.arm_cut_mm * norm
    return used


def _centre(xyz: np.ndarray, cfg: SegmentConfig, start: np.ndarray | None = None) -> np.ndarray:
    """Hand centre ``(3,)`` of the region's points ``(N, 3)``, sought from ``start`` (default:
    the robust nearest point)."""
    if start is None:
        z = xyz[:, 2]
        start = np.median(xyz[z <= np.percentile(z, cfg.near_percentile)], axis=0)
    if cfg.refine_iters <= 0:
        return xyz[((xyz - start) ** 2).sum(-1) <= cfg.radius_mm**2].mean(0)
    com = _mean_shift(xyz, start, cfg.seed_radius_mm, cfg.refine_iters)
    for _ in range(cfg.refine_iters):
        used = _hand_points(xyz, com, cfg)
        new = xyz[used].mean(0)
        moved = np.abs(new - com).max()
        com = new
        if moved < 0.5:
            break
    return com


def _ruggedness(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, cfg: SegmentConfig) -> float:
    """Outline plus depth-step pixels of the point set at ``rows, cols`` per square root of its
    pixel count: scale-free, ~4-6 for a forearm's smooth slab, ~9-16 for a hand, whose fingers
    cut its outline and step over one another."""
    if rows.size < cfg.min_pixels:
        return 0.0
    r0, c0 = rows.min() - 1, cols.min() - 1
    box = np.zeros((rows.max() - r0 + 2, cols.max() - c0 + 2), bool)
    box[rows - r0, cols - c0] = True
    box = ndimage.binary_closing(box, _EIGHT)  # sensor dropouts are not outline
    d = np.zeros(box.shape, np.float32)
    sub = depth[max(r0, 0) : r0 + box.shape[0], max(c0, 0) : c0 + box.shape[1]]
    d[max(-r0, 0) : max(-r0, 0) + sub.shape[0], max(-c0, 0) : max(-c0, 0) + sub.shape[1]] = sub
    edge = box & ~ndimage.binary_erosion(box, _EIGHT)
    step = np.zeros_like(box)
    sx = np.abs(np.diff(d, axis=1)) > _STEP_MM
    sy = np.abs(np.diff(d, axis=0)) > _STEP_MM
    step[:, 1:] |= sx
    step[:, :-1] |= sx
    step[1:] |= sy
    step[:-1] |= sy
    return float((edge | (step & box)).sum() / np.sqrt(box.sum()))


def segment_hand(
    depth: np.ndarray, camera: Camera, config: SegmentConfig = SegmentConfig()
) -> Segmentation:
    """Find the hand (the nearest sizeable object) and its centre of mass.

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

    # Robust nearest depth d0, then the depth band behind it, connected to the winner.
    d0 = np.percentile(small[seed], cfg.near_percentile)
    # Nothing nearer is cut: near outliers connected to the object are few and barely move a mean.
    in_band = cand & (depth <= d0 + cfg.band_mm)
    labels, n = ndimage.label(in_band[::s, ::s], _EIGHT)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[seed])] = True
    keep[0] = False
    region = ndimage.binary_dilation(keep[labels], _EIGHT)  # give back thin fingers lost to stride
    region = np.repeat(np.repeat(region, s, 0), s, 1)[: shape[0], : shape[1]] & in_band

    rows, cols = np.nonzero(region)
    xyz = camera.uvd_to_xyz(np.stack([cols, rows, depth[rows, cols]], -1).astype(np.float64))
    # A few thousand points fix the mean to well under a millimetre; the mask uses them all.
    pts = xyz[:: max(1, len(xyz) // _CENTRE_POINTS)]
    com = _centre(pts, cfg)
    inside = _hand_points(xyz, com, cfg)
    score = _ruggedness(rows[inside], cols[inside], depth, cfg)
    if score < cfg.min_ruggedness and cfg.refine_iters > 0:
        # Smooth like a forearm: the hand may be its other end (an arm pointing at the camera
        # puts the elbow nearest). Try the region's far extremity within an arm's reach.
        near = pts[np.linalg.norm(pts - com, axis=1) <= cfg.reach_mm]
        offset = near - com
        # The far ends: the farthest point, and the extreme along the blob's long axis.
        axis = np.linalg.svd(offset - offset.mean(0), full_matrices=False)[2][0]
        along = offset @ axis
        along = along if along.max() > -along.min() else -along
        starts = [near[int(np.argmax((offset * offset).sum(-1)))], near[int(np.argmax(along))]]
        for start in starts:
            if np.linalg.norm(start - com) <= cfg.radius_mm:
                continue
            other = _centre(pts, cfg, start)
            other_inside = _hand_points(xyz, other, cfg)
            r, c = rows[other_inside], cols[other_inside]
            # An end that leaves the image is the arm going on, not a free end; a clear margin
            # keeps a smooth object (a box, a wall) from hopping between equal ends.
            cut = (r == 0) | (c == 0) | (r == shape[0] - 1) | (c == shape[1] - 1)
            other_score = _ruggedness(r, c, depth, cfg)
            if cut.sum() < _BORDER_PX and other_score > score + _MARGIN:
                com, inside, score = other, other_inside, other_score
    if inside.sum() < cfg.min_pixels:
        return _miss(shape, f"hand region too small ({int(inside.sum())} px)")

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
