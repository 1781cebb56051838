"""Contact sheet: the LibHand skinned mesh hand beside the capsule hand, in the 20 gestures.

    .venv/bin/python benchmarks/skinned_sheet.py --out sheet.png [--bones libhand]
        [--yaw 25] [--pitch -20] [--depth 450] [--size 256] [--no-skeleton]

A thin wrapper over :func:`handvox.synth.preview.skinned_sheet` (``handvox demo`` draws the same
sheet): each gesture of :data:`handvox.hand.poses.GESTURES` posed with the same bones and root and
drawn twice with the NYU camera, the mesh of :func:`handvox.synth.skinned.libhand_hand`
rasterised (left) and the analytic primitives of :func:`handvox.synth.primitives.hand_primitives`
ray cast (right, no forearm; radii as the synthetic-data generator sets them), both with the
ground-truth joints of forward kinematics. ``--bones`` is ``libhand`` (the mesh's own fitted
bones) or a base shape of :mod:`handvox.hand.shapes` (the mesh then stretches and thickens to it).
"""

from __future__ import annotations

import argparse

import torch

from handvox.hand.shapes import SHAPE_NAMES, base_shape
from handvox.synth.preview import skinned_sheet
from handvox.viz.draw import save_png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--bones", default="libhand", choices=("libhand", *SHAPE_NAMES))
    ap.add_argument("--yaw", type=float, default=25.0)
    ap.add_argument("--pitch", type=float, default=-20.0)
    ap.add_argument("--depth", type=float, default=450.0)
    ap.add_argument("--size", type=int, default=256, help="pixels per panel")
    ap.add_argument("--no-skeleton", action="store_true")
    args = ap.parse_args()
    bones = None if args.bones == "libhand" else base_shape(args.bones, torch.float64)
    sheet = skinned_sheet(bones, args.yaw, args.pitch, args.depth, args.size, not args.no_skeleton)
    save_png(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
