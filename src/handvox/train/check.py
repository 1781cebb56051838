"""Training the hand check (:mod:`handvox.estimator.check`) on rendered frames with and without
their hand (``handvox synth --no-hand-prob``).

Each frame goes through the estimator's own first stages, as at test time: the segmentation
(:func:`handvox.estimator.locate.find_hand`, the pose model's segment config) and the TSDF cube
around its centre (:func:`handvox.estimator.pipeline.hand_volumes`, the check's cube). A frame
whose segmentation finds nothing is left out (the check never sees it at test time either). Its
labels: ``hand`` = the hand is shown and the cube's centre lies within
:data:`~handvox.estimator.check.ON_HAND_MM` of the joints' mean; ``left`` = the cube was flipped
along x (half the frames, drawn per step: a mirrored right hand is a left one), learned on hand
frames only.

Validation: held-out frames (other seeds, other hand shapes) scored unflipped and flipped; the
model kept is the one with the lowest validation loss. :func:`check_metrics` is what the
benchmarks report (AUROC of hand vs not, accuracy of left vs right).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from handvox.atomic import atomic_path
from handvox.estimator.check import (
    ON_HAND_MM,
    SPREAD_MM,
    HandCheckConfig,
    HandCheckNet,
    load_hand_check,
    save_hand_check,
)
from handvox.estimator.locate import find_hand
from handvox.estimator.pipeline import HandPoseEstimator, hand_volumes
from handvox.estimator.segment import SegmentConfig
from handvox.io.synthetic import SyntheticDataset
from handvox.train.logs import progress_bar, say

CACHE_VERSION = 1


def check_frames(
    root: str | Path, segment: SegmentConfig, config: HandCheckConfig, progress: bool = True
) -> dict[str, torch.Tensor]:
    """The check's inputs and labels of a synthetic folder: ``volume`` ``(N, 1, D, D, D)``
    float16, ``hand`` ``(N,)`` bool, ``shown`` ``(N,)`` bool, ``centre_mm`` ``(N,)`` float32
    (segmented centre to the joints' mean), ``frame`` ``(N,)`` int64 (indices into the folder);
    frames whose segmentation found nothing are left out."""
    ds = SyntheticDataset(root, load_clean=False)
    shown = ds.extras.get("hand_shown")
    shown = np.ones(len(ds), bool) if shown is None else shown.reshape(len(ds)).astype(bool)
    vols, hand, show, err, idx = [], [], [], [], []
    for i in progress_bar(range(len(ds)), show=progress, desc=Path(root).name, unit="frame"):
        depth = ds.depth_mm(i, "raw")
        seg = find_hand(depth, ds.camera, segment)
        if not seg.found:
            continue
        vols.append(hand_volumes(depth[None], [seg], ds.camera, config.volume)[0].half())
        e = float(np.linalg.norm(seg.com_xyz - ds.joints_xyz[i].mean(0)))
        hand.append(bool(shown[i]) and e <= ON_HAND_MM)
        show.append(bool(shown[i]))
        err.append(e)
        idx.append(i)
    d = config.volume.size
    return {
        "volume": torch.stack(vols) if vols else torch.zeros((0, 1, d, d, d), dtype=torch.half),
        "hand": torch.tensor(hand, dtype=torch.bool),
        "shown": torch.tensor(show, dtype=torch.bool),
        "centre_mm": torch.tensor(err, dtype=torch.float32),
        "frame": torch.tensor(idx, dtype=torch.int64),
    }


def cached_check_frames(root: str | Path, cache: Path, segment: SegmentConfig,
                        config: HandCheckConfig, progress: bool = True) -> dict:  # fmt: skip
    """:func:`check_frames`, kept in ``cache`` (a ``.pt`` file) for the same inputs."""
    key = {"root": str(Path(root).resolve()), "segment": asdict(segment),
           "volume": asdict(config.volume), "version": CACHE_VERSION}  # fmt: skip
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        if json.loads(saved["key"]) == json.loads(json.dumps(key)):
            return saved["data"]
    data = check_frames(root, segment, config, progress)
    with atomic_path(cache) as tmp:
        torch.save({"key": json.dumps(key), "data": data}, tmp)
    return data


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative (ties count half)."""
    score, positive = np.asarray(score, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.inference_mode()
def predict_check(net: HandCheckNet, volume: torch.Tensor, flip: bool = False,
                  batch: int = 128) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``p(hand)``, ``p(left)`` of cached volumes (flipped along x with ``flip``)."""
    net.eval()
    out = []
    for s in range(0, len(volume), batch):
        x = volume[s : s + batch].float()
        out.append(torch.sigmoid(net(x.flip(-1) if flip else x)))
    p = torch.cat(out).double().numpy() if out else np.zeros((0, 2))
    return p[:, 0], p[:, 1]


def check_metrics(net: HandCheckNet, data: dict, threshold: float = 0.5) -> dict:
    """AUROC of hand vs not (every frame as it is), accuracy of left vs right on the hand frames
    (each scored as it is, a right hand, and flipped, a left one), the share of hand frames kept
    and of non-hand frames rejected at ``threshold``."""
    p_hand, p_left = predict_check(net, data["volume"])
    _, p_left_flipped = predict_check(net, data["volume"], flip=True)
    hand = data["hand"].numpy()
    right_ok = p_left[hand] < 0.5
    left_ok = p_left_flipped[hand] >= 0.5
    return {
        "frames": int(len(hand)),
        "hand_frames": int(hand.sum()),
        "auroc": auroc(p_hand, hand),
        "hands_kept": float((p_hand[hand] >= threshold).mean()) if hand.any() else float("nan"),
        "non_hands_rejected": float((p_hand[~hand] < threshold).mean())
        if (~hand).any()
        else float("nan"),
        "handedness_accuracy": float(np.r_[right_ok, left_ok].mean())
        if hand.any()
        else float("nan"),
    }


@dataclass
class CheckTrainConfig:
    """Steps of Adam on batches of ``batch_size``; the learning rate falls along a cosine
    (``torch.optim.lr_scheduler.CosineAnnealingLR``) from ``lr``."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_every: int = 250
    seed: int = 0


def train_check(
    train: dict,
    val: dict,
    out: str | Path,
    config: HandCheckConfig,
    run: CheckTrainConfig,
    meta: dict,
    progress: bool = True,
) -> dict:
    """Train a :class:`HandCheckNet` on ``train`` (:func:`check_frames` outputs, concatenated),
    keep the weights of the lowest validation loss, save them into ``out``; returns the log."""
    torch.manual_seed(run.seed)
    g = torch.Generator().manual_seed(run.seed)
    net = HandCheckNet(config.width, config.volume.size)
    opt = torch.optim.AdamW(net.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=run.steps)
    n = len(train["hand"])
    # Hands and not-hands equally often in a batch, whatever their shares in the data.
    pos, neg = torch.nonzero(train["hand"])[:, 0], torch.nonzero(~train["hand"])[:, 0]
    weights = torch.where(train["hand"], 0.5 / max(1, len(pos)), 0.5 / max(1, len(neg)))
    log, best, best_state = [], float("inf"), None
    t0 = time.perf_counter()
    bar = progress_bar(range(1, run.steps + 1), show=progress, desc="hand check", unit="step")
    for step in bar:
        net.train()
        idx = torch.multinomial(weights, run.batch_size, replacement=True, generator=g)
        flip = torch.rand(run.batch_size, generator=g) < 0.5
        x = train["volume"][idx].float()
        x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
        hand = train["hand"][idx].float()
        logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], hand)
        # Handedness is learned on hands only (a box has none).
        side = F.binary_cross_entropy_with_logits(logits[:, 1], flip.float(), reduction="none")
        loss = loss + (side * hand).sum() / hand.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % run.val_every == 0 or step == run.steps:
            m = check_metrics(net, val)
            v = validation_loss(net, val)
            row = {"step": step, "train_loss": float(loss.detach()), "val_loss": v, **m,
                   "time_s": time.perf_counter() - t0}  # fmt: skip
            log.append(row)
            say(f"step {step}: val loss {v:.4f}, AUROC {m['auroc']:.4f}, "
                f"handedness {m['handedness_accuracy']:.4f}")  # fmt: skip
            if v < best:
                best = v
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    chosen = min(log, key=lambda r: r["val_loss"])
    keys = ("step", "auroc", "hands_kept", "non_hands_rejected", "handedness_accuracy")
    info = {**meta, "train": asdict(run), "train_frames": n, "log": log, "best_val_loss": best,
            "validation": {k: chosen[k] for k in keys}}  # fmt: skip

    save_hand_check(net, config, out, info)
    return info


