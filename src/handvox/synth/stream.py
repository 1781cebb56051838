"""Frames rendered when they are read: a synthetic dataset's recipe without its files.

:class:`RenderedFrames` takes the generator and camera of a folder that ``handvox synth`` wrote
(its ``meta.json``; the folder may hold a handful of frames, only its recipe is used) and makes
frame ``i`` when it is indexed, with ``rng = frame_rng(seed, i)`` as the synthesis job would, so
frame ``i`` of a given seed is the same wherever and however often it is read. Training reads
it as the dataset kind ``render`` (``handvox train --data render:FOLDER?seed=7&frames=200000``):
the data loader's workers render as they go, which is what keeps a GPU fed without a dataset on
disk, and every frame of a run is new as long as ``frames`` exceeds its samples.

Depth is rounded to the units the folder stores (``meta["depth_encoding"]``) and capped at the
same top value, so a rendered frame reads as the written one would: a folder's own seed gives
its own frames back (``tests/synth/test_stream.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from handvox import config as cfgio
from handvox.camera import Camera
from handvox.io.frames import FrameDataset
from handvox.io.record import HandRecord
from handvox.io.synthetic import read_meta
from handvox.joints import convert_joints, get_joint_set
from handvox.synth.frame import FrameGenerator, SynthFrame, frame_rng
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HandSynthConfig


class RenderedFrames(FrameDataset):
    """``frames`` frames of the recipe in ``root``, rendered with ``seed`` when indexed.

    Args:
        root: a folder ``handvox synth`` wrote (its ``meta.json`` names the generator, its
            configuration and the camera; generators ``hand`` and ``toy``).
        seed: the frames' seed (the folder's own seed gives the folder's frames); required.
        frames: how many frames the dataset holds (indices ``0 .. frames - 1``); required.
        joint_set: a set the generator makes, or one exactly derivable from ``canonical21``.
        load_clean: also give the noise-free depth (``clean_depth``).
    Raises:
        DataError: ``root`` holds no readable ``meta.json``.
        ValueError: no seed or count, an unknown generator, a bad count or an unknown joint
            set.
    """

    OPTIONS = {"seed": int, "frames": int}
    RENDERED = True

    def __init__(
        self,
        root: str | Path,
        seed: int | None = None,
        frames: int | None = None,
        joint_set: str = "canonical21",
        load_clean: bool = True,
    ):
        if seed is None or frames is None:
            # No default: a seed silently shared with another run, or the folder's own, would
            # train on frames someone else also trains or validates on.
            raise ValueError(
                "rendered frames need ?seed=S&frames=N: the seed of the new frames and how many "
                "a run may draw (e.g. render:synth-data?seed=8&frames=1000000)"
            )
        self.root = Path(root)
        meta = read_meta(self.root)
        self.camera = Camera.from_dict(meta["camera"])
        gen = meta["generator"]
        if gen.get("name") not in ("hand", "toy"):
            raise ValueError(
                f"{self.root}: generator {gen.get('name')!r} cannot render on the fly "
                "(hand and toy can; pose transfer reads labels from files)"
            )
        self.generator = gen["name"]
        self.config = None
        if self.generator == "hand":
            self.config = cfgio.from_dict(HandSynthConfig, gen["config"], f"{self.root}/meta.json")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.seed, self.load_clean = int(seed), load_clean
        self.joint_set = get_joint_set(joint_set)
        if self.joint_set.name not in meta["joint_sets"]:
            convert_joints(np.zeros((21, 3)), "canonical21", self.joint_set, exact_only=True)
        # (unit mm, largest stored value mm) of each depth image, as the folder encodes it.
        self.units = {
            name: (float(enc["unit_mm"]), float(enc["unit_mm"]) * np.iinfo(enc["dtype"]).max)
            for name, enc in meta["depth_encoding"].items()
        }
        width = max(6, len(str(frames - 1)))
        self.frame_ids = [f"render/{self.seed}/{i:0{width}d}" for i in range(frames)]
        self._make: FrameGenerator | None = None  # built in the process that renders

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the recipe, not a generator (numba kernels, caches).
        return {**self.__dict__, "_make": None}

    def render(self, i: int, attempt: int = 0) -> HandRecord:
        """Frame ``i`` (``attempt > 0``: another frame drawn for slot ``i``, e.g. when the
        first showed no hand to a trainer that needs one)."""
        if self._make is None:
            self._make, _ = make_generator(self.generator, self.camera, self.config)
        rng = (
            frame_rng(self.seed, i)
            if attempt == 0
            else np.random.default_rng([self.seed, i, attempt])
        )
        frame = self._make(i, rng)
        suffix = "" if attempt == 0 else f"/{attempt}"
        return self._record(frame, self.frame_ids[i] + suffix)

    def _load(self, i: int) -> HandRecord:
        return self.render(i)

    def _depth(self, frame: SynthFrame, name: str) -> np.ndarray:
        unit, top = self.units[name]
        a = np.nan_to_num(np.asarray(getattr(frame, name), np.float32), nan=0.0)
        return (np.round(np.clip(a, 0.0, top) / unit) * unit).astype(np.float32)

    def _record(self, frame: SynthFrame, frame_id: str) -> HandRecord:
        name = self.joint_set.name
        if name in frame.joints_xyz:
            xyz = np.asarray(frame.joints_xyz[name], np.float32)
        else:
            xyz = convert_joints(frame.joints_xyz["canonical21"], "canonical21", self.joint_set)
            xyz = xyz.astype(np.float32)
        return HandRecord(
            depth=self._depth(frame, "raw"),
            camera=self.camera,
            joints_xyz=xyz,
            joints_uvd=self.camera.xyz_to_uvd(xyz).astype(np.float32),
            joint_set=self.joint_set,
            frame_id=frame_id,
            clean_depth=self._depth(frame, "clean") if self.load_clean else None,
        )
