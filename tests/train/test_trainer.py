"""``handvox train`` on the toy dataset: learning, logs and model folders, refinement
pre-training then fine-tuning, runs started from a model, kept checkpoints and their average,
the step budget and its schedule, bf16 autocast, and DDP under torchrun."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from handvox.errors import HandvoxError
from handvox.estimator.segment import segment_hand
from handvox.estimator.volume import decode_joints, projective_tsdf
from handvox.estimator.weights import average_models, load_model
from handvox.io.synthetic import SyntheticDataset
from handvox.train.config import TrainConfig
from handvox.train.logs import LOG_FIELDS
from handvox.train.state import STATE_NAME
from handvox.train.trainer import lr_schedule, train
from tests.tiny import tiny_config
from tests.train.toy import CAMERA, FRAMES, read_log, toy_config, weights

pytestmark = pytest.mark.usefixtures("one_thread")


def _closed_form(step: int, cfg: TrainConfig, total: int) -> float:
    """The schedule's definition: linear warm-up times a cosine reaching 0 at ``total``."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return warm


def _lrs(cfg: TrainConfig, total: int, steps: int, start: int = 0) -> list[float]:
    """The learning rate at steps ``start .. start + steps - 1``, the scheduler built at
    ``start`` (as a resumed run builds it) and stepped along with its optimiser."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = lr_schedule(opt, cfg, total, start)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_learning_rate_schedule():
    """torch.optim.lr_scheduler's warm-up and cosine, chained: the closed form; built at a
    later step (a resumed run) it goes on bit for bit; re-spanned over more steps, it follows
    the new cosine from where it is."""
    cfg = TrainConfig(lr_schedule="cosine", warmup_steps=4, lr=1e-3)
    lrs = _lrs(cfg, 20, 21)  # a run never steps past its total
    assert lrs == pytest.approx([1e-3 * _closed_form(s, cfg, 20) for s in range(21)], abs=1e-12)
    assert lrs[10] == pytest.approx(0.5e-3) and lrs[20] == pytest.approx(0.0, abs=1e-15)
    assert _lrs(cfg, 20, 8, start=7) == lrs[7:15]  # resumed: exactly the same values
    longer = _lrs(cfg, 40, 5, start=10)  # resumed with more epochs: the new curve from step 10
    assert longer == pytest.approx([1e-3 * _closed_form(s, cfg, 40) for s in range(10, 15)])
    constant = TrainConfig(warmup_steps=4, lr=1e-3)
    assert _lrs(constant, 20, 20)[::3] == pytest.approx([2.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3,
                                                         1e-3])  # fmt: skip
    assert _lrs(TrainConfig(lr=1e-3), 20, 3) == [1e-3] * 3  # no warm-up, constant


@pytest.mark.slow
def test_training_learns_and_writes_a_loadable_model(toy, tmp_path):
    out = tmp_path / "run"
    res = train(toy_config(toy, num_workers=1), out)
    assert res.finished and res.step == 3 * 15  # 120 training frames, batches of 8
    untrained, best = res.log[0]["val_mm"], res.best["val_mm"]
    assert res.log[0]["step"] == 0 and 50 < untrained < 120
    assert best < 0.6 * untrained, (untrained, best)
    assert res.best["val_pct50"] > res.log[0]["val_pct50"]

    rows = read_log(out)
    assert list(rows[0]) == list(LOG_FIELDS) and len(rows) == 4
    assert [float(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[1]["train_loss"])
    assert rows[0]["train_loss"] == "" and all(float(r["lr"]) == 1e-3 for r in rows)
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    saved = json.loads((out / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved) == toy_config(toy, num_workers=1)

    # The best model folder loads and, run by hand through segmentation, TSDF and pose net on
    # the validation frames of split.json, gives the validation error the log reports.
    est = load_model(out / "best")
    assert est.config == toy_config(toy).estimator and est.refine_net is None
    assert est.meta["mode"] == "pose" and est.meta["best_val"]["val_mm"] == best
    assert est.meta["train_config"]["epochs"] == 3 and "command" in est.meta
    assert load_model(out / "last").meta["step"] == res.step
    split = json.loads((out / "split.json").read_text())["sources"][0]
    ds = SyntheticDataset(toy, load_clean=False)
    errs = []
    for i in split["val"]:
        rec = ds[i]
        seg = segment_hand(rec.depth, CAMERA, est.config.segment)
        com = torch.from_numpy(seg.com_xyz)[None]
        vol = projective_tsdf(torch.from_numpy(rec.depth)[None], com, CAMERA, est.config.volume,
                              torch.from_numpy(seg.mask)[None])  # fmt: skip
        with torch.no_grad():
            xyz = decode_joints(est.pose_net(vol), com, est.config.pose.target_scale_mm)
        errs.append(np.linalg.norm(xyz[0].numpy() - rec.joints_xyz, axis=-1))
    assert np.mean(errs) == pytest.approx(best, rel=1e-5)


@pytest.mark.slow
def test_a_run_without_an_estimator_trains_the_papers_networks(toy, tmp_path):
    """No estimator and no init in the config (``handvox train`` without --config, --small or
    --init): the paper's networks at 60^3, and their model folders say how the hand was found
    (saving them once failed on the config's missing estimator)."""
    cfg = toy_config(toy, estimator=None, mode="joint", total_steps=1, batch_size=2,
                     val_max_frames=2)  # fmt: skip
    res = train(cfg, tmp_path / "run")
    assert res.step == 1
    est = load_model(tmp_path / "run" / "last")
    assert est.config.volume.size == 60 and est.config.refine is not None
    assert est.config.pose.fc == (2048, 2048) and est.config.pose.head == "holistic"
    assert est.meta["input"]["com"].startswith("the depth rule")


@pytest.mark.slow
def test_frames_rendered_as_read_train_as_the_written_ones(toy, tmp_path):
    """``render:`` the toy folder's recipe with its own seed: the data loader renders, and
    segments, the frames the folder holds, so the run's split and weights are those of the run
    that read them from disk, bit for bit; another seed trains on new frames."""
    from handvox.io.datasets import DatasetSpec

    kw = dict(total_steps=6, num_workers=0, refine_weight=None)
    stored = train(toy_config(toy, **kw), tmp_path / "stored")
    spec = DatasetSpec.parse(f"render:{toy}?seed=3&frames={FRAMES}")
    rendered = train(toy_config(toy, data=(spec,), **kw), tmp_path / "rendered")
    assert not (tmp_path / "rendered" / "scan").exists() or not any(
        (tmp_path / "rendered" / "scan").iterdir()
    )
    split = [json.loads((tmp_path / r / "split.json").read_text())["sources"][0]
             for r in ("stored", "rendered")]  # fmt: skip
    assert split[0]["train"] == split[1]["train"] and split[0]["val"] == split[1]["val"]
    assert rendered.log[-1]["val_mm"] == stored.log[-1]["val_mm"]
    a, b = weights(tmp_path / "stored" / "last"), weights(tmp_path / "rendered" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)

    other = DatasetSpec.parse(f"render:{toy}?seed=4&frames={FRAMES}")
    new = train(toy_config(toy, data=(other,), **kw), tmp_path / "other")
    assert new.log[-1]["val_mm"] != stored.log[-1]["val_mm"]


def test_a_rendered_slot_without_a_hand_draws_another_frame(toy, monkeypatch):
    """A rendered frame that shows no hand is not trained on: its slot draws the next attempt
    (what the scan's skip does for frames on disk); a recipe that never shows one stops the
    run with its name."""
    from handvox.synth.stream import RenderedFrames
    from handvox.train.data import RENDER_ATTEMPTS, Samples

    src = RenderedFrames(toy, seed=3, frames=FRAMES)
    plain = src.render
    calls = []

    def first_empty(i, attempt=0):
        calls.append((i, attempt))
        rec = plain(i, attempt)
        if attempt == 0:
            rec.depth[:] = 0  # no valid pixel: no hand
        return rec

    monkeypatch.setattr(src, "render", first_empty)
    cfg = toy_config(toy)
    samples = Samples([src], [None], cfg.estimator, cfg.augment, 0, True, False)
    out = samples[(7, -1, -1)]
    assert calls == [(7, 0), (7, 1)]
    np.testing.assert_allclose(out["joints"], plain(7, 1).joints_xyz)
    assert torch.isfinite(out["volume"]).all() and out["volume"].min() < 0  # a surface

    monkeypatch.setattr(src, "render", lambda i, attempt=0: first_empty(i, 0))
    with pytest.raises(HandvoxError, match=f"no hand found in {RENDER_ATTEMPTS} frames"):
        samples[(8, -1, -1)]


@pytest.mark.slow
def test_refine_pretraining_then_finetuning(toy, tmp_path):
    # 120 steps of batches of 4 at 2e-3: the tiny refinement net (4-8 channels) gets to ~0.04.
    cfg = toy_config(toy, mode="refine", refine=True, epochs=4, batch_size=4, lr=2e-3)
    pre = train(cfg, tmp_path / "refine")
    untrained, best = pre.log[0]["val_tsdf"], pre.best["val_tsdf"]
    # The best constant volume (each voxel's mean over the validation frames) scores ~0.13
    # here: a net that learned nothing about the input cannot beat it.
    split = json.loads((tmp_path / "refine" / "split.json").read_text())["sources"][0]
    ds, vol_cfg = SyntheticDataset(toy), toy_config(toy).estimator.volume
    clean = []
    for i in split["val"]:
        rec = ds[i]
        seg, cseg = segment_hand(rec.depth, CAMERA), segment_hand(rec.clean_depth, CAMERA)
        clean.append(projective_tsdf(torch.from_numpy(rec.clean_depth)[None],
                                     torch.from_numpy(seg.com_xyz)[None], CAMERA, vol_cfg,
                                     torch.from_numpy(cseg.mask)[None]))  # fmt: skip
    clean = torch.cat(clean)
    constant = float(((clean - clean.mean(0)) ** 2).mean())
    assert best < 0.5 * constant and best < 0.3 * untrained, (untrained, constant, best)
    rows = read_log(tmp_path / "refine")
    assert all(r["val_mm"] == r["train_mm"] == "" for r in rows)  # no pose net trained
    assert len({r["val_tsdf_raw"] for r in rows}) == 1  # the raw input's error: a baseline
    assert load_model(tmp_path / "refine" / "best").meta["trained"] == ["refine"]

    # Fine-tuning starts from the pre-trained refinement net: before any step its validation
    # TSDF error is the pre-training's best.
    ft = train(toy_config(toy, mode="finetune", refine=True, epochs=1, refine_weight=0.1,
                          init=str(tmp_path / "refine" / "best")), tmp_path / "ft")  # fmt: skip
    assert ft.log[0]["val_tsdf"] == pytest.approx(best, rel=1e-5)
    assert ft.best["val_mm"] < ft.log[0]["val_mm"]
    model = load_model(tmp_path / "ft" / "best")
    assert model.refine_net is not None and model.meta["trained"] == ["pose", "refine"]


@pytest.mark.slow
def test_pose_run_continues_from_init(toy, tmp_path):
    """A pose run with ``init`` starts from that model's pose net (its first validation is the
    init's best); a pose net of another shape is refused instead of silently started afresh."""
    first = train(toy_config(toy, epochs=2), tmp_path / "first")
    cont = train(toy_config(toy, epochs=1, lr=3e-4, init=str(tmp_path / "first" / "best")),
                 tmp_path / "cont")  # fmt: skip
    assert cont.log[0]["val_mm"] == pytest.approx(first.best["val_mm"], rel=1e-5)
    assert cont.log[0]["val_mm"] < 0.9 * first.log[0]["val_mm"]
    other = tiny_config("canonical21", fc=(32,))
    with pytest.raises(HandvoxError, match="pose net differs"):
        train(toy_config(toy, estimator=other, init=str(tmp_path / "first" / "best")),
              tmp_path / "bad")  # fmt: skip


@pytest.mark.slow
def test_keep_checkpoints_then_average(toy, tmp_path):
    """keep_checkpoints keeps the model of every validation; their average is a working model."""
    out = tmp_path / "run"
    res = train(toy_config(toy, epochs=2, keep_checkpoints=True), out)
    kept = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in kept] == ["step0000000", "step0000015", f"step{res.step:07d}"]
    assert weights(kept[-1]).keys() == weights(out / "last").keys()
    for k, v in weights(out / "last").items():
        assert torch.equal(v, weights(kept[-1])[k])
    first, final = weights(kept[0]), weights(kept[-1])
    assert any(not torch.equal(first[k], final[k]) for k in first)  # training moved them
    average_models(kept[1:], tmp_path / "avg")
    assert load_model(tmp_path / "avg").meta["averaged_from"][0]["step"] == 15


