"""The Hand3D ablation (paper Sec. 4.4, Fig. 9) on handvox's synthetic data: base, + augmentation,
+ refinement, + both, each trained under one budget and scored on one held-out test set.

Variants (the paper's "augmentation" is data synthesized by pose transfer, Sec. 3.3; its
"refinement" the TSDF refinement net in front of the pose net, Sec. 3.1):

* ``base``: pose net only; pose-sampler data (``handvox synth``); no online augmentation.
* ``aug``: pose net only; pose-sampler + pose-transfer data (``handvox transfer``) and online
  3D augmentation (rotation, scale, COM jitter: :class:`handvox.train.augment.AugmentConfig`).
* ``refine``: refinement net pre-trained on (raw, clean) TSDF pairs (mode ``refine``), then both
  nets fine-tuned together on the pose loss (mode ``finetune``); data and augmentation of base.
* ``both``: ``refine`` with the data and augmentation of ``aug``.

One budget: every variant takes ``--steps`` optimiser steps at ``--batch-size`` (the refinement
variants ``--refine-steps`` of them pre-training); each training stage runs Adam with a cosine
schedule with linear warmup spanning exactly its steps. The model at the end of the budget
(``last/``) is scored with the exact fp32 networks on the held-out protocol
(:mod:`handvox.eval.protocol`: a hand shape and seed never trained on; a frame without a hand found
counts as a failure).

Resumable: each variant trains into ``OUT/<variant>/<stage>/`` with
:func:`handvox.train.trainer.train`; a rerun skips finished stages, resumes killed ones and reuses
the test predictions. Outputs: ``OUT/report.md``, ``metrics.json``, ``curve.png``,
``per_joint.png``.

    handvox synth --out data/synth --frames 20000 --workers 2
    handvox transfer --from nyu_train_labels.txt --dataset nyu --out data/transfer \\
        --shapes 5 --views 4
    python benchmarks/ablation.py --sampler data/synth --transfer data/transfer \\
        --test data/test --out runs/ablation --steps 6000 --refine-steps 1500
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handvox.atomic import atomic_path, write_text
from handvox.errors import HandvoxError
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.presets import small_estimator
from handvox.eval.files import MethodResult, score
from handvox.eval.protocol import failures_as_far, make_test_set, predict_dataset
from handvox.eval.report import build_metrics, render_markdown, write_report
from handvox.io.datasets import DatasetSpec
from handvox.io.synthetic import SyntheticDataset
from handvox.joints import get_joint_set
from handvox.train.augment import AugmentConfig
from handvox.train.config import TrainConfig
from handvox.train.logs import say
from handvox.train.state import STATE_NAME, read_state
from handvox.train.trainer import train

JOINT_SET = "canonical21"
PAPER_SIZE = 60


@dataclass(frozen=True)
class Variant:
    """One column of Fig. 9: its name in the paper, whether it uses the pose-transfer data with
    online augmentation, and whether it has the refinement net."""

    key: str
    label: str
    augmented: bool
    refined: bool

    def describe(self, refine_steps: int) -> str:
        nets = (
            f"refinement net ({refine_steps} steps pre-trained) + pose net"
            if self.refined
            else "pose net"
        )
        data = (
            "sampler + transfer data, online augmentation"
            if self.augmented
            else "sampler data, no augmentation"
        )
        return f"{nets}; {data}"


VARIANTS = {
    v.key: v
    for v in (
        Variant("base", "Base", False, False),
        Variant("aug", "Base + Aug", True, False),
        Variant("refine", "Base + Refine", False, True),
        Variant("both", "Base + Aug + Refine", True, True),
    )
}
# Settings a rerun into the same --out must keep (the rest only change how it runs).
FIXED = ("sampler", "transfer", "steps", "refine_steps", "volume_size", "batch_size", "lr",
         "warmup", "amp", "seed", "val_frames")  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One :func:`handvox.train.trainer.train` run of a variant: folder name, mode and steps."""

    name: str
    mode: str
    steps: int


def stages(variant: Variant, steps: int, refine_steps: int) -> list[Stage]:
    """The training runs of ``variant`` within the budget of ``steps`` optimiser steps."""
    if not variant.refined:
        return [Stage("pose", "pose", steps)]
    return [Stage("pretrain", "refine", refine_steps),
            Stage("finetune", "finetune", steps - refine_steps)]  # fmt: skip


