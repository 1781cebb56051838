"""Pictures of depth frames with hand skeletons: crop, draw, render to RGB, save PNG.

Array-level functions take a depth map ``(H, W)`` in mm and joints ``(J, 3)`` as uvd (u, v pixel
coordinates with pixel centres at integers, d in mm); :func:`joints_to_uvd` converts xyz joints.
A crop box is ``(u0, v0, u1, v1)``: integer, half-open pixel ranges ``[u0, u1) x [v0, v1)``.

Drawing only: nothing here reads files or looks for the hand. A caller that wants a crop around a
hand found from depth alone computes the box (``handvox show`` segments the hand,
:mod:`handvox.cli.show`) and passes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from handvox.atomic import atomic_path
from handvox.camera import Camera, as_camera
from handvox.joints import GROUP_COLORS, JointSet, get_joint_set

# Figures are built on FigureCanvasAgg directly, never through pyplot, so drawing needs no display
# and leaves the caller's matplotlib backend alone.

Box = tuple[int, int, int, int]

# NYU marks background as 2001 mm and other sensors use large sentinels; nothing in a hand
# dataset is that far, so everything at or beyond this counts as background.
FAR_MM = 2000.0
# Shown value 0..HAND_SPAN covers the hand's depth window (near = light, far = mid grey); the
# scene behind it fades from dark grey to black above HAND_SPAN, with a step between the two so
# the hand stands out yet the scene still gives context. Invalid depth is black.
_HAND_SPAN = 0.8
_DEPTH_CMAP = LinearSegmentedColormap.from_list(
    "handvox_depth",
    [(0.0, "#f7f7f7"), (_HAND_SPAN, "#5c5c5c"), (_HAND_SPAN, "#2c2c2c"), (1.0, "#111111")],
).with_extremes(under="#ffffff", bad="#000000")


def joints_to_uvd(joints: np.ndarray, camera: Camera | str, kind: str = "uvd") -> np.ndarray:
    """Joints as uvd for drawing.

    Args:
        joints: ``(..., J, 3)`` uvd (px, px, mm) or xyz (mm, OpenCV frame).
        kind: ``"uvd"`` (returned as is) or ``"xyz"`` (projected with the camera).
    Returns:
        ``(..., J, 3)`` float64 uvd.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if kind == "uvd":
        return joints
    if kind == "xyz":
        return as_camera(camera).xyz_to_uvd(joints)
    raise ValueError(f"kind must be 'uvd' or 'xyz', got {kind!r}")


def render_px(uv: np.ndarray, box: Box, image_shape: tuple[int, ...]) -> np.ndarray:
    """Where depth-image pixels land in an image made by :func:`render_frame`.

    Args:
        uv: ``(..., 2+)`` depth-image pixel coordinates (extra columns ignored).
        box: the crop box the image shows.
        image_shape: ``(H_out, W_out, ...)`` of the rendered image.
    Returns:
        ``(..., 2)`` (x, y) pixel coordinates in the rendered image.
    """
    uv = np.asarray(uv, dtype=np.float64)[..., :2]
    u0, v0, u1, v1 = box
    sx = image_shape[1] / (u1 - u0)
    sy = image_shape[0] / (v1 - v0)
    return np.stack([(uv[..., 0] - u0 + 0.5) * sx, (uv[..., 1] - v0 + 0.5) * sy], axis=-1)


def _valid(depth: np.ndarray, far_mm: float) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0) & (depth < far_mm)


def square_box(cu: float, cv: float, side: float, width: int, height: int) -> Box:
    """A square of ``side`` px (at least 8) centred at (cu, cv), shifted (not shrunk) to lie in a
    ``width`` x ``height`` image; the whole extent along an axis the side does not fit in."""
    side = max(int(np.ceil(side)), 8)

    def span(c: float, size: int) -> tuple[int, int]:
        if side >= size:
            return 0, size
        lo = int(round(c - side / 2))
        lo = min(max(lo, 0), size - side)
        return lo, lo + side

    u0, u1 = span(cu, width)
    v0, v1 = span(cv, height)
    return u0, v0, u1, v1