@pytest.mark.slow
def test_average_recomputes_batch_norm_statistics_on_the_runs_data(toy, tmp_path):
    # handvox average recomputes the batch-norm statistics on the run's training data (the run
    # folder found above the checkpoints), as torch.optim.swa_utils.update_bn does for SWA
    from handvox.cli.main import main

    cfg = toy_config(toy, epochs=2, keep_checkpoints=True)
    pose = dataclasses.replace(cfg.estimator.pose, batch_norm=True)
    cfg = dataclasses.replace(cfg, estimator=dataclasses.replace(cfg.estimator, pose=pose))
    out = tmp_path / "run"
    train(cfg, out)
    kept = sorted((out / "checkpoints").iterdir())[1:]
    average_models(kept, tmp_path / "avg")
    assert main(["average", *map(str, kept), "--out", str(tmp_path / "avg-bn"),
                 "--bn-batches", "4"]) == 0  # fmt: skip
    plain, bn = weights(tmp_path / "avg"), weights(tmp_path / "avg-bn")
    stats = [k for k in plain if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not torch.allclose(plain[k], bn[k]) for k in stats)
    kept_same = [k for k in plain if k not in stats and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(plain[k], bn[k]) for k in kept_same)  # the weights stay the mean
    assert all(bool((bn[k] > 0).all()) for k in stats if k.endswith("running_var"))
    meta = load_model(tmp_path / "avg-bn").meta["batch_norm"]
    assert meta["recomputed_on"] == str(out) and meta["batches"] == 4
    # --bn-batches 0 keeps the averaged statistics
    assert main(["average", *map(str, kept), "--out", str(tmp_path / "avg-0"),
                 "--bn-batches", "0"]) == 0  # fmt: skip
    assert all(torch.equal(plain[k], v) for k, v in weights(tmp_path / "avg-0").items())


