"""A hand locator against the shipped one, under a model trained on the shipped one's centres:
the figures a locator's gate reads (docs/benchmarks.md, "The waving-person locator, a second
gate"), on validation folders only.

    python benchmarks/locator_gate.py --sets /work/val3/{base,mesh,tof,stereo,ego,desk} \
        --candidate phases=4 --save /tmp/gate.npz
    python benchmarks/locator_gate.py --sets ... --candidate runs/locator/best --classifier

Each frame's mean joint error (mm; frames without a hand found count as far, as the protocol
scores them) with the model's own settings, once with its own locator and once with the
candidate (a locator folder, or ``phases=N``: the model's locator reading a frame at N grid
sampling phases, ``SegmentConfig.locator_phases``; or ``other=H``: the model's locator offering
a second candidate holding H of its heat, ``SegmentConfig.other_min_heat``; ``other=H,margin=D``
also ``SegmentConfig.other_margin``, else None); per source
(folders of the same name are pooled, e.g. ``a/ego`` and ``b/ego``) the means and the frames
over 50 mm, the frames whose error moved by more than 20 mm and their share of the mean; with
``--classifier``, the shipped handedness classifier's accuracy on every frame (its cubes at the
hand each locator finds). ``--save`` keeps the per-frame errors. ``--mirrored``: left hands
instead, every frame mirrored and estimated with ``hand="auto"`` (the one path where the locator
reads a left hand as shown).
``--sheet ../shared/data/sr305``: the real SR305 frames (unlabelled, so not scored): the pixel
each locator puts the centre on, and the frames where the two lie over 40 px apart, for a person
to look at (for ``other=H``, the estimator's centres: the choice is made after the locator).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from handvox.cli.demo import read_sr305
from handvox.estimator.handedness import right_logits, shipped_handedness
from handvox.estimator.pipeline import DEFAULT_MODEL_DIR, HandPoseEstimator, hand_volumes
from handvox.estimator.weights import load_model
from handvox.eval.protocol import failures_as_far, predict_dataset
from handvox.io.synthetic import SyntheticDataset


def _estimator(model_dir: Path, candidate: str | None) -> HandPoseEstimator:
    model = load_model(model_dir)
    seg = model.config.segment
    if candidate and candidate.startswith("phases="):
        seg = dataclasses.replace(seg, locator_phases=int(candidate.split("=")[1]))
    elif candidate and candidate.startswith("other="):
        heat, _, margin = candidate.removeprefix("other=").partition(",margin=")
        seg = dataclasses.replace(seg, other_min_heat=float(heat),
                                  other_margin=float(margin) if margin else None)  # fmt: skip
    elif candidate:
        seg = dataclasses.replace(seg, locator=str(Path(candidate).resolve()))
    model.config = dataclasses.replace(model.config, segment=seg)
    return HandPoseEstimator(model)


def frame_errors(est: HandPoseEstimator, ds: SyntheticDataset) -> np.ndarray:
    """``(N,)`` mean joint error (mm) of each frame of ``ds``."""
    pred, gt, _ = predict_dataset(est, ds, progress=False)
    return np.linalg.norm(failures_as_far(pred, gt) - gt, axis=-1).mean(-1)


def mirrored_frame_errors(est: HandPoseEstimator, ds: SyntheticDataset) -> np.ndarray:
    """``(N,)`` mean joint error (mm) of each frame of ``ds`` mirrored (a left hand: the image
    flipped left to right, seen through :meth:`~handvox.camera.Camera.mirrored`, the joints
    ``x -> -x``), estimated with ``hand="auto"`` (the classifier decides, the locator reading the
    frame as shown first); as :func:`frame_errors`, every frame scored."""
    est = est.without_check()
    preds, gts = [], []
    for start in range(0, len(ds), 16):
        recs = [ds[i] for i in range(start, min(start + 16, len(ds)))]
        depth = np.ascontiguousarray(np.stack([r.depth for r in recs])[:, :, ::-1])
        pred = est(depth, recs[0].camera.mirrored(), hand="auto")
        preds.append(np.where(pred.found[:, None, None], pred.joints_xyz, np.nan))
        gts.append(np.stack([r.joints_xyz for r in recs]) * np.array([-1.0, 1.0, 1.0]))
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    return np.linalg.norm(failures_as_far(pred, gt) - gt, axis=-1).mean(-1)


def classifier_right(est: HandPoseEstimator, ds: SyntheticDataset) -> tuple[int, int]:
    """Frames the shipped handedness classifier calls right (every frame is a right hand) and
    frames whose hand was found, with ``est``'s locator."""
    side = shipped_handedness()
    if side is None:
        raise SystemExit("the package holds no handedness classifier")
    angles = side.config.angles_deg
    right = found = 0
    for i in range(len(ds)):
        rec = ds[i]
        seg = est.segment(rec.depth[None], rec.camera, None)[0]
        if not seg.found:
            continue
        cubes = torch.cat([hand_volumes(rec.depth[None], [seg], rec.camera, side.config.volume,
                                        angle_deg=float(a)) for a in angles])  # fmt: skip
        right += int(right_logits(side, cubes)[0] > 0)
        found += 1
    return right, found