@torch.inference_mode()
def validation_loss(net: HandCheckNet, val: dict) -> float:
    """Mean hand loss plus handedness loss (hand frames, both ways) on the validation frames."""
    total = 0.0
    for flip in (False, True):
        p_hand, p_left = predict_check(net, val["volume"], flip=flip)
        hand = val["hand"].numpy()
        eps = 1e-7
        ph, pl = np.clip(p_hand, eps, 1 - eps), np.clip(p_left, eps, 1 - eps)
        total += -np.mean(np.where(hand, np.log(ph), np.log(1 - ph))) / 2
        side = np.log(pl) if flip else np.log(1 - pl)
        total += -np.mean(side[hand]) / 2
    return float(total)


def calibrate_spread(folder: str | Path, model: str | Path, roots: list[Path],
                     frames: int = 300, progress: bool = True) -> float:  # fmt: skip
    """Set the check's ``spread_mm`` (where the per-joint confidence halves) to the median
    test-time-view spread of the pose model ``model`` on up to ``frames`` hand frames of the
    validation folders ``roots``; rewrites ``folder/config.json``; returns the value."""
    check = load_hand_check(folder)
    est = HandPoseEstimator.from_folder(model, hand_check=False)
    spreads = []
    per_root = max(1, frames // len(roots))
    for root in roots:
        ds = SyntheticDataset(root, load_clean=False)
        shown = ds.extras.get("hand_shown")
        keep = [i for i in range(len(ds)) if shown is None or shown[i].all()][:per_root]
        for i in progress_bar(keep, show=progress, desc=f"spread {Path(root).name}"):
            pred = est(ds.depth_mm(i, "raw"), ds.camera)
            if pred.found[0]:
                spreads.append(float(-np.log2(pred.joint_confidence[0]).mean()))
    # joint_confidence = 2^(-spread / SPREAD_MM) with this estimator's scale (no check): undone
    value = float(np.median(spreads)) * SPREAD_MM if spreads else SPREAD_MM
    config = replace(check.config, spread_mm=round(value, 3))
    meta = {**check.meta, "spread_from": {"frames": len(spreads), "median_mm": value}}
    save_hand_check(check.net, config, folder, meta)
    return value


def choose_threshold(folder: str | Path, val: dict, keep: float = 0.995) -> float:
    """Set the check's ``threshold`` so that ``keep`` of the validation frames' hands (their
    cubes on the hand) pass it: the ``1 - keep`` quantile of their ``p(hand)``; rewrites
    ``folder/config.json``; returns the threshold."""
    check = load_hand_check(folder)
    p_hand, _ = predict_check(check.net, val["volume"])
    hand = val["hand"].numpy()
    t = float(np.quantile(p_hand[hand], 1.0 - keep)) if hand.any() else 0.5
    rejected = float((p_hand[~hand] < t).mean()) if (~hand).any() else float("nan")
    config = replace(check.config, threshold=round(t, 4))
    meta = {**check.meta, "threshold_from": {"keep": keep, "hand_frames": int(hand.sum()),
                                             "non_hands_rejected": rejected}}  # fmt: skip
    save_hand_check(check.net, config, folder, meta)
    return t
