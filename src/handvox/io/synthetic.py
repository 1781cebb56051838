"""handvox's own synthetic datasets, as :func:`handvox.synth.job.synthesize` writes them.

Layout and encodings: see :mod:`handvox.synth.job`. Opening reads ``meta.json`` and the label arrays
of every complete chunk; a frame's depth is decoded when it is indexed, from a memory map of its
chunk's blob (only that frame's bytes are read).
"""

from __future__ import annotations

import json
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.frames import FrameDataset
from handvox.io.record import HandRecord
from handvox.io.synthformat import (
    CHUNK_DIR,
    FORMAT,
    META_NAME,
    READ_FORMAT_VERSIONS,
    check_chunk,
    chunk_frames,
    chunk_name,
    decode_image,
    read_checksums,
    verify_file,
)
from handvox.joints import convert_joints, get_joint_set

_OPEN_CHUNKS = 4  # memory maps kept open per dataset object (each holds a file descriptor)


def read_meta(root: str | Path) -> dict:
    """The ``meta.json`` of a synthetic dataset, checked for format and version."""
    path = Path(root) / META_NAME
    if not path.is_file():
        raise DataError(path, "no such file (not a handvox synthetic dataset?)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(path, f"unreadable or corrupt JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} meta file")
    if meta.get("format_version") not in READ_FORMAT_VERSIONS:
        versions = ", ".join(map(str, READ_FORMAT_VERSIONS))
        raise DataError(
            path, f"format version {meta.get('format_version')}, this handvox reads {versions}"
        )
    return meta