def _table(errs: dict) -> tuple[dict, dict]:
    """The per-source table and the moved frames (own locator against the candidate); the
    per-source errors of each."""
    own = {s: np.concatenate(v) for s, v in errs["own"].items()}
    new = {s: np.concatenate(v) for s, v in errs["candidate"].items()}
    print("| source | frames | mean, own locator / candidate (mm) | frames over 50 mm |")
    print("| --- | ---: | ---: | ---: |")
    for s in own:
        print(f"| {s} | {len(own[s])} | {own[s].mean():.2f} / {new[s].mean():.2f} | "
              f"{(own[s] > 50).sum()} / {(new[s] > 50).sum()} |")  # fmt: skip
    a, b = np.concatenate(list(own.values())), np.concatenate(list(new.values()))
    print(f"| all | {len(a)} | **{a.mean():.3f} / {b.mean():.3f}** ({b.mean() - a.mean():+.3f}) | "
          f"{(a > 50).sum()} / {(b > 50).sum()} |")  # fmt: skip
    d = b - a
    moved = np.abs(d) > 20
    share, rest = d[moved].sum() / len(d), d[~moved].sum() / len(d)
    print(f"frames moved by > 20 mm: {moved.sum()} ({(d[moved] > 0).sum()} worse), "
          f"{share:+.3f} mm of the mean; the others {rest:+.3f}; "
          f"medians {np.median(a):.2f} / {np.median(b):.2f}")  # fmt: skip
    return own, new


def sheet(ests: dict[str, HandPoseEstimator], folder: Path, whole: bool = False) -> None:
    """The centre's pixel by each estimator's locator on the SR305 frames of ``folder``;
    ``whole``: the estimator's own (its last cube's centre, the frames read as right hands), for
    a candidate that acts after the locator (``other=H``)."""
    frames, cam = read_sr305(folder)
    moved = []
    for name, depth in frames:
        uv = []
        for est in ests.values():
            if whole:
                pred = est.without_check()(depth[None], cam, hand="right")
                uv.append(pred.com_uvd[0, :2])
                continue
            seg = est.segment(depth[None], cam, None)[0]
            uv.append(seg.com_uvd[:2] if seg.found else np.full(2, np.nan))
        far = not np.linalg.norm(uv[0] - uv[1]) <= 40.0
        moved += [name] if far else []
        print(f"{name}: own ({uv[0][0]:.0f}, {uv[0][1]:.0f}), candidate ({uv[1][0]:.0f}, "
              f"{uv[1][1]:.0f}){'  <- moved' if far else ''}")  # fmt: skip
    print(f"{len(moved)} of {len(frames)} SR305 frames moved over 40 px: {', '.join(moved) or '-'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=Path, nargs="*", default=[],
                    help="rendered validation folders (handvox synth)")  # fmt: skip
    ap.add_argument(
        "--candidate",
        required=True,
        help="a locator folder, phases=N (the model's locator at N sampling phases) or other=H "
        "(a second candidate holding H of the heat, chosen by handedness; other=H,margin=D: "
        "taken where the classifier finds it less left than the first by D)",
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--classifier", action="store_true", help="the handedness classifier too")
    ap.add_argument("--save", type=Path, help="an .npz for the per-frame errors")
    ap.add_argument("--sheet", type=Path, help="the SR305 folder: each locator's centres there")
    ap.add_argument("--mirrored", action="store_true", help="left hands: every frame mirrored, "
                    'estimated with hand="auto"')  # fmt: skip
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ests = {
        "own": _estimator(args.model, None),
        "candidate": _estimator(args.model, args.candidate),
    }
    errs: dict[str, dict[str, list]] = {k: defaultdict(list) for k in ests}
    right = {k: [0, 0] for k in ests}
    for folder in args.sets:
        ds = SyntheticDataset(folder, load_clean=False)
        for k, est in ests.items():
            score = mirrored_frame_errors if args.mirrored else frame_errors
            errs[k][folder.name].append(score(est, ds))
            if args.classifier:
                r, n = classifier_right(est, ds)
                right[k][0] += r
                right[k][1] += n
    left = "; left hands (mirrored frames, hand=auto)" if args.mirrored else ""
    print(f"candidate: {args.candidate}; model: {args.model}{left}")
    own, new = _table(errs) if args.sets else ({}, {})
    if args.classifier:
        for k, (r, n) in right.items():
            pct = 100 * r / max(n, 1)
            print(f"handedness classifier, {k} locator: {pct:.2f} % right of {n} found")
    if args.sheet:
        sheet(ests, args.sheet, whole=bool(args.candidate) and args.candidate.startswith("other="))
    if args.save and own:
        np.savez(args.save, **{f"own_{s}": v for s, v in own.items()},
                 **{f"candidate_{s}": v for s, v in new.items()})  # fmt: skip


if __name__ == "__main__":
    main()