def hand_crop_box(
    depth: np.ndarray,
    camera: Camera | str,
    uvd_points: np.ndarray | None = None,
    margin: float = 0.15,
    margin_mm: float = 30.0,
) -> Box:
    """A square crop around the joints to draw, clamped to the image.

    The box holds every point of ``uvd_points`` (any number of skeletons stacked) plus a margin
    of ``margin`` x the joints' extent or ``margin_mm`` at their depth, whichever is larger
    (joints lie inside the skin, so fingertips need room). Without points (or none finite), the
    whole image.

    Args:
        depth: ``(H, W)`` mm (only its size is used).
        uvd_points: ``(..., 3)`` uvd; non-finite rows are ignored.
    Returns:
        ``(u0, v0, u1, v1)``.
    """
    cam = as_camera(camera)
    height, width = np.shape(depth)[:2]
    pts = np.empty((0, 3))
    if uvd_points is not None:
        pts = np.asarray(uvd_points, dtype=np.float64).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return 0, 0, width, height
    focal = 0.5 * (cam.fx + cam.fy)
    pad_mm = margin_mm * focal / max(float(np.median(pts[:, 2])), 1.0)
    lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
    extent = float((hi - lo).max())
    side = extent + 2 * max(margin * extent, pad_mm, 4.0)
    center = 0.5 * (lo + hi)
    return square_box(center[0], center[1], side, width, height)


def _depth_window(
    crop: np.ndarray, joints_d: np.ndarray | None, far_mm: float
) -> tuple[float, float]:
    """Depth limits of the hand, so the grey levels spread over it, not over the whole scene."""
    vals = crop[_valid(crop, far_mm)]
    if joints_d is not None:
        joints_d = joints_d[np.isfinite(joints_d)]
    if joints_d is not None and len(joints_d):
        # Skin lies a little in front of the joints; anything far in front of them is noise.
        vals = vals[vals > joints_d.min() - 100.0]
    if not len(vals):
        return 0.0, 1.0
    near = float(np.percentile(vals, 1.0))
    if joints_d is not None and len(joints_d):
        return near, max(near + 80.0, float(joints_d.max()) + 25.0)
    return near, near + 150.0


def _shade(depth: np.ndarray, near: float, far: float, far_mm: float) -> np.ndarray:
    """Depth -> 0..1 for :data:`_DEPTH_CMAP`: the hand window onto ``[0, _HAND_SPAN]``, the scene
    behind it onto ``(_HAND_SPAN, 1]``, invalid -> NaN."""
    valid = _valid(depth, far_mm)
    hand = (depth - near) / (far - near) * _HAND_SPAN
    behind = _HAND_SPAN + 1e-3 + (depth - far) / max(far_mm - far, 1.0) * (1.0 - _HAND_SPAN)
    shade = np.where(depth <= far, hand, np.minimum(behind, 1.0))
    return np.where(valid, shade, np.nan)


def _draw_skeleton(ax: Axes, uvd: np.ndarray, js: JointSet, style: str, scale: float) -> None:
    uv = uvd[:, :2]
    segments = [uv[[a, b]] for a, b in js.bones]
    bone_colors = js.bone_colors()
    joint_colors = [GROUP_COLORS[g] for g in js.groups]
    if style == "gt":
        outline = [
            patheffects.Stroke(linewidth=4.4 * scale, foreground="black"),
            patheffects.Normal(),
        ]
        ax.add_collection(
            LineCollection(
                segments,
                colors=bone_colors,
                linewidths=3.0 * scale,
                capstyle="round",
                path_effects=outline,
                zorder=3,
            )
        )
        ax.scatter(
            uv[:, 0],
            uv[:, 1],
            s=(6.0 * scale) ** 2,
            c=joint_colors,
            edgecolors="black",
            linewidths=0.8 * scale,
            zorder=4,
        )
    else:
        ax.add_collection(
            LineCollection(
                segments,
                colors="white",
                linewidths=2.0 * scale,
                linestyles=(0, (2.5, 1.5)),
                path_effects=[
                    patheffects.Stroke(linewidth=3.4 * scale, foreground="black"),
                    patheffects.Normal(),
                ],
                zorder=5,
            )
        )
        ax.scatter(
            uv[:, 0],
            uv[:, 1],
            s=(6.0 * scale) ** 2,
            c=joint_colors,
            marker="D",
            edgecolors="white",
            linewidths=1.2 * scale,
            zorder=6,
        )


