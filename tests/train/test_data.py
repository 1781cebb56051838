"""What a run reads: dataset mixing, epoch plans and their batches, the validation split, the
frame scan and its masks, skipped frames, and label-centred training samples."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import handvox.train.data
from handvox.estimator.segment import segment_hand
from handvox.io.datasets import DatasetSpec
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.generators import make_generator
from handvox.synth.job import synthesize
from handvox.train.augment import AugmentConfig
from handvox.train.data import EpochBatches, Scan, epoch_plan, prepare_frames, split_frames
from handvox.train.distributed import Dist
from handvox.train.trainer import train
from tests.train.toy import CAMERA, FRAMES, toy_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dataset_specs_and_mixing():
    s = DatasetSpec.parse("nyu:/data/nyu?kinect=2@0.5")
    assert (s.kind, s.root, s.weight, s.options) == ("nyu", "/data/nyu", 0.5, (("kinect", "2"),))
    pools = [np.arange(0, 100), np.arange(100, 110)]
    plan = epoch_plan(pools, [1.0, 1.0], seed=0, epoch=0)
    assert len(plan) == 110 and (plan >= 100).sum() == 55  # the small source repeated
    assert np.array_equal(plan, epoch_plan(pools, [1.0, 1.0], seed=0, epoch=0))
    assert not np.array_equal(plan, epoch_plan(pools, [1.0, 1.0], seed=0, epoch=1))
    assert sorted(epoch_plan(pools, None, 0, 1)) == list(range(110))


def test_epoch_batches_share_an_epoch_between_ranks_and_start_mid_epoch():
    plan = np.arange(100, 123)  # 23 frames: 12 a rank, the last one padded by wrapping

    def keys(rank: int, start: int = 0) -> list:
        b = EpochBatches(lambda e: plan, batch_size=5, rank=rank, world=2)
        b.set_epoch(4, start)
        return list(b)

    r0, r1 = keys(0), keys(1)
    assert EpochBatches(lambda e: plan, 5, 0, 2).steps(4) == len(r0) == len(r1) == 3
    frames = [k[0] for batch in r0 + r1 for k in batch]
    assert sorted(set(frames)) == list(plan) and len(frames) == 24
    assert all(k[1] == 4 and plan[k[2]] == k[0] for batch in r0 for k in batch)
    assert keys(0, start=1) == r0[1:]  # a resumed epoch skips the batches done


def test_validation_split_is_disjoint_and_deterministic():
    a = split_frames(1000, 0.1, 50, seed=0)
    assert a.sum() == 100 and np.array_equal(a, split_frames(1000, 0.1, 50, seed=0))
    assert not np.array_equal(a, split_frames(1000, 0.1, 50, seed=1))
    assert np.all(a.reshape(20, 50).all(1) | ~a.reshape(20, 50).any(1))  # whole blocks


@pytest.mark.slow
def test_a_runs_split_is_recorded_and_independent_of_the_training_seed(toy, tmp_path):
    # The recorded split is disjoint, covers every frame, and a second run (another training
    # seed) validates on the same frames.
    splits = []
    for seed in (0, 1):
        train(toy_config(toy, epochs=0, seed=seed), tmp_path / f"s{seed}")
        splits.append(json.loads((tmp_path / f"s{seed}" / "split.json").read_text()))
    s = splits[0]["sources"][0]
    assert not set(s["train"]) & set(s["val"])
    assert sorted(s["train"] + s["val"]) == list(range(FRAMES)) and len(s["val"]) == 40
    assert splits[0] == splits[1]


@pytest.mark.slow
def test_scan_keeps_the_segmentation_masks(toy, tmp_path):
    # Training reuses the scan's bit-packed masks instead of segmenting every sample again: they
    # must be the masks segment_hand gives, and the saved scan must load back the same.
    cfg = toy_config(toy)
    prepare_frames(cfg, cfg.estimator, tmp_path, Dist())
    (scan_file,) = (tmp_path / "scan").glob("*.npz")
    with np.load(scan_file) as z:
        scan = Scan(**{k: z[k] for k in z.files})
    ds = SyntheticDataset(toy, load_clean=False)
    for i in (0, 7, len(ds) - 1):
        rec = ds[i]
        seg = segment_hand(rec.depth, CAMERA)
        assert seg.found and np.array_equal(scan.mask(i, rec.depth.shape), seg.mask)
        np.testing.assert_allclose(scan.com[i], seg.com_xyz)


@pytest.mark.slow
def test_runs_of_the_same_data_share_their_scan(toy, tmp_path, monkeypatch):
    # A new --out on the same data and segmentation does not segment every frame again: the
    # scan comes from the shared cache (and the run keeps a copy of its own, for resuming).
    cache = tmp_path / "cache"
    monkeypatch.setenv("HANDVOX_SCAN_CACHE", str(cache))
    cfg = toy_config(toy)
    first = prepare_frames(cfg, cfg.estimator, tmp_path / "a", Dist())
    assert len(list(cache.glob("*.npz"))) == 1

    def no_scan(*args, **kw):
        raise AssertionError("scanned again")

    monkeypatch.setattr(handvox.train.data, "scan_source", no_scan)
    second = prepare_frames(cfg, cfg.estimator, tmp_path / "b", Dist())
    assert (tmp_path / "b" / "scan").is_dir() and len(
        list((tmp_path / "b" / "scan").glob("*.npz"))
    ) == 1
    np.testing.assert_array_equal(first.val, second.val)
    # another segmentation is another key: scanned, not taken from the cache
    other = dataclasses.replace(cfg.estimator, segment=dataclasses.replace(
        cfg.estimator.segment, radius_mm=cfg.estimator.segment.radius_mm + 10))  # fmt: skip
    with pytest.raises(AssertionError, match="scanned again"):
        prepare_frames(cfg, other, tmp_path / "c", Dist())
    # HANDVOX_SCAN_CACHE=off: nothing shared
    monkeypatch.setenv("HANDVOX_SCAN_CACHE", "off")
    with pytest.raises(AssertionError, match="scanned again"):
        prepare_frames(cfg, cfg.estimator, tmp_path / "d", Dist())


@pytest.mark.slow
def test_frames_without_a_hand_are_skipped_and_counted(tmp_path):
    # Half the frames are blank: segmentation finds nothing there.
    root = tmp_path / "blank"
    gen, _ = make_generator("toy", CAMERA)

    def half_blank(i, rng):
        f = gen(i, rng)
        if i % 2:
            f.raw[:] = 0
        return f

    synthesize(root, half_blank, CAMERA, 60, seed=1, chunk_size=60, progress=False)
    res = train(toy_config(root, epochs=0), tmp_path / "out")
    val = split_frames(60, 0.2, 10, seed=0)
    assert res.skipped["no_hand"] == sum(i % 2 for i in np.flatnonzero(~val)) == 20
    assert res.skipped["val_no_hand"] == 10 and res.skipped["outside_cube"] == 0
    split = json.loads((tmp_path / "out" / "split.json").read_text())["sources"][0]
    assert all(i % 2 == 0 for i in split["train"] + split["val"])


@pytest.mark.slow
def test_label_centred_training_samples(toy, tmp_path):
    aug = AugmentConfig(rotation_deg=0, scale=(1, 1), com_jitter_mm=0, label_centre_prob=1.0)
    cfg = toy_config(toy, augment=aug)
    samples = prepare_frames(cfg, cfg.estimator, tmp_path, Dist()).samples
    ds = SyntheticDataset(toy, load_clean=False)
    for i in (1, 5):
        train_s = samples[(i, 0, i)]  # a training sample: centred on the labelled joints' mean
        val_s = samples[(i, -1, 0)]  # validation: the segmentation's COM
        np.testing.assert_allclose(train_s["com"].numpy(), ds[i].joints_xyz.mean(0), atol=1e-4)
        np.testing.assert_allclose(val_s["com"].numpy(), samples.coms[i])
        assert np.abs(train_s["com"].numpy() - val_s["com"].numpy()).max() > 1.0


@pytest.mark.slow
def test_occluded_training_samples(toy, tmp_path):
    """occluder_prob 1: every training sample gets a sphere in front of a joint (its volume
    changes, its labels do not); validation samples stay whole."""
    still = {"rotation_deg": 0, "scale": (1, 1), "com_jitter_mm": 0}
    plain_cfg = toy_config(toy, augment=AugmentConfig(**still))
    occ_cfg = toy_config(toy, augment=AugmentConfig(**still, occluder_prob=1.0))
    plain = prepare_frames(plain_cfg, plain_cfg.estimator, tmp_path / "a", Dist()).samples
    occ = prepare_frames(occ_cfg, occ_cfg.estimator, tmp_path / "b", Dist()).samples
    changed = 0
    for i in range(8):
        a, b = plain[(i, 0, i)], occ[(i, 0, i)]
        torch.testing.assert_close(a["target"], b["target"])  # the labels are the hand's
        changed += int(not torch.equal(a["volume"], b["volume"]))
        torch.testing.assert_close(plain[(i, -1, 0)]["volume"], occ[(i, -1, 0)]["volume"])
    assert changed >= 6  # a sphere behind the hand, or off the cube, can leave it unchanged


def test_the_renderer_is_imported_only_by_runs_that_render():
    """``render:`` is registered by training without importing the renderer (numba kernels,
    the skinned hand) into every training process; a spec of that kind imports it."""
    code = (
        "import sys, handvox.cli.main, handvox.train.trainer\n"
        "print(sorted(k for k in sys.modules if k.startswith('handvox.synth')))\n"
        "from handvox.io.datasets import DatasetSpec, register_reader\n"
        "DatasetSpec.parse('render:x?seed=1&frames=2')\n"
        "print('handvox.synth.stream' in sys.modules)\n"
        "try:\n"
        "    register_reader('render', 'elsewhere:Other')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "True", "dataset kind 'render' is taken"]


def test_a_scan_is_keyed_by_its_locators_weights_not_its_folders_name(tmp_path):
    from handvox.estimator.locate import LocatorNet, locator_id, save_locator
    from handvox.estimator.segment import SegmentConfig
    from handvox.train.data import _segment_ident

    learned = SegmentConfig(method="learned")
    ident = _segment_ident(learned)
    # the keys scans made before SegmentConfig.locator existed were made with
    assert ident["locator"] == locator_id() and "/" not in ident["locator"]
    assert "locator" not in _segment_ident(SegmentConfig())
    a = save_locator(LocatorNet(4), tmp_path / "a", {})
    b = tmp_path / "b"
    b.mkdir()
    for f in a.iterdir():
        (b / f.name).write_bytes(f.read_bytes())
    ia = _segment_ident(dataclasses.replace(learned, locator=str(a)))
    ib = _segment_ident(dataclasses.replace(learned, locator=str(b)))
    assert ia == ib != ident  # the same weights elsewhere: the same scans
