"""Pose coverage of the training data: how much of the hand's joint space the generator's poses
reach, where they miss, and how far the real poses of pose transfer lie from them.

Four measurements (docs/benchmarks.md, "Pose coverage", reads them):

1. **Per DOF** (the 24 joint angles with limits): ``--poses`` poses of the natural-pose sampler
   (:func:`handvox.hand.poses.sample_poses`, the configuration of ``handvox synth``'s default
   :class:`HandSynthConfig`, seed ``--seed``) histogrammed into 20 equal bins of each DOF's limit
   range ``[lo, hi]``; a bin counts as covered when it holds >= 0.1 % of the poses. Also without
   the mixture's ``uniform`` component (what the natural components reach on their own), the
   1st / 99th percentiles and the share clamped exactly onto a limit. The 6 root DOFs have no
   limits (the view sampler places the hand): percentiles only.
2. **Canonical poses**: fingertips by forward kinematics on the average adult hand, hand frame
   (root removed). *Template*: all five fingertips within 20 mm of the gesture's
   (:data:`handvox.hand.poses.GESTURES` ``open``, ``fist``, ``pinch``, ``point``). *Family*: a
   predicate on angles and tips, whatever the rest of the hand does: with ``flex`` a finger's
   MCP + PIP + DIP flexion over the sum of their upper limits, ``fist`` = every finger's flex
   >= 0.75 and the thumb tip across the palm (radial coordinate <= the index MCP's, >= 30 mm on
   the palm side); ``point`` = index flex <= 0.15, the other three >= 0.6; ``open`` = all four
   <= 0.15, the thumb not across (tip radial of the index MCP); ``pinch`` = the distal phalanges
   of thumb and index (capsules of the hand's radii) within 3 mm of touching. The brief's
   "thumb tip within 15 mm of the index tip" is reported beside it (``pinch_tip15``): on this
   hand the two tip points are 17.3 mm apart when the pads touch (radii 9.5 + 7.7 mm), so 15 mm
   asks for pads pressed 2 mm into each other.
3. **Grasps**: the generator's own path, :func:`handvox.synth.hand._hand_block` with
   ``HandSynthConfig(object_prob=1)`` (draw objects, pre-shape, lower onto the palm or put
   between the pads, close: :func:`handvox.synth.objects.grasp_poses`), ``--grasp-blocks``
   blocks of 64 frames. Per object kind and third of its radius range (a box's: its half
   thickness): frames grasped, accepted (the closed hand passes
   the view checks and keeps the object 30 mm before the camera; the rest are redrawn frame by
   frame in the generator), deepest hand-object interpenetration (:func:`handvox.hand.grasp.
   hand_overlap`, every bone and the palm, the frame's own bones), deepest finger-finger
   interpenetration (:func:`handvox.hand.poses.self_overlap`, the frame's own bones), chains
   touching the object (a closing bone within 1 mm of its surface), the share of precision
   grasps and the flexion of the closed fingers.
4. **ICVL transfer poses**: the 1,596 ICVL test labels (``../shared/data/icvl/
   icvl_test_groundtruth_label.txt``, what ``handvox transfer`` recovers for the shipped model's
   ``data/transfer``) solved by :func:`handvox.synth.transfer.recover_poses` with its defaults
   (one subject, Levenberg-Marquardt). For each, the distance to the nearest of the sampled
   poses in fingertip space (mean over the five tips of the tip distance, average adult hand,
   hand frame); as reference, the same for ``--poses``-independent fresh sampler poses (seed
   ``--seed + 1``), i.e. what "in distribution" gives at this sample size.

Run: ``.venv/bin/python benchmarks/pose_coverage.py [--poses 20000] [--seed 0]
[--grasp-blocks 96] [--json out.json] [--plot docs/images/pose-coverage.png]``. About 1 min
on one thread; ``--replot out.json --plot PNG`` redraws the figure alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/ik_real_labels.py

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from handvox.atomic import write_text  # noqa: E402
from handvox.geometry import segment_distance  # noqa: E402
from handvox.hand.grasp import GraspObject, _chain_capsules, hand_overlap  # noqa: E402
from handvox.hand.kinematics import DOF_NAMES, LIMITS_DEG, forward_kinematics  # noqa: E402
from handvox.hand.poses import (  # noqa: E402
    COMPONENTS,
    articulation_to_pose,
    gesture_articulations,
    sample_articulation,
    sample_poses,
    self_overlap,
)
from handvox.hand.shapes import base_shape  # noqa: E402
from handvox.synth.hand import _hand_block  # noqa: E402
from handvox.synth.hand_config import HandSynthConfig, pose_sampler_config  # noqa: E402
from handvox.synth.objects import OBJECT_BOX_MM, OBJECT_KINDS, OBJECT_RADIUS_MM  # noqa: E402
from handvox.synth.transfer import load_source, recover_poses  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ICVL_LABELS = SHARED / "data" / "icvl" / "icvl_test_groundtruth_label.txt"
BINS = 20
MIN_SHARE = 0.001  # a bin is covered from this share of the poses on
TIPS = [4, 8, 12, 16, 20]  # canonical-21 fingertips, thumb first
FINGERS = ("index", "middle", "ring", "little")
CANONICAL = ("open", "fist", "pinch", "point")
TEMPLATE_MM = 20.0
SIZE_BINS = 3
CONTACT_MM = 1.0


# --- kinematics on the reference hand -----------------------------------------------------------
def reference_fk(art: torch.Tensor):
    """Forward kinematics of ``(n, 24)`` articulations on the average adult hand, hand frame."""
    bones = base_shape("average_adult", torch.float64)
    return forward_kinematics(articulation_to_pose(art.double()), bones)


def finger_flex(art_deg: np.ndarray) -> np.ndarray:
    """``(n, 4)`` MCP + PIP + DIP flexion of index..little over the sum of their upper limits."""
    out = []
    for f in FINGERS:
        names = [f"{f}_mcp_flex", f"{f}_pip_flex", f"{f}_dip_flex"]
        cols = [DOF_NAMES.index(n) - 6 for n in names]
        out.append(art_deg[:, cols].sum(1) / sum(LIMITS_DEG[n][1] for n in names))
    return np.stack(out, 1)


# --- 1. per DOF ---------------------------------------------------------------------------------
def dof_coverage(poses: np.ndarray, comp: np.ndarray) -> list[dict]:
    """Per-DOF coverage rows (module docstring) of ``(n, 30)`` poses (angles in degrees)."""
    n = len(poses)
    natural = comp != COMPONENTS.index("uniform")
    rows = []
    for i, name in enumerate(DOF_NAMES):
        x = poses[:, i]
        p1, p99 = np.percentile(x, [1, 99])
        row = {"dof": name, "p1": float(p1), "p99": float(p99)}
        lo, hi = LIMITS_DEG[name]
        if np.isfinite(lo):
            hist = np.histogram(x, BINS, (lo, hi))[0]
            nat = np.histogram(x[natural], BINS, (lo, hi))[0]
            tol = 1e-3
            row |= {
                "lo": lo, "hi": hi, "hist": (hist / n).tolist(), "hist_natural": (nat / n).tolist(),
                "covered": int((hist >= MIN_SHARE * n).sum()),
                "covered_natural": int((nat >= MIN_SHARE * n).sum()),
                "at_lo": float((x <= lo + tol).mean()), "at_hi": float((x >= hi - tol).mean()),
            }  # fmt: skip
        rows.append(row)
    return rows


# --- 2. canonical poses -------------------------------------------------------------------------
def canonical_coverage(art: torch.Tensor) -> dict[str, np.ndarray]:
    """Per pose of ``(n, 24)`` articulations (rad): ``{kind}_template`` and ``{kind}_family``
    booleans (module docstring) for the :data:`CANONICAL` kinds, and ``pinch_tip15``."""
    fk = reference_fk(art)
    j = fk.joints
    tips = j[:, TIPS]
    ref = reference_fk(gesture_articulations(CANONICAL, torch.float64)).joints[:, TIPS]
    out = {}
    for k, name in enumerate(CANONICAL):
        d = (tips - ref[k]).norm(dim=-1).amax(-1)
        out[f"{name}_template"] = (d <= TEMPLATE_MM).numpy()
    flex = finger_flex(np.degrees(art.double().numpy()))
    thumb, index_mcp = j[:, 4].numpy(), j[:, 5].numpy()
    across = (thumb[:, 0] <= index_mcp[:, 0]) & (thumb[:, 2] <= -30.0)
    out["fist_family"] = (flex >= 0.75).all(1) & across
    out["point_family"] = (flex[:, 0] <= 0.15) & (flex[:, 1:] >= 0.6).all(1)
    out["open_family"] = (flex <= 0.15).all(1) & (thumb[:, 0] > index_mcp[:, 0])
    radius = fk.bones.radius[0]
    gap = segment_distance(j[:, 3], j[:, 4], j[:, 7], j[:, 8]) - radius[0, 3] - radius[1, 3]
    out["pinch_family"] = (gap <= 3.0).numpy()
    out["pinch_tip15"] = ((j[:, 4] - j[:, 8]).norm(dim=-1) <= 15.0).numpy()
    return out


# --- 3. grasps ----------------------------------------------------------------------------------
def grasp_coverage(blocks: int, seed: int) -> dict:
    """Grasped frames of the generator's blocks (module docstring), one row per object kind and
    size bin; the per-frame arrays under ``frames``."""
    cfg = HandSynthConfig(object_prob=1.0)
    cols = {k: [] for k in ("kind", "radius", "accepted", "overlap", "self", "contacts",
                            "thumb", "flex", "pinched")}  # fmt: skip
    for b in range(blocks):
        blk = _hand_block(cfg, seed, b)
        obj = blk.objects
        idx = np.flatnonzero(obj.held & (np.abs(obj.ends).sum((1, 2)) > 0))  # grasps closed
        pose = torch.from_numpy(blk.poses[idx]).double()
        bones = blk.bones[torch.from_numpy(idx)].to(dtype=torch.float64)
        ends = torch.from_numpy(obj.ends[idx])
        grasp = GraspObject(ends[:, 0], ends[:, 1], torch.from_numpy(obj.draw.radius[idx]),
                            torch.from_numpy(obj.across[idx]),
                            torch.from_numpy(obj.draw.thick[idx]))  # fmt: skip
        fk = forward_kinematics(pose, bones)
        p, q, r = _chain_capsules(fk, bones)
        gap = grasp.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1)).view(-1, 5, 3)
        touch = (gap.amin(-1) <= CONTACT_MM).numpy()
        art_deg = np.degrees(blk.poses[idx, 6:].astype(np.float64))
        flex = finger_flex(art_deg)
        cols["kind"].append(obj.draw.kind[idx])
        # a box's size is its half thickness (the palm's normal runs along it), else the radius
        cols["radius"].append(obj.draw.radius[idx] + obj.draw.thick[idx])
        cols["accepted"].append(blk.ok[idx])
        cols["overlap"].append(hand_overlap(pose, bones, grasp).numpy())
        cols["self"].append(self_overlap(pose[:, 6:], bones).numpy())
        cols["contacts"].append(touch[:, 1:].sum(1))
        cols["thumb"].append(touch[:, 0])
        cols["flex"].append(flex.mean(1))
        cols["pinched"].append(obj.pinched[idx])
    f = {k: np.concatenate(v) for k, v in cols.items()}
    rows = []
    for k, kind in enumerate(OBJECT_KINDS):
        lo, hi = OBJECT_RADIUS_MM[k]
        if kind == "box":
            lo, hi = (x / 2 for x in OBJECT_BOX_MM[1])
        edges = np.linspace(lo, hi, SIZE_BINS + 1)
        for s in range(SIZE_BINS):
            sel = (f["kind"] == k) & (f["radius"] >= edges[s]) & (f["radius"] <= edges[s + 1])
            if not sel.any():
                continue
            fl = f["flex"][sel]
            rows.append({
                "kind": kind, "radius": [float(edges[s]), float(edges[s + 1])],
                "grasped": int(sel.sum()), "accepted": float(f["accepted"][sel].mean()),
                "overlap_max": float(f["overlap"][sel].max()),
                "overlap_p99": float(np.percentile(f["overlap"][sel], 99)),
                "over_2mm": float((f["overlap"][sel] > 2.0).mean()),
                "self_max": float(f["self"][sel].max()),
                "self_over_4mm": float((f["self"][sel] > 4.0).mean()),
                "thumb_contact": float(f["thumb"][sel].mean()),
                "fingers_contact": float(f["contacts"][sel].mean()),
                "opposed": float((f["thumb"][sel] & (f["contacts"][sel] >= 1)).mean()),
                "precision": float(f["pinched"][sel].mean()),
                "flex_p10_p50_p90": np.percentile(fl, [10, 50, 90]).tolist(),
            })  # fmt: skip
    return {"rows": rows, "frames": {k: v.tolist() for k, v in f.items()}}


# --- 4. ICVL ------------------------------------------------------------------------------------
def nearest_tip_distance(query: torch.Tensor, pool: torch.Tensor, chunk: int = 32) -> np.ndarray:
    """For ``(m, 5, 3)`` query tips, the smallest mean-over-tips distance (mm) to ``(n, 5, 3)``
    pool tips."""
    pool = pool.float()
    out = []
    for s in range(0, len(query), chunk):
        q = query[s : s + chunk].float()
        d = (q[:, None] - pool[None]).norm(dim=-1).mean(-1)
        out.append(d.amin(1))
    return torch.cat(out).numpy()


def icvl_poses(
    path: Path, frames: int | None, mirror: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(N, 30)`` poses and ``(N,)`` IK residuals (mm) of the ICVL labels as ``handvox
    transfer`` recovers them, and the seconds; ``mirror`` first negates the labels' camera x
    (a left hand made right)."""
    t0 = time.perf_counter()
    src = load_source(path, "icvl", frames)
    if mirror:
        src = replace(src, joints_xyz=src.joints_xyz * np.array([-1.0, 1.0, 1.0]))
    rec = recover_poses(src)
    return rec.pose, rec.residual, time.perf_counter() - t0