def model_dir(out: str | Path, variant: str, steps: int = 1, refine_steps: int = 0) -> Path:
    """The model folder scored for ``variant``: the last stage's model at the end of the budget."""
    last = stages(VARIANTS[variant], steps, refine_steps)[-1]
    return Path(out) / variant / last.name / "last"


# --- training -------------------------------------------------------------------------------
def _share_scans(root: Path, run: Path) -> None:
    """Link segmentation scans cached by other stages into ``run/scan`` (file names are keys of
    source, frames and segmentation settings), so every source is segmented once."""
    (run / "scan").mkdir(parents=True, exist_ok=True)
    for scan in root.glob("*/*/scan/*.npz"):
        dest = run / "scan" / scan.name
        if not dest.exists() and scan.parent != dest.parent:
            try:
                dest.hardlink_to(scan)
            except OSError:
                pass  # another file system: the run scans for itself


def _stage_summary(run: Path) -> dict:
    state = read_state(run)
    return {
        "step": state.step,
        "time_s": state.time_s,
        "final": state.log[-1] if state.log else {},
        "best": state.best,
    }


def run_stage(cfg: TrainConfig, run: Path, steps: int, root: Path) -> dict:
    """Train ``cfg`` into ``run`` for exactly ``steps`` optimiser steps (resuming), ending with a
    validation of the final model; returns the stage summary (also ``run/stage.json``)."""
    done = run / "stage.json"
    if done.is_file():
        return json.loads(done.read_text())
    # total_steps: the schedule spans the budget, which ends with a validation and the models
    # saved, within an epoch or not; epochs only bounds it.
    cfg = dataclasses.replace(cfg, total_steps=steps, epochs=max(cfg.epochs, steps))
    state = run / STATE_NAME
    if state.is_file() and _stage_summary(run)["step"] >= steps:
        summary = _stage_summary(run)  # finished, killed before stage.json was written
    else:
        _share_scans(root, run)
        train(cfg, run)
        summary = _stage_summary(run)
    if summary["step"] != steps:
        raise HandvoxError(f"{run}: stopped at step {summary['step']}, not {steps}")
    write_text(done, json.dumps(summary, indent=2) + "\n")
    return summary


def stage_config(args, variant: Variant, stage: Stage, init: Path | None) -> TrainConfig:
    data = [DatasetSpec("synthetic", str(args.sampler))]
    if variant.augmented:
        data.append(DatasetSpec("synthetic", str(args.transfer)))
    est = small_estimator(JOINT_SET, refine=variant.refined, size=args.volume_size)
    return TrainConfig(
        data=tuple(data),
        joint_set=JOINT_SET,
        val_block=args.val_block,
        val_max_frames=args.val_frames,
        mode=stage.mode,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        warmup_steps=max(1, round(args.warmup * stage.steps)),
        init=None if init is None else str(init),
        estimator=est,
        augment=AugmentConfig(enabled=variant.augmented),
        seed=args.seed,
        num_workers=args.workers,
        device=args.device,
        amp=args.amp,
    )


def train_variant(args, variant: Variant) -> dict:
    """All stages of ``variant``; returns steps, training seconds and the final validation."""
    init, summaries = None, []
    for i, stage in enumerate(stages(variant, args.steps, args.refine_steps)):
        run = args.out / variant.key / stage.name
        _say(f"{variant.label}: stage {i + 1} ({stage.mode}, {stage.steps} steps) in {run}")
        cfg = stage_config(args, variant, stage, init)
        summaries.append(run_stage(cfg, run, stage.steps, args.out))
        init = run / "last"
    final = summaries[-1]["final"]
    return {
        "steps": sum(s["step"] for s in summaries),
        "train_s": sum(s["time_s"] for s in summaries),
        "val_mm": final.get("val_mm"),
        "val_pct": {t: final.get(f"val_pct{t}") for t in (20, 40, 50)},
        "stages": summaries,
    }


# --- testing --------------------------------------------------------------------------------
def open_test_set(args) -> SyntheticDataset:
    """The held-out test set in ``--test``, rendered (or completed) when missing."""
    if (args.test / "meta.json").is_file():
        ds = SyntheticDataset(args.test, joint_set=JOINT_SET, load_clean=False)
        if not ds.missing_chunks:
            return ds
    _say(f"rendering the held-out test set ({args.test_frames} frames) into {args.test}")
    return make_test_set(args.test, args.test_frames, workers=max(1, args.workers))


