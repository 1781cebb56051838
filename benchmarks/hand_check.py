"""The hand check and the confidences (handvox.estimator.check) on held-out frames, through the
whole estimator (the shipped pose model or ``--model``, its segmentation, the shipped check).

Sets: synthetic folders rendered with ``handvox synth --no-hand-prob`` (hands and frames whose
hand was left out: held objects, forearms, objects near the hand, bodies, tables) on hand shapes
and seeds the check never trained on. Per set and over all:

1. **Hand vs not**: AUROC of the frame's confidence (0 where segmentation found nothing) with a
   frame's label "the hand is shown", and with "the cube is on the hand" (shown, and the
   segmented centre within ``ON_HAND_MM`` of the joints' mean: what the check is trained to
   tell); the share of hand frames kept (``found``) and of non-hand frames rejected at the
   check's threshold.
2. **Good vs bad estimates**: Spearman rank correlation of the confidence with the frame's mean
   joint error (negated: higher confidence, lower error), over the hand frames that segmentation
   found (their joints from the estimator without the check, so that rejected frames count too);
   per joint, the same of the joint confidences with the joint errors.
3. **Handedness**: every hand frame as it is (a right hand) and flipped left to right (a left
   hand seen through the mirrored camera): the share the check's ``p(left)`` calls right, and
   left (``hand="auto"`` follows it only for a check validated at >= 95 %).
4. **Real frames**: the NYU test frame and the 19 SR305 frames, as they are and mirrored:
   ``found``, ``p(hand)``, ``p(left)``, the confidence.

    python benchmarks/hand_check.py --sets /work/chk/data/test-nyu,... --out runs/hand-check

Prints Markdown tables; writes OUT/metrics.json and OUT/hand-check.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from handvox.atomic import atomic_path, write_text
from handvox.camera import Camera
from handvox.estimator.check import ON_HAND_MM
from handvox.estimator.pipeline import DEFAULT_MODEL_DIR, HandPoseEstimator
from handvox.io.sensor import sensor_for
from handvox.io.synthetic import SyntheticDataset
from handvox.train.check import auroc

SHARED = Path(__file__).resolve().parents[2] / "shared"


def score_set(root: Path, est: HandPoseEstimator, plain: HandPoseEstimator, limit: int) -> dict:
    ds = SyntheticDataset(root, load_clean=False)
    n = min(limit, len(ds))
    shown = ds.extras.get("hand_shown")
    shown = np.ones(len(ds), bool) if shown is None else shown.reshape(-1).astype(bool)
    rows = []
    for i in range(n):
        depth, truth = ds.depth_mm(i, "raw"), ds.joints_xyz[i]
        p = est(depth, ds.camera)
        q = plain(depth, ds.camera)  # joints also where the check rejects
        row = {
            "shown": bool(shown[i]),
            "segmented": bool(q.found[0]),
            "found": bool(p.found[0]),
            "conf": float(np.nan_to_num(p.confidence[0])),
            "p_hand": float(np.nan_to_num(p.p_hand[0])),
            "p_left": float(p.p_left[0]),
        }
        # the cube on the hand: what the check is trained to tell (the depth rule may centre it
        # on an object or the arm while the hand is in the frame)
        row["on_hand"] = bool(
            shown[i] and q.found[0] and np.linalg.norm(q.com_xyz[0] - truth.mean(0)) <= ON_HAND_MM
        )
        if q.found[0]:
            err = np.linalg.norm(q.joints_xyz[0] - truth, axis=-1)
            row["error"] = float(err.mean())
            row["joint_error"] = err.tolist()
            row["joint_conf"] = p.joint_confidence[0].tolist()
        if shown[i] and q.found[0]:
            # the check's p(left) as the frame is (a right hand) and flipped (a left one)
            flipped = np.ascontiguousarray(depth[:, ::-1])
            row["p_left_flipped"] = float(est(flipped, ds.camera.mirrored()).p_left[0])
        rows.append(row)
    return {"frames": n, "rows": rows}


def summarise(rows: list[dict]) -> dict:
    shown = np.array([r["shown"] for r in rows])
    conf = np.array([r["conf"] for r in rows])
    found = np.array([r["found"] for r in rows])
    hand_seg = [r for r in rows if r["shown"] and "error" in r]
    err = np.array([r["error"] for r in hand_seg])
    c = np.array([r["conf"] for r in hand_seg])
    je = np.concatenate([r["joint_error"] for r in hand_seg]) if hand_seg else np.zeros(0)
    jc = np.concatenate([r["joint_conf"] for r in hand_seg]) if hand_seg else np.zeros(0)
    side = [r for r in rows if "p_left_flipped" in r and np.isfinite(r["p_left"])]
    return {
        "frames": len(rows),
        "hand_frames": int(shown.sum()),
        "auroc_confidence": auroc(conf, shown),
        "auroc_p_hand": auroc(np.array([r["p_hand"] for r in rows]), shown),
        "auroc_on_hand": auroc(conf, np.array([r["on_hand"] for r in rows])),
        "cubes_on_hand": int(sum(r["on_hand"] for r in rows)),
        "hands_found": float(found[shown].mean()) if shown.any() else float("nan"),
        "non_hands_rejected": float((~found[~shown]).mean()) if (~shown).any() else float("nan"),
        "spearman_frame": float(spearmanr(c, -err).statistic) if len(err) > 2 else float("nan"),
        "spearman_joint": float(spearmanr(jc, -je).statistic) if len(je) > 2 else float("nan"),
        "mean_error_hand_frames": float(err.mean()) if len(err) else float("nan"),
        "right_as_right": float(np.mean([r["p_left"] < 0.5 for r in side])),
        "left_as_left": float(np.mean([r["p_left_flipped"] >= 0.5 for r in side])),
        "handedness_frames": len(side),
    }


def real_frames(est: HandPoseEstimator) -> list[dict]:
    out = []
    files = [SHARED / "data/nyu/depth_1_0000001.png"]
    files += sorted((SHARED / "data/sr305").rglob("*.png"))
    for f in files:
        nyu = "nyu" in f.parts
        spec = sensor_for(f, Camera.preset("nyu") if nyu else None, "nyu" if nyu else "", None)
        depth = spec.read(f)
        cam = spec.camera
        row = {"file": str(f.relative_to(SHARED))}
        for name, d, c in (
            ("as_is", depth, cam),
            ("mirrored", np.ascontiguousarray(depth[:, ::-1]), cam.mirrored()),
        ):
            p = est(d, c)
            row[name] = {
                "found": bool(p.found[0]),
                "p_hand": float(p.p_hand[0]),
                "p_left": float(p.p_left[0]),
                "confidence": float(p.confidence[0]),
            }
        out.append(row)
    return out


def plot(sets: dict, path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for k, (name, s) in enumerate(sets.items()):
        colour = f"C{k}"  # one colour a set in all three panels
        rows = s["rows"]
        shown = np.array([r["shown"] for r in rows])
        conf = np.array([r["conf"] for r in rows])
        order = np.argsort(-conf)
        tpr = np.r_[0, np.cumsum(shown[order]) / max(1, shown.sum())]
        fpr = np.r_[0, np.cumsum(~shown[order]) / max(1, (~shown).sum())]
        auroc = s["summary"]["auroc_confidence"]
        axes[0].plot(fpr, tpr, color=colour, label=f"{name} (AUROC {auroc:.3f})")
        hs = [r for r in rows if r["shown"] and "error" in r]
        axes[1].scatter(
            [r["conf"] for r in hs],
            [r["error"] for r in hs],
            s=6,
            alpha=0.5,
            color=colour,
            label=f"{name} (Spearman {s['summary']['spearman_frame']:.2f})",
        )
        axes[2].hist(
            [r["p_hand"] for r in rows if r["shown"]],
            bins=40,
            range=(0, 1),
            histtype="step",
            color=colour,
            label=f"{name}: hands",
        )
        axes[2].hist(
            [r["p_hand"] for r in rows if not r["shown"]],
            bins=40,
            range=(0, 1),
            histtype="step",
            linestyle="--",
            color=colour,
            label=f"{name}: not hands",
        )
    axes[0].plot([0, 1], [0, 1], color="0.7", lw=0.8)
    axes[0].set(
        xlabel="non-hand frames accepted",
        ylabel="hand frames accepted",
        title="hand vs not: ROC of the frame confidence",
    )
    axes[1].set(
        xlabel="frame confidence",
        ylabel="mean joint error (mm)",
        yscale="log",
        title="confidence against error (hand frames)",
    )
    axes[2].axvline(threshold, color="k", lw=0.8)
    axes[2].set(xlabel="p(hand)", ylabel="frames", yscale="log", title="the check's p(hand)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", required=True, help="comma-separated synthetic folders")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=300, help="frames per set (the first ones)")
    ap.add_argument(
        "--check",
        type=Path,
        help="hand check folder (default: the shipped one for the way the hand is found)",
    )
    ap.add_argument(
        "--segment",
        choices=["depth", "learned"],
        help="how the hand is found (default: the model's; the shipped one's is the locator)",
    )
    ap.add_argument("--model", type=Path, help="pose model folder (default: the shipped one)")
    ap.add_argument(
        "--rotations",
        help="test-time rotations, comma-separated degrees, or 'none' (default: the model's); "
        "with rotations an uncalibrated model's confidence is the views' agreement",
    )
    args = ap.parse_args()
    check = args.check if args.check else True
    model = args.model or DEFAULT_MODEL_DIR
    kw = {"segment_method": args.segment}
    if args.rotations:
        kw["test_rotations_deg"] = (
            () if args.rotations == "none" else tuple(map(float, args.rotations.split(",")))
        )
    est = HandPoseEstimator.from_folder(model, hand_check=check, **kw)
    plain = HandPoseEstimator.from_folder(model, hand_check=False, **kw)
    sets = {}
    for root in map(Path, args.sets.split(",")):
        s = score_set(root, est, plain, args.frames)
        s["summary"] = summarise(s["rows"])
        sets[root.name] = s
    every = summarise([r for s in sets.values() for r in s["rows"]])
    real = real_frames(est) if SHARED.is_dir() else []
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"sets": {k: v["summary"] for k, v in sets.items()}, "all": every, "real": real}
    write_text(args.out / "metrics.json", json.dumps(doc, indent=1) + "\n")
    plot(sets, args.out / "hand-check.png", est.check.config.threshold)

    print(
        "| set | frames (hands; cubes on them) | AUROC hand shown vs not | AUROC cube on the hand "
        "vs not | hands found | non-hands rejected | "
        "Spearman frame / joint | mean error (hand frames) | right as right | left as left |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s in [*((k, v["summary"]) for k, v in sets.items()), ("all", every)]:
        print(
            f"| {name} | {s['frames']} ({s['hand_frames']}; {s['cubes_on_hand']}) | "
            f"{s['auroc_confidence']:.4f} | {s['auroc_on_hand']:.4f} | "
            f"{100 * s['hands_found']:.1f} % | {100 * s['non_hands_rejected']:.1f} % | "
            f"{s['spearman_frame']:.2f} / {s['spearman_joint']:.2f} | "
            f"{s['mean_error_hand_frames']:.2f} mm | "
            f"{100 * s['right_as_right']:.1f} % | {100 * s['left_as_left']:.1f} % |"
        )
    if real:
        head = (
            "| real frame | found | p(hand) | p(left) | confidence | mirrored: p(hand) | p(left) |"
        )
        print("\n" + head)
        print("|---|---|---|---|---|---|---|")
        for r in real:
            a, m = r["as_is"], r["mirrored"]
            print(
                f"| {r['file']} | {a['found']} | {a['p_hand']:.2f} | {a['p_left']:.2f} | "
                f"{a['confidence']:.2f} | {m['p_hand']:.2f} | {m['p_left']:.2f} |"
            )


if __name__ == "__main__":
    main()