def icvl_summary(pose: np.ndarray, resid: np.ndarray, secs: float, tips: torch.Tensor) -> dict:
    """Counts, per-DOF percentiles, canonical shares and nearest-sample distances of IK poses."""
    art = torch.from_numpy(pose[:, 6:]).double()
    deg = np.degrees(pose[:, 6:].astype(np.float64))
    flex = finger_flex(deg)
    return {
        "frames": len(pose), "seconds": secs, "residual_mean": float(resid.mean()),
        "residual_p95": float(np.percentile(resid, 95)),
        "dof": {n: np.percentile(deg[:, i], [1, 99]).tolist()
                for i, n in enumerate(DOF_NAMES[6:])},
        "median_deg": {n: float(np.median(deg[:, i])) for i, n in enumerate(DOF_NAMES[6:])},
        "median_flex": np.median(flex, 0).tolist(),
        "canonical": {k: float(v.mean()) for k, v in canonical_coverage(art).items()},
        "nn_mm": nearest_tip_distance(reference_fk(art).joints[:, TIPS], tips).tolist(),
    }  # fmt: skip


# --- the figure ---------------------------------------------------------------------------------
def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig = plt.figure(figsize=(14, 11))
    grid = fig.add_gridspec(3, 2, width_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[:, 0])
    rows = [r for r in res["dof"] if "hist" in r]
    dens = np.array([r["hist"] for r in rows])
    im = ax.imshow(np.maximum(dens, 1e-5), aspect="auto", cmap="viridis",
                   norm=LogNorm(1e-4, 0.5), extent=(0, 1, len(rows) - 0.5, -0.5))  # fmt: skip
    for i, r in enumerate(rows):
        for key, hatch, color in (("hist_natural", "//", "orange"), ("hist", "xx", "red")):
            for b in np.flatnonzero(np.array(r[key]) < MIN_SHARE):
                ax.add_patch(plt.Rectangle((b / BINS, i - 0.5), 1 / BINS, 1, fill=False,
                                           hatch=hatch, edgecolor=color, lw=0))  # fmt: skip
        span = r["hi"] - r["lo"]
        lo, hi = ((v - r["lo"]) / span for v in res["icvl"]["dof"][r["dof"]])
        ax.plot([lo, hi], [i + 0.25, i + 0.25], "w-", lw=1.2)
        for key, color in (("icvl", "white"), ("icvl_mirrored", "tab:red")):
            med = (res[key]["median_deg"][r["dof"]] - r["lo"]) / span
            ax.plot(med, i + 0.25, "o", ms=4, color=color)
    labels = [f"{r['dof']}  [{r['lo']:g}, {r['hi']:g}]" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xticks([0, 0.5, 1], ["lower limit", "mid", "upper limit"])
    ax.set_title(f"sampler: share of {res['poses']:,} poses per 1/20 of each joint's range\n"
                 "red hatch: < 0.1 %; orange: < 0.1 % without the 5 % uniform component"
                 "\nwhite line / dot: ICVL IK poses' 1st-99th percentile / median; red dot: "
                 "median with the labels mirrored",
                 fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="share of poses")

    ax = fig.add_subplot(grid[0, 1])
    x = np.arange(len(CANONICAL))
    w = 0.2
    for k, (src, key, label, color) in enumerate([
        ("canonical", "template", "sampler: 5 tips within 20 mm of the gesture", "tab:blue"),
        ("canonical", "family", "sampler: family predicate", "tab:cyan"),
        ("icvl", "family", "ICVL IK, as transferred today: family", "tab:orange"),
        ("icvl_mirrored", "family", "ICVL IK, labels mirrored: family", "tab:red"),
    ]):  # fmt: skip
        can = res[src] if src == "canonical" else res[src]["canonical"]
        vals = [100 * can[f"{c}_{key}"] for c in CANONICAL]
        bars = ax.bar(x + (k - 1.5) * w, vals, w, label=label, color=color)
        ax.bar_label(bars, [f"{v:.1f}" for v in vals], fontsize=6, padding=1)
    ax.set_xticks(x, CANONICAL)
    ax.set_ylabel("% of poses")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(0, 300)
    ax.set_yticks([0, 1, 10, 100], ["0", "1", "10", "100"])
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.set_title("canonical poses: share of poses near each", fontsize=9)

    ax = fig.add_subplot(grid[1, 1])
    g = res["grasps"]["rows"]
    x = np.arange(len(g))
    opp = [100 * r["opposed"] for r in g]
    bad = [100 * r["self_over_4mm"] for r in g]
    ax.bar(x - 0.2, opp, 0.4, color="tab:green", label="thumb and a finger touch the object")
    ax.bar(x + 0.2, bad, 0.4, color="tab:red", label="fingers inside each other > 4 mm")
    ax.set_ylim(0, 140)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("% of grasps")
    ax.set_xticks(x, [f"{r['kind']}\nr {r['radius'][0]:.0f}-{r['radius'][1]:.0f}" for r in g],
                  fontsize=7)  # fmt: skip
    ax2 = ax.twinx()
    fl = np.array([r["flex_p10_p50_p90"] for r in g])
    ax2.errorbar(x, fl[:, 1], [fl[:, 1] - fl[:, 0], fl[:, 2] - fl[:, 1]], fmt="k_", ms=12,
                 capsize=3, label="finger flexion p10 / p50 / p90")  # fmt: skip
    ax2.set_ylim(0, 1.4)
    ax2.set_yticks(np.linspace(0, 1, 6))
    ax2.set_ylabel("finger flexion, share of full", fontsize=8)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", ncol=2)
    over = max(r["overlap_max"] for r in g)
    ax.set_title(f"grasps of the generator (object_prob 1): hand-object interpenetration max "
                 f"{over:.2f} mm", fontsize=9)  # fmt: skip

    ax = fig.add_subplot(grid[2, 1])
    sets = [
        (np.array(res["nn_ref_mm"]), "fresh sampler poses (the 0 mm bar: exact gestures)"),
        (np.array(res["icvl"]["nn_mm"]), "ICVL IK poses, as transferred today"),
        (np.array(res["icvl_mirrored"]["nn_mm"]), "ICVL IK poses, labels mirrored"),
    ]
    bins = np.linspace(0, max(d.max() for d, _ in sets) * 1.02, 50)
    for d, label in sets:
        ax.hist(d, bins, histtype="step", lw=1.5, density=True,
                label=f"{label} (median {np.median(d):.1f} mm)")  # fmt: skip
    ax.set_xlabel(f"mean fingertip distance to the nearest of {res['poses']:,} sampled poses (mm)")
    ax.set_yticks([])
    ax.legend(fontsize=7)
    ax.set_title("how far real (ICVL) poses lie from the sampler", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


# --- report -------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    n, ic, im = res["poses"], res["icvl"], res["icvl_mirrored"]
    lines = [f"Per DOF ({n:,} poses, seed {res['seed']}; angles in degrees; covered: bins of "
             f"{BINS} with >= {100 * MIN_SHARE:g} % of the poses)", "",
             "| DOF | limits | covered | without uniform | p1 / p99 | at lo / hi (%) | "
             "ICVL p1 / p50 / p99 | mirrored p50 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in res["dof"]:
        if "hist" not in r:
            lines.append(f"| {r['dof']} | none | | | {r['p1']:.2f} / {r['p99']:.2f} | | | |")
            continue
        d, m = ic["dof"][r["dof"]], ic["median_deg"][r["dof"]]
        lines.append(
            f"| {r['dof']} | {r['lo']:g} .. {r['hi']:g} | {r['covered']}/{BINS} | "
            f"{r['covered_natural']}/{BINS} | {r['p1']:.1f} / {r['p99']:.1f} | "
            f"{100 * r['at_lo']:.1f} / {100 * r['at_hi']:.1f} | {d[0]:.1f} / {m:.1f} / "
            f"{d[1]:.1f} | {im['median_deg'][r['dof']]:.1f} |"
        )
    lines += ["", "Canonical poses (% of poses)", "",
              "| pose | sampler template | sampler family | ICVL template | ICVL family | "
              "mirrored template | mirrored family |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    can = res["canonical"]
    for c in CANONICAL:
        vals = [can[c + "_template"], can[c + "_family"]]
        vals += [x["canonical"][c + k] for x in (ic, im) for k in ("_template", "_family")]
        lines.append(f"| {c} | " + " | ".join(f"{100 * v:.2f}" for v in vals) + " |")
    tip = [100 * x["pinch_tip15"] for x in (can, ic["canonical"], im["canonical"])]
    lines.append(f"| pinch, tips <= 15 mm | | {tip[0]:.2f} | | {tip[1]:.2f} | | {tip[2]:.2f} |")
    lines += ["", "Grasps (generator path, object_prob 1)", "",
              "| object | radius or half thickness (mm) | grasped | accepted | "
              "overlap max / p99 (mm) | > 2 mm | finger-finger > 4 mm / max (mm) | "
              "thumb touches | fingers touching | "
              "thumb + finger | precision grasps | finger flex p10 / p50 / p90 |",
              "| --- | --- " + "| ---: " * 9 + "| --- |"]  # fmt: skip
    for r in res["grasps"]["rows"]:
        fl = " / ".join(f"{v:.2f}" for v in r["flex_p10_p50_p90"])
        lines.append(
            f"| {r['kind']} | {r['radius'][0]:.1f}-{r['radius'][1]:.1f} | {r['grasped']} | "
            f"{100 * r['accepted']:.0f} % | {r['overlap_max']:.2f} / {r['overlap_p99']:.2f} | "
            f"{100 * r['over_2mm']:.1f} % | {100 * r['self_over_4mm']:.0f} % / "
            f"{r['self_max']:.1f} | {100 * r['thumb_contact']:.0f} % | "
            f"{r['fingers_contact']:.2f} | {100 * r['opposed']:.0f} % | "
            f"{100 * r.get('precision', 0.0):.0f} % | {fl} |"
        )
    ref = np.array(res["nn_ref_mm"])
    lines += ["", f"Nearest sampled pose (mean fingertip distance, mm; {len(ref)} poses each)", "",
              "| poses | IK residual mean / p95 (mm) | median | p95 | max | beyond the fresh "
              "poses' p95 |", "| --- | ---: | ---: | ---: | ---: | ---: |",
              f"| fresh sampler poses (seed {res['seed'] + 1}) | | {np.median(ref):.1f} | "
              f"{np.percentile(ref, 95):.1f} | {ref.max():.1f} | 5 % |"]  # fmt: skip
    for name, x in (("ICVL, as transferred today", ic), ("ICVL, labels mirrored", im)):
        d = np.array(x["nn_mm"])
        lines.append(
            f"| {name} | {x['residual_mean']:.2f} / {x['residual_p95']:.2f} | {np.median(d):.1f}"
            f" | {np.percentile(d, 95):.1f} | {d.max():.1f} | "
            f"{100 * (d > np.percentile(ref, 95)).mean():.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poses", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grasp-blocks", type=int, default=96, help="blocks of 64 frames")
    ap.add_argument("--icvl", type=Path, default=ICVL_LABELS)
    ap.add_argument("--icvl-frames", type=int, help="only the first N ICVL frames")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--replot", type=Path, help="only draw --plot from a --json file")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot)
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cfg = pose_sampler_config(HandSynthConfig())
    poses = sample_poses(torch.Generator().manual_seed(args.seed), args.poses, cfg)
    art, comp = sample_articulation(torch.Generator().manual_seed(args.seed), args.poses,
                                    cfg.articulation, return_component=True)  # fmt: skip
    assert torch.equal(art, poses[:, 6:]), "sample_poses draws its articulation first"
    deg = poses.double().numpy().copy()
    deg[:, 6:] = np.degrees(deg[:, 6:])
    res = {"poses": args.poses, "seed": args.seed,
           "components": {c: float((comp == k).double().mean()) for k, c in enumerate(COMPONENTS)},
           "dof": dof_coverage(deg, comp.numpy())}  # fmt: skip
    res["canonical"] = {k: float(v.mean()) for k, v in canonical_coverage(art).items()}
    res["canonical_by_component"] = {
        c: {k: int(v[comp.numpy() == i].sum()) for k, v in canonical_coverage(art).items()}
        for i, c in enumerate(COMPONENTS)
    }  # fmt: skip
    print(f"sampler: {time.perf_counter() - t0:.0f} s", flush=True)

    t1 = time.perf_counter()
    res["grasps"] = grasp_coverage(args.grasp_blocks, args.seed)
    print(f"grasps: {time.perf_counter() - t1:.0f} s", flush=True)

    tips = reference_fk(art).joints[:, TIPS]
    for key, mirror in (("icvl", False), ("icvl_mirrored", True)):
        res[key] = icvl_summary(*icvl_poses(args.icvl, args.icvl_frames, mirror), tips)
    fresh = sample_articulation(torch.Generator().manual_seed(args.seed + 1), res["icvl"]["frames"],
                                cfg.articulation)  # fmt: skip
    res["nn_ref_mm"] = nearest_tip_distance(reference_fk(fresh).joints[:, TIPS], tips).tolist()
    res["seconds"] = time.perf_counter() - t0
    print(markdown(res))
    print(f"total {res['seconds']:.0f} s")
    if args.json:
        write_text(args.json, json.dumps(res))
    if args.plot:
        plot(res, args.plot)


if __name__ == "__main__":
    main()