class SyntheticDataset(FrameDataset):
    """Frames of a synthetic dataset, read lazily.

    Args:
        root: the dataset folder (holding ``meta.json`` and ``chunks/``).
        joint_set: a set the generator stored (``meta["joint_sets"]``), or one with an exact
            mapping from ``canonical21`` (e.g. ``msra21``).
        load_clean: also decode the noise-free depth into ``clean_depth``.
        require_complete: raise when chunks are missing (a job still running, or some shards
            not run yet); otherwise open the complete ones and warn.
    Attributes:
        meta: the parsed meta.json.
        frame_indices: ``(N,)`` int64 global index of each frame present (frame ids
            ``synth/000123`` use it).
        missing_chunks: names of the chunks not (yet) complete.
        joints_xyz, joints_uvd: ``(N, J, 3)`` float32 in ``joint_set``; uvd is computed from
            xyz and the camera.
        poses: ``(N, P)`` float32 pose parameters; shapes: ``(N, B)`` float32; shape_ids: ``(N,)``
            str.
    Raises:
        DataError: missing or corrupt meta.json or chunk; with ``require_complete``, missing
            chunks (all named).
    """

    def __init__(
        self,
        root: str | Path,
        joint_set: str = "canonical21",
        load_clean: bool = True,
        require_complete: bool = False,
    ):
        self.root = Path(root)
        self.meta = meta = read_meta(self.root)
        self.camera = Camera.from_dict(meta["camera"])
        self.load_clean = load_clean
        self.joint_set = get_joint_set(joint_set)
        stored = meta["joint_sets"]
        if self.joint_set.name in stored:
            src = self.joint_set.name
        else:
            try:
                convert_joints(np.zeros((21, 3)), "canonical21", self.joint_set, exact_only=True)
            except ValueError:
                raise ValueError(
                    f"joint set {self.joint_set.name!r} is neither stored ({sorted(stored)}) "
                    "nor exactly derivable from canonical21"
                ) from None
            src = "canonical21"
        self.images = ["raw", "clean"] + [f"extra_{k}" for k in meta["extra_images"]]

        chunks_dir = self.root / CHUNK_DIR
        frames, size = meta["frames"], meta["chunk_size"]
        keys = ["frame_index", "box", f"joints_{src}", "pose", "shape", "shape_id"]
        keys += [f"offsets_{k}" for k in self.images]
        keys += [f"extra_{k}" for k in meta["extra_arrays"]]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        self.chunks: list[int] = []
        self.missing_chunks: list[str] = []
        for c in range(meta["num_chunks"]):
            path = chunks_dir / chunk_name(c)
            if not path.is_dir():
                self.missing_chunks.append(chunk_name(c))
                continue
            n = len(chunk_frames(c, frames, size))
            # Labels are read now, so they are checked now; a blob when first read (_blob).
            problem = check_chunk(path, n, self.images, verify=["labels.npz"])
            if problem is not None:
                raise DataError(path, problem)
            try:
                with np.load(path / "labels.npz") as z:
                    for k in keys:
                        parts[k].append(z[k])
            except (OSError, ValueError, KeyError, zlib.error, zipfile.BadZipFile) as e:
                raise DataError(path / "labels.npz", f"unreadable ({type(e).__name__}: {e})") from e
            self.chunks.append(c)
        if self.missing_chunks:
            msg = (
                f"{len(self.missing_chunks)} of {meta['num_chunks']} chunks missing: "
                + ", ".join(self.missing_chunks)
            )
            if require_complete:
                raise DataError(chunks_dir, msg)
            warnings.warn(f"{chunks_dir}: {msg}", stacklevel=2)

        def cat(k, dtype, shape):
            return np.concatenate(parts[k]) if parts[k] else np.zeros((0, *shape), dtype)

        self.frame_indices = cat("frame_index", np.int64, ())
        width = max(6, len(str(frames - 1)))
        self.frame_ids = [f"synth/{i:0{width}d}" for i in self.frame_indices]
        self.boxes = cat("box", np.int32, (4,))
        xyz = cat(f"joints_{src}", np.float32, (stored[src], 3))
        self.joints_xyz = convert_joints(xyz, src, self.joint_set).astype(np.float32)
        self.joints_uvd = self.camera.xyz_to_uvd(self.joints_xyz).astype(np.float32)
        self.poses = cat("pose", np.float32, (meta["pose_dim"],))
        self.shapes = cat("shape", np.float32, (meta["shape_dim"],))
        self.shape_ids = cat("shape_id", np.str_, ())
        self.extras = {
            k: cat(f"extra_{k}", np.dtype(v["dtype"]), tuple(v["shape"]))
            for k, v in meta["extra_arrays"].items()
        }
        # Frame i of the dataset is frame _slot[i] of chunk self.chunks[_chunk_of[i]].
        counts = [len(p) for p in parts["frame_index"]]
        self._chunk_of = np.repeat(np.arange(len(counts)), counts)
        self._slot = self.frame_indices - np.asarray(self.chunks)[self._chunk_of] * size
        self._offsets = {k: parts[f"offsets_{k}"] for k in self.images}  # per chunk, (K+1,)
        self._maps: OrderedDict = OrderedDict()
        self._verified: set[int] = set()  # chunks whose blobs matched their checksums

    def __getstate__(self) -> dict:
        # Memory maps do not travel to DataLoader workers; each process opens its own.
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        return state

    def _blob(self, ci: int, key: str) -> np.ndarray:
        entry = self._maps.get(ci)
        if entry is None:
            path = self.root / CHUNK_DIR / chunk_name(self.chunks[ci])
            if ci not in self._verified:  # once per process: the bytes against the checksums
                try:
                    sums = read_checksums(path)
                    problems = [verify_file(path, f"{k}.npy", sums) for k in self.images]
                except (OSError, ValueError) as e:
                    raise DataError(path, f"unreadable ({type(e).__name__}: {e})") from e
                if any(problems):
                    raise DataError(path, next(p for p in problems if p))
                self._verified.add(ci)
            entry = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in self.images}
            self._maps[ci] = entry
            if len(self._maps) > _OPEN_CHUNKS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(ci)
        return entry[key]

    def image(self, i: int, key: str) -> np.ndarray:
        """Frame ``i``'s stored image ``key`` (``raw``, ``clean`` or ``extra_<name>``) as stored:
        ``(H, W)`` of its stored dtype (depth in the units of ``meta["depth_encoding"]``)."""
        if key not in self.images:
            raise KeyError(f"no image {key!r}; stored: {self.images}")
        ci, slot = int(self._chunk_of[i]), int(self._slot[i])
        off = self._offsets[key][ci]
        buf = self._blob(ci, key)[off[slot] : off[slot + 1]]
        if key in self.meta["depth_encoding"]:
            dtype = self.meta["depth_encoding"][key]["dtype"]
        else:
            dtype = self.meta["extra_images"][key.removeprefix("extra_")]
        hw = (self.camera.height, self.camera.width)
        codec = self.meta["image_codec"]
        filt = codec.get("filters", {}).get(key)  # none before format version 2
        try:
            return decode_image(buf, self.boxes[i], hw, np.dtype(dtype), codec["compression"], filt)
        except (zlib.error, ValueError) as e:
            path = self.root / CHUNK_DIR / chunk_name(self.chunks[ci]) / f"{key}.npy"
            raise DataError(path, f"frame {self.frame_ids[i]}: corrupt data ({e})") from e

    def depth_mm(self, i: int, key: str = "raw") -> np.ndarray:
        """``(H, W)`` float32 depth in mm of frame ``i`` (``key``: ``raw`` or ``clean``)."""
        unit = self.meta["depth_encoding"][key]["unit_mm"]
        d = self.image(i, key).astype(np.float32)
        return d if unit == 1.0 else d * np.float32(unit)

    def frame_extras(self, i: int) -> dict[str, np.ndarray]:
        """Frame ``i``'s ``SynthFrame.extra`` arrays, images included."""
        out = {k: self.image(i, f"extra_{k}") for k in self.meta["extra_images"]}
        out.update({k: v[i] for k, v in self.extras.items()})
        return out

    def _load(self, i: int) -> HandRecord:
        return HandRecord(
            depth=self.depth_mm(i, "raw"),
            camera=self.camera,
            joints_xyz=self.joints_xyz[i].copy(),
            joints_uvd=self.joints_uvd[i].copy(),
            joint_set=self.joint_set,
            frame_id=self.frame_ids[i],
            clean_depth=self.depth_mm(i, "clean") if self.load_clean else None,
        )