def skeleton_legend_handles(
    gt_label: str = "ground truth", pred_label: str = "prediction"
) -> list[Line2D]:
    """Legend entries for the two skeleton styles of :func:`draw_frame` (solid ground truth,
    dashed prediction), for an axes' or a figure's legend."""
    edge = patheffects.withStroke(linewidth=3.4, foreground="black")
    return [
        Line2D([], [], color=GROUP_COLORS["middle"], lw=2.4, marker="o", ms=6,
               mec="black", path_effects=[edge], label=gt_label),
        Line2D([], [], color="white", lw=1.8, ls=(0, (2.5, 1.5)), marker="D", ms=5,
               mfc=GROUP_COLORS["middle"], mec="white", path_effects=[edge], label=pred_label),
    ]  # fmt: skip


def draw_frame(
    ax: Axes,
    depth: np.ndarray,
    camera: Camera | str,
    joint_set: str | JointSet,
    gt_uvd: np.ndarray | None = None,
    pred_uvd: np.ndarray | None = None,
    box: Box | None = None,
    title: str | None = None,
    far_mm: float = FAR_MM,
    line_scale: float = 1.0,
    gt_joint_set: str | JointSet | None = None,
    legend: bool = True,
) -> Box:
    """Draw a depth frame and its skeleton(s) into a matplotlib axes.

    Depth is grey (near = light), windowed to the hand's depth range; the scene behind the hand is
    a darker grey and invalid depth black.
    Ground truth: solid bones and dots in the finger colours of ``GROUP_COLORS``. Prediction:
    dashed white bones with diamonds in the finger colours. A legend appears when both are drawn.

    Args:
        depth: ``(H, W)`` mm.
        gt_uvd, pred_uvd: ``(J, 3)`` uvd joints of ``joint_set`` (see :func:`joints_to_uvd`).
        box: crop box; default :func:`hand_crop_box` around the given joints (the whole frame
            without joints).
        line_scale: multiplies line widths and marker sizes (for small or large panels).
        gt_joint_set: the joint set of ``gt_uvd`` where it is not ``joint_set`` (e.g. a
            dataset's labels beside a canonical prediction).
        legend: draw the legend (when both skeletons are drawn).
    Returns:
        The box drawn.
    """
    js = get_joint_set(joint_set)
    gt_js = js if gt_joint_set is None else get_joint_set(gt_joint_set)
    depth = np.asarray(depth, dtype=np.float32)
    skeletons = []
    for j, jset in ((gt_uvd, gt_js), (pred_uvd, js)):
        if j is None:
            continue
        j = np.asarray(j, dtype=np.float64)
        if j.shape != (len(jset), 3):
            raise ValueError(f"joints of shape {j.shape} do not fit {jset.name} ({len(jset)}, 3)")
        skeletons.append(j)
    if box is None:
        box = hand_crop_box(depth, camera, np.concatenate(skeletons) if skeletons else None)
    u0, v0, u1, v1 = box
    crop = depth[v0:v1, u0:u1]
    window_d = gt_uvd if gt_uvd is not None else pred_uvd
    near, far = _depth_window(
        crop, None if window_d is None else np.asarray(window_d)[:, 2], far_mm
    )
    ax.imshow(
        _shade(crop, near, far, far_mm),
        cmap=_DEPTH_CMAP,
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        extent=(u0 - 0.5, u1 - 0.5, v1 - 0.5, v0 - 0.5),
    )
    if gt_uvd is not None:
        _draw_skeleton(ax, np.asarray(gt_uvd, dtype=np.float64), gt_js, "gt", line_scale)
    if pred_uvd is not None:
        _draw_skeleton(ax, np.asarray(pred_uvd, dtype=np.float64), js, "pred", line_scale)
    ax.set_xlim(u0 - 0.5, u1 - 0.5)
    ax.set_ylim(v1 - 0.5, v0 - 0.5)
    ax.set_axis_off()
    if legend and gt_uvd is not None and pred_uvd is not None:
        box_legend = ax.legend(
            handles=skeleton_legend_handles(),
            loc="lower right",
            fontsize=max(7.0, 8 * line_scale),
            framealpha=0.6,
            facecolor="#303030",
            edgecolor="none",
            labelcolor="white",
            handlelength=2.5,
        )
        box_legend.set_zorder(10)
    if title:
        ax.set_title(title, fontsize=9)
    return box