def test_variant(args, variant: Variant, ds: SyntheticDataset) -> tuple[MethodResult, int]:
    """Score the variant's final model on ``ds``: the scores and the number of frames without a
    hand found. Predictions are kept in the variant's folder (``test_pred.npz``) and reused
    while the model's weights and the test set are the same."""
    model = model_dir(args.out, variant.key, args.steps, args.refine_steps)
    cache = args.out / variant.key / "test_pred.npz"
    with open(model / "model.safetensors", "rb") as f:
        weights = hashlib.file_digest(f, "sha1").hexdigest()
    ident = json.dumps({"test": str(args.test), "frames": len(ds), "weights": weights})
    gt = None
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["ident"]) == ident:
                pred, gt = z["pred"], z["gt"]
    if gt is None:
        _say(f"{variant.label}: scoring {model} on {len(ds)} test frames")
        est = HandPoseEstimator.from_folder(model, device=args.score_device, fast=False)
        pred, gt, _ = predict_dataset(est, ds, batch=16)
        with atomic_path(cache) as tmp:
            np.savez(tmp, pred=pred, gt=gt, ident=np.array(ident))
    # Frames without a hand found stay in, placed far from the truth: they fail every threshold.
    missed = int(np.isnan(pred).any(axis=(1, 2)).sum())
    return score(failures_as_far(pred, gt), gt, variant.label, model, "xyz"), missed