@pytest.mark.slow
def test_total_steps_ends_within_an_epoch_and_is_not_exceeded(toy, tmp_path):
    # 120 training frames in batches of 8 = 15 steps an epoch; 20 steps end in epoch 2.
    cfg = toy_config(toy, epochs=10, total_steps=20, lr_schedule="cosine")
    res = train(cfg, tmp_path / "run")
    assert res.finished and res.step == 20
    rows = read_log(tmp_path / "run")
    last = {k: float(v) for k, v in rows[-1].items() if v}
    assert last["step"] == 20 and last["epoch"] == pytest.approx(1 + 5 / 15, abs=1e-3)
    # the cosine schedule spans the 20 steps: the last one ran at step 19 of 20
    lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * 19 / 20))
    assert last["lr"] == pytest.approx(lr, rel=1e-5)
    assert load_model(tmp_path / "run" / "last").meta["step"] == 20
    again = train(cfg, tmp_path / "run")  # finished: resuming trains nothing more
    assert again.step == 20 and len(read_log(tmp_path / "run")) == len(rows)
    # max_steps on a run already past it: not one step more
    stopped = train(toy_config(toy, epochs=1), tmp_path / "short", max_steps=4)
    assert stopped.step == 4 and not stopped.finished
    # ended by max_steps before any validation: it validated there, and best/ is the better
    # of the two validated models, not the untrained one by default
    rows = read_log(tmp_path / "short")
    assert [int(r["step"]) for r in rows] == [0, 4]
    best_step = min(rows, key=lambda r: float(r["val_mm"]))["step"]
    assert load_model(tmp_path / "short" / "best").meta["step"] == int(best_step)
    assert float(rows[1]["val_mm"]) < float(rows[0]["val_mm"])  # 4 steps did learn: step 4
    assert train(toy_config(toy, epochs=1), tmp_path / "short", max_steps=4).step == 4
    assert len(read_log(tmp_path / "short")) == 2  # already validated there: not again