def render_frame(
    depth: np.ndarray,
    camera: Camera | str,
    joint_set: str | JointSet,
    gt_uvd: np.ndarray | None = None,
    pred_uvd: np.ndarray | None = None,
    crop: bool = True,
    size_px: int = 512,
    box: Box | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Render a depth frame with skeleton(s) to an image.

    The image shows exactly the crop box, edge to edge (use :func:`render_px` to locate depth
    pixels in it); ``title`` is written inside it, top left.

    Args:
        depth: ``(H, W)`` mm.
        crop: crop around the joints (:func:`hand_crop_box`; without joints, or with
            ``crop=False``, the whole frame), unless ``box`` is given.
        size_px: the longer side of the output image.
    Returns:
        ``(H_out, W_out, 3)`` uint8 RGB.
    """
    depth = np.asarray(depth, dtype=np.float32)
    height, width = depth.shape[:2]
    if box is None:
        if crop:
            pts = [np.asarray(j, dtype=np.float64) for j in (gt_uvd, pred_uvd) if j is not None]
            box = hand_crop_box(depth, camera, np.concatenate(pts) if pts else None)
        else:
            box = (0, 0, width, height)
    u0, v0, u1, v1 = box
    bw, bh = u1 - u0, v1 - v0
    out_w = size_px if bw >= bh else max(1, round(size_px * bw / bh))
    out_h = size_px if bh >= bw else max(1, round(size_px * bh / bw))
    dpi = 100.0
    fig = Figure(figsize=(out_w / dpi, out_h / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    draw_frame(ax, depth, camera, joint_set, gt_uvd, pred_uvd, box=box, line_scale=size_px / 512)
    if title:
        ax.text(
            0.02,
            0.98,
            title,
            transform=ax.transAxes,
            ha="left",
            va="top",
            color="white",
            fontsize=9 * size_px / 512,
            bbox={"facecolor": "#303030", "alpha": 0.6, "lw": 0},
        )
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return rgb


@dataclass(frozen=True)
class SheetFrame:
    """One panel of :func:`contact_sheet`.

    Attributes:
        name: written under the panel.
        depth: ``(H, W)`` mm.
        camera: the frame's camera.
        pred_uvd: ``(J, 3)`` uvd of the sheet's joint set; None: no hand found (the whole frame
            is shown).
        label_uvd: ``(J_label, 3)`` uvd of ``label_joint_set``, or None (unlabelled).
        label_joint_set: the labels' joint set (default: the sheet's).
        box: crop box; default :func:`hand_crop_box` around the skeletons drawn.
        note: a second line under the name (e.g. an error).
    """

    name: str
    depth: np.ndarray
    camera: Camera | str
    pred_uvd: np.ndarray | None = None
    label_uvd: np.ndarray | None = None
    label_joint_set: str | JointSet | None = None
    box: Box | None = None
    note: str = ""


def contact_sheet(
    frames: Sequence[SheetFrame],
    joint_set: str | JointSet = "canonical21",
    cols: int = 5,
    panel_in: float = 2.4,
    title: str | None = None,
    pred_label: str = "prediction",
    label_label: str = "label",
    far_mm: float = FAR_MM,
) -> Figure:
    """A grid of depth frames, each cropped around its hand with its predicted skeleton (dashed,
    :func:`draw_frame`'s prediction style) and, where it has one, its label skeleton (solid),
    its name (and note) under it; a legend of the two styles and the finger colours on top.

    The figure holds exactly one axes a frame, in order, each titled with the frame's name (and
    note, on a second line), the title written under the picture.

    Args:
        joint_set: the predictions' joint set.
        cols: panels a row (fewer when there are fewer frames).
        panel_in: a panel's side, inches.
    Returns:
        A matplotlib Figure (save with ``fig.savefig``).
    """
    if not frames:
        raise ValueError("no frames for a contact sheet")
    js = get_joint_set(joint_set)
    cols = max(1, min(cols, len(frames)))
    rows = -(-len(frames) // cols)
    labelled = any(f.label_uvd is not None for f in frames)
    handles = skeleton_legend_handles(label_label, pred_label)[0 if labelled else 1 :]
    handles += [
        Line2D([], [], ls="none", marker="o", ms=6, mfc=GROUP_COLORS[g], mec="black", label=g)
        for g in ("thumb", "index", "middle", "ring", "little", "palm")
    ]
    caption_in, gap_in = 0.42, 0.08
    cell_w, cell_h = panel_in + gap_in, panel_in + caption_in
    width = cols * cell_w + gap_in
    # The legend in as many rows as the figure's width needs (about 1.2 in an entry).
    per_row = max(1, min(len(handles), int(width / 1.2)))
    legend_in = 0.1 + 0.25 * -(-len(handles) // per_row)
    title_in = 0.3 if title else 0.0
    head_in = title_in + legend_in + 0.1
    height = rows * cell_h + head_in
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    scale = panel_in / 3.2
    for k, f in enumerate(frames):
        r, c = divmod(k, cols)
        left = gap_in + c * cell_w
        bottom = height - head_in - r * cell_h - panel_in
        ax = fig.add_axes((left / width, bottom / height, panel_in / width, panel_in / height))
        pred = None if f.pred_uvd is None else np.asarray(f.pred_uvd, dtype=np.float64)
        if pred is not None and not np.isfinite(pred).all():
            pred = None
        draw_frame(ax, f.depth, f.camera, js, gt_uvd=f.label_uvd, pred_uvd=pred, box=f.box,
                   far_mm=far_mm, line_scale=scale, gt_joint_set=f.label_joint_set,
                   legend=False)  # fmt: skip
        caption = f.name + (f"\n{f.note}" if f.note else "")
        # The title under the picture: its top a few points below the axes.
        ax.set_title(caption, fontsize=8, y=0.0, pad=-4, va="top", linespacing=1.3)
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - title_in / height),
        ncol=per_row,
        fontsize=8,
        facecolor="#303030",
        framealpha=0.85,
        edgecolor="none",
        labelcolor="white",
        handlelength=2.5,
    )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return fig


def tile_images(images: list[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    """``(H_i, W_i, 3)`` uint8 images -> one ``(H, W, 3)`` grid, ``cols`` a row, each cell the
    size of the largest image (smaller ones centred), on white."""
    if not images:
        raise ValueError("no images to tile")
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    rows = -(-len(images) // cols)
    grid = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        y = pad + r * (ch + pad) + (ch - im.shape[0]) // 2
        x = pad + c * (cw + pad) + (cw - im.shape[1]) // 2
        grid[y : y + im.shape[0], x : x + im.shape[1]] = im
    return grid


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