# --- report ---------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def ablation_table(rows: list[dict]) -> str:
    """The Markdown table of the ablation: one row per variant."""
    head = ["Variant", "What it has", "Steps", "Training (min)", "Validation error (mm)",
            "Test mean error (mm)", "≤20 mm (%)", "≤40 mm (%)", "≤50 mm (%)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        pct = r["test_pct"]
        cells = [r["label"], r["has"], str(r["steps"]), _fmt(r["train_s"] / 60),
                 _fmt(r["val_mm"], 2), _fmt(r["test_mean_mm"], 2),
                 *(_fmt(pct[str(t)]) for t in (20, 40, 50))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(args, rows: list[dict], metrics: dict, ds: SyntheticDataset) -> str:
    s = args.volume_size
    missed = rows[0]["test_missed"] if rows else 0
    head = [
        "# Ablation (Hand3D Fig. 9) on handvox synthetic data",
        "",
        f"- Volume: {s}^3 voxels of {300 / s:g} mm (the paper's 300 mm cube), **reduced from the "
        f"paper's {PAPER_SIZE}^3 x 5 mm**: a CPU cannot afford the paper's refinement net at "
        f"{PAPER_SIZE}^3. Pose net: the paper's convolutions, FC layers of 1024; refinement "
        "net: half the paper's channels (`handvox.estimator.presets.small_estimator`).",
        f"- Budget, the same for every variant: **{args.steps} optimiser steps** at batch "
        f"{args.batch_size}; the refinement variants spend {args.refine_steps} of them "
        "pre-training the refinement net on (raw, clean) TSDF pairs and the rest training both "
        f"nets on the pose loss. Adam, learning rate {args.lr:g}, cosine schedule over each "
        f"training stage after a linear warmup of {args.warmup:.0%} of it; amp: {args.amp}.",
        f"- Data: pose sampler `{args.sampler}`; pose transfer `{args.transfer}` (the paper's "
        "augmentation) with online rotation, scale and COM jitter for the augmented variants.",
        f"- Test: `{args.test}`, {len(ds)} frames (held-out hand shape and seed, noisy depth, "
        f"hand centre from segmentation); {missed} frames without a hand found count as "
        "failures. Networks run exactly as trained (fp32).",
        "- Validation error: the final model on the variant's own validation frames (a share "
        "of its training sources), so it compares variants with the same data only; the test "
        "columns compare all. Training minutes: wall time of all stages, their validations "
        "included.",
        "",
        ablation_table(rows),
        "",
    ]
    # handvox's evaluation report (per-joint table, figures) one heading level down.
    body = render_markdown(metrics).splitlines()
    body = ["#" + line if line.startswith("#") else line for line in body]
    return "\n".join(head + body) + "\n"


def _say(msg: str) -> None:
    say(f"ablation: {msg}")


# --- command line ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sampler", type=Path, required=True, help="a handvox synth folder")
    ap.add_argument("--transfer", type=Path, required=True, help="a handvox transfer folder")
    ap.add_argument("--test", type=Path, required=True,
                    help="held-out test set folder (rendered with protocol.make_test_set "
                         "when missing)")  # fmt: skip
    ap.add_argument("--test-frames", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps per variant")
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        help="of --steps, pre-training the refinement net (default: a quarter)",
    )
    ap.add_argument("--volume-size", type=int, default=24, help="voxels per edge (300/S mm)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=float, default=0.05,
                    help="linear warmup, fraction of each stage's steps")  # fmt: skip
    ap.add_argument("--variants", default="base,aug,refine,both")
    ap.add_argument("--workers", type=int, default=2, help="data loading processes")
    ap.add_argument("--amp", choices=("bf16", "none"), default="bf16")
    ap.add_argument("--device", default="auto", help="training device (auto: cuda if any)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-frames", type=int, default=500, help="validation frames at most")
    args = ap.parse_args(argv)

    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or not args.variants:
        ap.error(f"--variants: unknown {unknown}; choose from {','.join(VARIANTS)}")
    args.variants = [k for k in VARIANTS if k in args.variants]  # the paper's order
    if args.refine_steps is None:
        args.refine_steps = args.steps // 4
    refined = any(VARIANTS[k].refined for k in args.variants)
    if args.steps < 1 or (refined and not 0 < args.refine_steps < args.steps):
        ap.error("--steps >= 1 and, for the refinement variants, 0 < --refine-steps < --steps")
    if args.volume_size < 8 or args.volume_size % 4:
        ap.error("--volume-size must be a multiple of 4 (two poolings), at least 8")
    for name in ("sampler", "transfer", "test", "out"):
        setattr(args, name, getattr(args, name).resolve())
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    args.score_device = "cuda" if cuda else "cpu"
    return args


def _check_settings(args) -> None:
    """Refuse an --out holding a run with other training settings."""
    now = {k: str(getattr(args, k)) for k in FIXED}
    path = args.out / "ablation.json"
    if path.is_file():
        before = json.loads(path.read_text())
        diff = [k for k in FIXED if before.get(k) != now[k]]
        if diff:
            raise HandvoxError(
                f"{args.out} holds an ablation with other settings ({', '.join(diff)}); "
                "use another --out"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(now, indent=2) + "\n")


def _val_block(sampler: Path) -> int:
    # Validation takes blocks of consecutive frames; a small set needs small blocks to have any.
    n = len(SyntheticDataset(sampler, joint_set=JOINT_SET, load_clean=False))
    return int(min(50, max(1, n // 10)))


def main(argv: list[str] | None = None) -> dict:
    """Run the ablation; returns the content of ``metrics.json``."""
    args = parse_args(argv)
    _check_settings(args)
    args.val_block = _val_block(args.sampler)
    ds = open_test_set(args)
    rows, results = [], []
    for k, key in enumerate(args.variants):
        variant = VARIANTS[key]
        has = variant.describe(args.refine_steps)
        _say(f"[{k + 1}/{len(args.variants)}] {variant.label}: {has}")
        trained = train_variant(args, variant)
        res, missed = test_variant(args, variant, ds)
        results.append(res)
        rows.append({
            "variant": key,
            "label": variant.label,
            "has": has,
            "augmented": variant.augmented,
            "refined": variant.refined,
            "steps": trained["steps"],
            "train_s": round(trained["train_s"], 1),
            "val_mm": trained["val_mm"],
            "val_pct": trained["val_pct"],
            "test_mean_mm": res.mean_error,
            "test_pct": {str(t): p for t, p in res.table().items()},
            "test_missed": missed,
            "model": str(model_dir(args.out, key, args.steps, args.refine_steps)),
        })  # fmt: skip

    joint_set = get_joint_set(JOINT_SET)
    # The full method first: handvox's figures draw the first method highlighted.
    shown = results[::-1]
    metrics = build_metrics("synthetic", joint_set, ds.camera, args.test, shown)
    metrics["ablation"] = {
        "paper": "Hand3D (Deng et al.), Sec. 4.4, Fig. 9",
        "volume": {
            "size": args.volume_size,
            "voxel_mm": 300 / args.volume_size,
            "paper_size": PAPER_SIZE,
        },
        "budget": {
            "steps": args.steps,
            "refine_steps": args.refine_steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "schedule": "cosine",
            "warmup_fraction": args.warmup,
            "amp": args.amp,
        },
        "data": {"sampler": str(args.sampler), "transfer": str(args.transfer)},
        "test_frames": len(ds),
        "variants": rows,
    }
    markdown = render_report(args, rows, metrics, ds)
    write_report(args.out, metrics, markdown, shown, joint_set)
    print(ablation_table(rows))
    print(f"report: {args.out / 'report.md'}")
    return metrics


if __name__ == "__main__":
    main()