@pytest.mark.slow
def test_bf16_autocast_trains(toy, tmp_path):
    # bf16 autocast trains (the validation error falls on this toy set as in float32)
    res = train(toy_config(toy, amp="bf16", epochs=2), tmp_path / "run")
    rows = read_log(tmp_path / "run")
    assert res.finished and float(rows[-1]["val_mm"]) < float(rows[0]["val_mm"])


@pytest.mark.slow
@pytest.mark.integration
def test_ddp_two_processes_with_torchrun(toy, tmp_path):
    """``torchrun -m handvox.cli train`` with two processes (gloo on CPU), from a TOML config
    over a JSON one."""
    cfg = toy_config(toy, epochs=1, batch_size=8)
    (tmp_path / "run.json").write_text(json.dumps(dataclasses.replace(cfg, epochs=3).to_dict()))
    (tmp_path / "cfg.toml").write_text('base = "run.json"\nepochs = 1\n')
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "handvox.cli", "train",
           "--config", str(tmp_path / "cfg.toml"), "--out", str(out), "--device", "cpu",
           "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / STATE_NAME, weights_only=True)
    # 120 training frames shared by 2 processes in batches of 8: 8 steps each.
    assert state["world_size"] == 2 and state["step"] == 8 and state["epoch"] == 1
    rows = read_log(out)
    assert len(rows) == 2 and float(rows[1]["val_mm"]) < float(rows[0]["val_mm"])
    assert TrainConfig.from_dict(json.loads((out / "train_config.json").read_text())) == (
        dataclasses.replace(cfg, device="cpu", progress=False)
    )
    assert load_model(out / "best").config == cfg.estimator
    assert proc.stdout.count('"best"') == 1  # one summary: only rank 0 reports
