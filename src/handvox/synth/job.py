"""Synthetic training data: a job runner that calls a per-frame generator and writes a dataset.

A generator is any callable ``make_frame(index, rng) -> SynthFrame`` (:data:`FrameGenerator`).
Frame ``i`` is always made with ``rng = np.random.default_rng([seed, i])``, so its content
depends on ``(seed, i)`` alone: not on sharding, worker count, or how often the job was resumed.
:func:`synthesize` runs the job; :class:`handvox.io.synthetic.SyntheticDataset` reads the result.

Generators: :func:`handvox.synth.hand.hand_frame_generator` (the kinematic hand of
:mod:`handvox.hand.kinematics` in a natural pose from :mod:`handvox.hand.poses`, with forearm, body and
wall, ray cast by :mod:`handvox.synth.render` and noised by :mod:`handvox.synth.noise`; configured by
:class:`handvox.synth.hand.HandSynthConfig`), :class:`handvox.synth.transfer.TransferGenerator`
(labelled real poses on new hands and views) and the toy stand-in of :mod:`handvox.synth.toy`;
:func:`make_generator` picks one by name. ``benchmarks/synth_speed.py`` times them per stage and
end to end.

Layout of a dataset folder::

    meta.json                     camera, seed, frame count, chunk size, generator, encodings
    chunks/chunk_000000/          frames 0 .. K-1 (K = chunk_size; the last chunk may be shorter)
        labels.npz                frame_index (K,), box (K, 4), offsets_<image> (K+1,),
                                  joints_<set> (K, J, 3), pose (K, P), shape (K, B),
                                  shape_id (K,), extra_<name> (K, ...)
        raw.npy, clean.npy        (N,) uint8: the frames' encoded crops, back to back
        extra_<name>.npy          the same for each (H, W) image in ``SynthFrame.extra``

Storage decision, by measurement (``benchmarks/synth_write_speed.py --frames 128``: toy hands at
640x480 with :mod:`handvox.synth.noise` Kinect noise; CPU ms a frame on a shared, loaded 2-core
machine, so an idle core does better):

* Depth is stored as uint16: ``raw`` in 1 mm units (what a real sensor's file holds: NYU and ICVL
  store integer mm, and the Kinect's own disparity steps are 1-2 mm at hand range) and ``clean``
  in 0.25 mm units (error <= 0.125 mm, range up to 16383.75 mm), both rounded to nearest.
  Values must be finite and in range; 0 marks invalid (raw) or background (clean).
* Each frame keeps only the box holding every non-zero pixel of all its images (one box per
  frame, ``(u0, v0, u1, v1)`` half-open), compressed with zlib level 1 (``compression="zlib"``),
  deflated by isal when it is installed (the same zlib streams, ~4x faster; any zlib inflates
  them). Hand only: 0.34 ms (Python's zlib: 0.72 ms) and 18 kB a frame (raw, clean and an 8-bit
  part image) where whole frames cost 2.3 ms and 1.2 MB as uint16 ``.npy``, 4.6 ms (21 kB) with
  ``np.savez_compressed`` and 4.5 ms (25 kB) as 16-bit PNG (Pillow, level 1); the crop
  uncompressed: 0.3 ms, 120 kB.
* A scene with a full-frame background (a wall) leaves nothing to crop: 1.1 ms (Python's zlib:
  3.3 ms) and 83 kB a frame, ``compression="none"`` 1-3 ms and 1.5 MB.
* ``clean`` is filtered before compression (format version 2, ``image_codec.filters`` in
  meta.json): each pixel less its left neighbour, modulo 2**16. Smooth rendered surfaces then
  shrink by 40 % and deflate faster (hand scenes of ``handvox synth``'s default mix, walls half
  the time: raw + clean + part 57 instead of 75 kB a frame); reading undoes it with a cumulative
  sum (0.15 ms). Raw depth gains nothing from it (quantised, noisy) and is stored as is. Version 1
  folders (no filters) are read as before; a job does not resume one (its meta.json differs).
* Frames are compressed one by one and stored back to back with an offset table, so the reader
  decodes one frame from a memory map of one ``.npy`` (about 1.3 ms a frame, raw and clean, in
  random order; with a wall 1.5 ms, 1.05 ms with isal) instead of inflating a whole chunk per
  item.

Sharding: shard ``i/N`` (1-based) writes the chunks ``c`` with ``c % N == i - 1``; shards never
touch each other's files, so N machines may share one folder. Every shard writes the same
``meta.json`` (derived from the arguments and frame 0, never from time or host).

Resumption: a chunk is built in ``chunks/.chunk_XXXXXX.<tag>.tmp/`` and renamed to its final
name when complete, so a killed job leaves only complete chunks and partial folders. A restart
deletes its shard's partial folders, skips chunks that exist (checked: labels readable, frame
count and blob sizes as expected) and writes the rest. The rename protects against the process
being killed, not against power loss (nothing is fsynced).
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numba
import numpy as np

from handvox.atomic import temp_path, write_text
from handvox.camera import Camera
from handvox.errors import DataError

if TYPE_CHECKING:
    from handvox.synth.hand import HandSynthConfig

try:  # optional: the same zlib streams, deflated ~4x and inflated ~2x faster
    from isal import isal_zlib as _deflater
except ImportError:
    _deflater = zlib

FORMAT = "handvox-synth"
FORMAT_VERSION = 2
READ_FORMAT_VERSIONS = (1, 2)
"""Versions :class:`handvox.io.synthetic.SyntheticDataset` reads. 2 added ``filters``; a
version 1 folder holds no filtered image."""
CHUNK_DIR = "chunks"
META_NAME = "meta.json"
INVALID_DEPTH = 0
# name -> (stored dtype, mm per stored unit); see the module docstring.
DEPTH_ENCODING = {"raw": ("uint16", 1.0), "clean": ("uint16", 0.25)}
# image -> filter applied before compression (meta.json: image_codec.filters)
IMAGE_FILTERS = {"clean": "row_delta"}
FILTERS = ("row_delta",)
COMPRESSIONS = ("zlib", "none")
_ZLIB_LEVEL = 1
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@dataclass
class SynthFrame:
    """One generated frame.

    Attributes:
        raw: ``(H, W)`` float32 noisy depth, mm; 0 = invalid (no measurement).
        clean: ``(H, W)`` float32 noise-free depth, mm; 0 = background (nothing rendered).
        joints_xyz: joint set name -> ``(J, 3)`` float32 mm, OpenCV camera frame. Holds
            ``"canonical21"`` always, plus any marker sets (``"nyu14"``, ``"icvl16"``, ...).
        pose: ``(P,)`` float32 pose parameters (``P = 30`` for :mod:`handvox.hand.kinematics`).
        shape: ``(B,)`` float32 hand shape, e.g. bone lengths in mm.
        shape_id: name of the hand shape (subject) the frame was made with.
        extra: more per-frame arrays; an ``(H, W)`` one is stored as an image (cropped with the
            depth, 0 outside the crop), any other shape as is. Same keys, shapes and dtypes
            in every frame.
    """

    raw: np.ndarray
    clean: np.ndarray
    joints_xyz: dict[str, np.ndarray]
    pose: np.ndarray
    shape: np.ndarray
    shape_id: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)


FrameGenerator = Callable[[int, np.random.Generator], SynthFrame]


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator frame ``index`` of a dataset with ``seed`` is made with."""
    return np.random.default_rng([seed, index])


def frame_key(rng: np.random.Generator) -> tuple[int, int] | None:
    """``(seed, index)`` of a generator made by :func:`frame_rng`, else None.

    Lets a generator share work between the frames of a block (e.g. one batched pose draw
    for frames ``B * (i // B) ..``, seeded by ``(seed, i // B)``) and still make each frame
    from ``(seed, index)`` alone.
    """
    seq = getattr(rng.bit_generator, "seed_seq", None)
    ent = getattr(seq, "entropy", None)
    if isinstance(ent, list | tuple) and len(ent) == 2 and not getattr(seq, "spawn_key", ()):
        return int(ent[0]), int(ent[1])
    return None


# --- shards -------------------------------------------------------------------------------------
def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/N"`` (1-based, ``1 <= i <= N``) -> ``(i, N)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m:
        raise ValueError(f"shard {spec!r}: expected i/N, e.g. 1/4")
    i, n = int(m[1]), int(m[2])
    _check_shard((i, n))
    return i, n


def _check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"shard {i}/{n}: need 1 <= i <= N (shards are numbered from 1)")


def shard_chunks(num_chunks: int, shard: tuple[int, int]) -> list[int]:
    """Chunk indices that shard ``(i, N)`` writes: ``c % N == i - 1``."""
    _check_shard(shard)
    i, n = shard
    return list(range(i - 1, num_chunks, n))


def chunk_name(c: int) -> str:
    return f"chunk_{c:06d}"


def chunk_frames(c: int, frames: int, chunk_size: int) -> range:
    """Global frame indices held by chunk ``c``."""
    return range(c * chunk_size, min((c + 1) * chunk_size, frames))


# --- frame schema (from frame 0) and checks -----------------------------------------------------
def _as_f32(a, what: str, index: int, shape: tuple | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if shape is not None and a.shape != shape:
        raise ValueError(f"frame {index}: {what} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"frame {index}: {what} holds NaN or inf")
    return a


def _schema(frame: SynthFrame, camera: Camera) -> dict:
    """What every frame of the dataset must look like, from frame 0 (goes into meta.json)."""
    hw = (camera.height, camera.width)
    if "canonical21" not in frame.joints_xyz:
        raise ValueError("frame 0: joints_xyz lacks 'canonical21'")
    images, arrays = {}, {}
    for name, a in sorted(frame.extra.items()):
        a = np.asarray(a)
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"frame 0: extra name {name!r}: use letters, digits and _")
        if a.dtype.hasobject:
            raise ValueError(f"frame 0: extra {name!r} has object dtype")
        if a.shape == hw:
            images[name] = a.dtype.str
        else:
            arrays[name] = {"shape": list(a.shape), "dtype": a.dtype.str}
    return {
        "joint_sets": {k: int(np.shape(v)[0]) for k, v in sorted(frame.joints_xyz.items())},
        "pose_dim": int(np.size(frame.pose)),
        "shape_dim": int(np.size(frame.shape)),
        "extra_images": images,
        "extra_arrays": arrays,
    }


def _to_uint(
    a: np.ndarray,
    box: tuple[int, int, int, int],
    unit_mm: float,
    what: str,
    index: int,
    row_delta: bool = False,
) -> np.ndarray:
    """The ``box`` crop of ``(H, W)`` float32 depth ``a`` (mm) in stored uint16 units, rounded
    to nearest (``row_delta``: then less the left neighbour, modulo 2**16)."""
    u0, v0, u1, v1 = box
    out = np.empty((v1 - v0, u1 - u0), np.uint16)
    top = 65535 * unit_mm
    if _quantise_kernel(a, v0, u0, np.float32(unit_mm), np.float32(top), row_delta, out):
        return out
    crop = a[v0:v1, u0:u1]
    if not np.isfinite(crop).all():
        raise ValueError(f"frame {index}: {what} depth holds NaN or inf (use 0 for invalid)")
    lo, hi = float(crop.min()), float(crop.max())
    raise ValueError(f"frame {index}: {what} depth spans {lo:.1f}..{hi:.1f} mm, outside 0..{top}")


def encode_frame(
    frame: SynthFrame, index: int, schema: dict, camera: Camera, compression: str
) -> dict:
    """Check ``frame`` against the schema and turn it into what a chunk stores.

    Returns:
        ``{"box": (u0, v0, u1, v1), "blobs": {image: bytes}, "arrays": {label: array}}``.
    """
    hw = (camera.height, camera.width)
    images = {}
    for name in DEPTH_ENCODING:
        images[name] = np.asarray(getattr(frame, name), dtype=np.float32)
        if images[name].shape != hw:
            raise ValueError(f"frame {index}: {name} is {images[name].shape}, camera is {hw}")
    extra = {k: np.asarray(v) for k, v in frame.extra.items()}
    if set(extra) != set(schema["extra_images"]) | set(schema["extra_arrays"]):
        raise ValueError(f"frame {index}: extra keys {sorted(extra)} differ from frame 0's")
    for name, dt in schema["extra_images"].items():
        if extra[name].shape != hw or extra[name].dtype.str != dt:
            raise ValueError(f"frame {index}: extra {name!r} is not a {hw} {dt} image")
        images[f"extra_{name}"] = extra[name]
    arrays = {}
    for name, spec in schema["extra_arrays"].items():
        a = extra[name]
        if list(a.shape) != spec["shape"] or a.dtype.str != spec["dtype"]:
            raise ValueError(f"frame {index}: extra {name!r} is {a.shape} {a.dtype}, not {spec}")
        arrays[f"extra_{name}"] = a
    if set(frame.joints_xyz) != set(schema["joint_sets"]):
        raise ValueError(f"frame {index}: joint sets {sorted(frame.joints_xyz)} differ")
    for name, j in schema["joint_sets"].items():
        arrays[f"joints_{name}"] = _as_f32(frame.joints_xyz[name], f"joints {name}", index, (j, 3))
    arrays["pose"] = _as_f32(frame.pose, "pose", index, (schema["pose_dim"],))
    arrays["shape"] = _as_f32(frame.shape, "shape", index, (schema["shape_dim"],))
    arrays["shape_id"] = np.str_(frame.shape_id)

    # The box is found on the float depth (NaN counts as non-zero, so the checks below see it);
    # only the crop is converted, which keeps the cost off the empty part of the frame.
    box = crop_box(list(images.values()))
    u0, v0, u1, v1 = box
    blobs = {}
    for key, a in images.items():
        filt = IMAGE_FILTERS.get(key)
        if key in DEPTH_ENCODING:  # converted and filtered in one pass
            crop = _to_uint(a, box, DEPTH_ENCODING[key][1], key, index, filt == "row_delta")
            blobs[key] = encode_image(crop, compression)
        else:
            blobs[key] = encode_image(a[v0:v1, u0:u1], compression, filt)
    return {"box": box, "blobs": blobs, "arrays": arrays}


# --- image codec --------------------------------------------------------------------------------
# One vectorised pass each where numpy would make several full-frame temporaries (comparisons,
# reductions, casts): ~0.3 ms a frame less with a wall in it.
_BOX_DTYPES = frozenset(np.dtype(t) for t in "?bBhHiIlLqQfd")


@_jit
def _box_kernel(a):
    """``(u0, v0, u1, v1)`` of the non-zero (or NaN) pixels of ``a``; ``u1 = 0`` if none."""
    h, w = a.shape
    u0, v0, u1, v1 = w, h, 0, 0
    for i in range(h):
        row = a[i]
        first, last = w, -1
        for j in range(w):  # branch-free: vectorises
            nz = row[j] != 0
            first = min(first, j if nz else w)
            last = max(last, j if nz else -1)
        if last >= 0:
            v0 = min(v0, i)
            v1 = i + 1
            u0 = min(u0, first)
            u1 = max(u1, last + 1)
    return u0, v0, u1, v1


@_jit
def _quantise_kernel(a, v0, u0, unit, top, row_delta, out):
    """``out = rint(a[crop] / unit)`` as uint16 (less the left neighbour if ``row_delta``);
    False if a value of the crop is NaN or outside ``0 .. top``."""
    h, w = out.shape
    ok = True
    big = np.float32(2.0**23)
    for i in range(h):
        row, o = a[v0 + i, u0 : u0 + w], out[i]
        for j in range(w):  # branch-free: vectorises
            x = row[j]
            ok &= (x >= 0) & (x <= top)
            # + 2**23 - 2**23 rounds a float32 in 0 .. 2**23 to nearest, ties to even: np.rint
            o[j] = np.uint16((x / unit + big) - big)
        if row_delta:
            for j in range(w - 1, 0, -1):
                o[j] -= o[j - 1]
    return ok


def crop_box(images: Sequence[np.ndarray]) -> tuple[int, int, int, int]:
    """Smallest ``(u0, v0, u1, v1)`` holding every non-zero pixel of ``images`` (all ``(H, W)``);
    ``(0, 0, 0, 0)`` when all are zero."""
    u0, v0, u1, v1 = images[0].shape[1], images[0].shape[0], 0, 0
    for a in images:
        if a.dtype in _BOX_DTYPES:
            b = _box_kernel(a)
        else:  # e.g. float16: numpy
            mask = a != 0
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            b = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) if len(rows) else (0, 0, 0, 0)
        if b[2] > 0:
            u0, v0, u1, v1 = min(u0, b[0]), min(v0, b[1]), max(u1, b[2]), max(v1, b[3])
    return (int(u0), int(v0), int(u1), int(v1)) if u1 > 0 else (0, 0, 0, 0)


def _check_filter(filt: str | None, dtype) -> None:
    if filt is not None and (filt not in FILTERS or np.dtype(dtype).kind != "u"):
        raise ValueError(f"filter {filt!r}: known {FILTERS}, for unsigned integer images only")


def encode_image(crop: np.ndarray, compression: str, filt: str | None = None) -> bytes:
    """An image crop as bytes (C order), zlib-compressed unless ``compression == "none"``.

    ``filt="row_delta"``: each pixel less its left neighbour (modulo the unsigned type's range)
    first, which makes smooth depth compress better and faster.
    """
    crop = np.ascontiguousarray(crop)
    _check_filter(filt, crop.dtype)
    if filt == "row_delta":
        delta = np.empty_like(crop)
        delta[:, :1] = crop[:, :1]
        np.subtract(crop[:, 1:], crop[:, :-1], out=delta[:, 1:])
        crop = delta
    # zlib reads the array's buffer as is: no copy
    data = memoryview(crop.reshape(-1)).cast("B")
    return _deflater.compress(data, _ZLIB_LEVEL) if compression == "zlib" else data.tobytes()


def decode_image(
    buf,
    box: tuple[int, int, int, int],
    hw: tuple[int, int],
    dtype,
    compression: str,
    filt: str | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode_image`: an ``(H, W)`` image, 0 outside ``box``."""
    _check_filter(filt, dtype)
    u0, v0, u1, v1 = (int(x) for x in box)
    try:
        data = _deflater.decompress(buf) if compression == "zlib" else bytes(buf)
    except _deflater.error as e:  # isal's own error type
        raise zlib.error(str(e)) from e
    out = np.zeros(hw, dtype=dtype)
    crop = np.frombuffer(data, dtype=dtype).reshape(v1 - v0, u1 - u0)
    if filt == "row_delta":
        np.cumsum(crop, axis=1, dtype=dtype, out=out[v0:v1, u0:u1])  # wraps like the encoder
    else:
        out[v0:v1, u0:u1] = crop
    return out


# --- chunks -------------------------------------------------------------------------------------
def _write_chunk(chunks_dir: Path, c: int, first: int, encoded: list[dict]) -> bool:
    """Write one chunk of :func:`encode_frame` outputs atomically; False when another process
    wrote it first."""
    final = chunks_dir / chunk_name(c)
    tmp = temp_path(final)
    tmp.mkdir()
    try:
        labels = {
            "frame_index": np.arange(first, first + len(encoded), dtype=np.int64),
            "box": np.asarray([e["box"] for e in encoded], dtype=np.int32).reshape(-1, 4),
        }
        for key in encoded[0]["blobs"]:
            bufs = [e["blobs"][key] for e in encoded]
            sizes = np.fromiter((len(b) for b in bufs), dtype=np.int64, count=len(bufs))
            labels[f"offsets_{key}"] = np.concatenate([[0], np.cumsum(sizes)])
            np.save(tmp / f"{key}.npy", np.frombuffer(b"".join(bufs), dtype=np.uint8))
        for key in encoded[0]["arrays"]:
            labels[key] = np.stack([e["arrays"][key] for e in encoded])
        np.savez(tmp / "labels.npz", **labels)
        try:
            os.rename(tmp, final)
        except OSError:
            # Same content from a concurrent writer (frames depend on (seed, i) only).
            blobs = list(encoded[0]["blobs"])
            if final.is_dir() and check_chunk(final, len(encoded), blobs) is None:
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _blob_bytes(path: Path) -> int:
    """Payload length of a 1-D uint8 ``.npy`` blob, checked against the file's size."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{path.name}: .npy version {version} not supported")
        start = f.tell()
    if dtype != np.uint8 or len(shape) != 1:
        raise ValueError(f"{path.name} holds {dtype} {shape}, expected a 1-D uint8 blob")
    size = path.stat().st_size - start
    if size != shape[0]:
        raise ValueError(f"{path.name} is truncated: {size} of {shape[0]} bytes")
    return shape[0]


def check_chunk(path: Path, frames: int, images: Sequence[str]) -> str | None:
    """Why the chunk folder ``path`` is not a complete chunk of ``frames`` frames, or None.

    Quick: reads the labels' index arrays and the blobs' headers, not the pixels.
    """
    try:
        with np.load(path / "labels.npz") as z:
            if len(z["frame_index"]) != frames:
                return f"holds {len(z['frame_index'])} frames, expected {frames}"
            for key in images:
                offsets = z[f"offsets_{key}"]
                size = _blob_bytes(path / f"{key}.npy")
                if len(offsets) != frames + 1 or size != offsets[-1]:
                    return f"{key}.npy holds {size} bytes, labels expect {offsets[-1]}"
    except (OSError, ValueError, KeyError, EOFError, zlib.error) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def _clean_partials(chunks_dir: Path, mine: set[int]) -> int:
    """Delete partial chunk folders of the chunks in ``mine`` (left by a killed run)."""
    n = 0
    for p in chunks_dir.glob(".chunk_*.tmp"):
        m = re.match(r"\.chunk_(\d+)\.", p.name)
        if m and int(m[1]) in mine:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


# --- meta ---------------------------------------------------------------------------------------
def _meta(
    camera: Camera, frames: int, seed: int, chunk_size: int, compression: str, gen_info, schema
) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "frames": frames,
        "seed": seed,
        "chunk_size": chunk_size,
        "num_chunks": math.ceil(frames / chunk_size),
        "camera": camera.to_dict(),
        "generator": gen_info,
        "invalid_depth": INVALID_DEPTH,
        "depth_encoding": {
            k: {"dtype": dt, "unit_mm": u, "rounding": "nearest"}
            for k, (dt, u) in DEPTH_ENCODING.items()
        },
        "image_codec": {"crop": "bounding box of non-zero pixels", "compression": compression}
        | ({"zlib_level": _ZLIB_LEVEL} if compression == "zlib" else {})
        | ({"filters": dict(IMAGE_FILTERS)} if IMAGE_FILTERS else {}),
        **schema,
    }


def _write_meta(root: Path, meta: dict) -> None:
    """Write meta.json atomically, or check that the one there describes the same dataset."""
    path = root / META_NAME
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(path, f"unreadable ({e}); delete it or choose another --out") from e
        if old != json.loads(text):
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise DataError(
                path, f"the folder holds another dataset (differs in {', '.join(diff)})"
            )
        return
    write_text(path, text)


# --- the job ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    root: Path
    generator: FrameGenerator
    camera: Camera
    frames: int
    seed: int
    chunk_size: int
    compression: str
    schema: dict


def _run_chunk(job: _Job, c: int, on_frame: Callable[[], None] | None = None) -> int:
    """Generate and write chunk ``c``; returns its frame count (0 if another writer won)."""
    idx = chunk_frames(c, job.frames, job.chunk_size)
    encoded = []
    for i in idx:
        frame = job.generator(i, frame_rng(job.seed, i))
        encoded.append(encode_frame(frame, i, job.schema, job.camera, job.compression))
        if on_frame is not None:
            on_frame()
    wrote = _write_chunk(job.root / CHUNK_DIR, c, idx.start, encoded)
    return len(idx) if wrote else 0


_WORKER_JOB: _Job | None = None


def _keep_freed_memory() -> None:
    """Tell glibc's malloc to keep freed memory for reuse.

    A frame allocates and frees ~10 MB of full-frame images (depth, ids, normals, parts). By
    default glibc maps blocks of this size afresh and returns them to the kernel when freed, so
    every frame pays ~1500 page faults: measured 2 ms a frame, half the hand renderer's cost.
    A fixed mmap threshold of 32 MB (glibc's maximum) and a 256 MB trim threshold keep them.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    _keep_freed_memory()
    # One process per core: threads inside a worker would only compete with the others.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(1)


def _worker_chunk(c: int) -> int:
    return _run_chunk(_WORKER_JOB, c)


@dataclass
class SynthResult:
    """What one :func:`synthesize` call did."""

    root: Path
    chunks_written: list[int]
    chunks_skipped: list[int]
    frames_written: int
    partials_removed: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0


def synthesize(
    out: str | Path,
    generator: FrameGenerator,
    camera: Camera,
    frames: int,
    seed: int,
    *,
    chunk_size: int = 256,
    shard: tuple[int, int] = (1, 1),
    workers: int = 1,
    compression: str = "zlib",
    generator_info: dict | None = None,
    progress: bool = True,
    mp_context: str = "spawn",
) -> SynthResult:
    """Generate frames ``0 .. frames-1`` (this shard's chunks of them) into ``out``.

    Resumable: chunks already complete in ``out`` are kept and not regenerated. Every shard
    writes the same ``meta.json``; it is compared, not overwritten, when present.

    Args:
        generator: ``make_frame(index, rng) -> SynthFrame``, producing ``camera``'s image size;
            picklable when ``workers > 1``.
        camera: the camera the generator renders with (stored in meta.json).
        seed: non-negative; frame ``i`` uses :func:`frame_rng` ``(seed, i)``.
        shard: ``(i, N)``, 1-based: this call writes chunks ``c`` with ``c % N == i - 1``.
        workers: processes generating chunks in parallel (1: in this process).
        compression: ``"zlib"`` (level 1) or ``"none"`` for the depth crops.
        generator_info: JSON-serialisable name/version/config of the generator (meta.json).
        progress: show a tqdm bar (frames/s, ETA) when stderr is a terminal.
        mp_context: multiprocessing start method for ``workers > 1``; ``"spawn"`` is safe with
            torch and numba thread pools already started in this process.

    On Linux this also sets glibc's malloc to keep freed memory in this process and the
    workers (:func:`_keep_freed_memory`), which saves ~2 ms a frame of page faults.
    Raises:
        ValueError: bad arguments, or a generated frame that breaks the frame contract.
        DataError: ``out`` holds a different dataset (its meta.json differs).
    """
    t0 = time.perf_counter()
    _keep_freed_memory()
    if frames < 1 or chunk_size < 1 or workers < 1:
        raise ValueError("frames, chunk_size and workers must be >= 1")
    if not (isinstance(seed, int | np.integer) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    num_chunks = math.ceil(frames / chunk_size)
    mine = shard_chunks(num_chunks, shard)
    gen_info = generator_info or {"name": getattr(generator, "__name__", type(generator).__name__)}
    try:
        gen_info = json.loads(json.dumps(gen_info))
    except TypeError as e:
        raise ValueError(f"generator_info must be JSON-serialisable: {e}") from None

    # Frame 0 fixes the schema, so every shard derives the same meta.json without coordination.
    schema = _schema(generator(0, frame_rng(seed, 0)), camera)
    root = Path(out)
    chunks_dir = root / CHUNK_DIR
    chunks_dir.mkdir(parents=True, exist_ok=True)
    _write_meta(root, _meta(camera, frames, seed, chunk_size, compression, gen_info, schema))
    removed = _clean_partials(chunks_dir, set(mine))

    images = list(DEPTH_ENCODING) + [f"extra_{k}" for k in schema["extra_images"]]
    todo, skipped = [], []
    for c in mine:
        path = chunks_dir / chunk_name(c)
        n = len(chunk_frames(c, frames, chunk_size))
        if path.is_dir() and check_chunk(path, n, images) is None:
            skipped.append(c)
        else:
            if path.exists():  # damaged at its final name (not from a kill): redo it
                shutil.rmtree(path)
            todo.append(c)

    job = _Job(root, generator, camera, frames, seed, chunk_size, compression, schema)
    total = sum(len(chunk_frames(c, frames, chunk_size)) for c in todo)
    written = 0
    from tqdm import tqdm

    label = f"synth {shard[0]}/{shard[1]}" if shard[1] > 1 else "synth"
    with tqdm(total=total, unit="frame", desc=label, disable=None if progress else True) as bar:
        if workers == 1 or len(todo) <= 1:
            for c in todo:
                written += _run_chunk(job, c, on_frame=lambda: bar.update(1))
        else:
            ctx = mp.get_context(mp_context)
            with ctx.Pool(min(workers, len(todo)), _init_worker, (job,)) as pool:
                for c, n in zip(todo, pool.imap(_worker_chunk, todo), strict=True):
                    written += n
                    bar.update(len(chunk_frames(c, frames, chunk_size)))
    return SynthResult(root, todo, skipped, written, removed, time.perf_counter() - t0)


# --- preview ------------------------------------------------------------------------------------
def write_preview(root: str | Path, out: str | Path | None = None, count: int = 16) -> Path:
    """A contact sheet of the first ``count`` frames present: raw depth with the canonical
    skeleton, 4 tiles a row. Default ``out``: ``root/preview.png``."""
    from handvox.io.synthetic import SyntheticDataset
    from handvox.viz.draw import render_frame, save_png

    with warnings.catch_warnings():  # a shard's preview shows its own chunks; none is amiss
        warnings.simplefilter("ignore")
        ds = SyntheticDataset(root, load_clean=False)
    if len(ds) == 0:
        raise DataError(root, "no complete chunk to preview")
    tile, cols = 256, 4
    tiles = []
    for i in range(min(count, len(ds))):
        rec = ds[i]
        img = render_frame(rec.depth, rec.camera, rec.joint_set, gt_uvd=rec.joints_uvd,
                           size_px=tile, title=rec.frame_id)  # fmt: skip
        pad = np.zeros((tile, tile, 3), np.uint8)
        pad[: img.shape[0], : img.shape[1]] = img[:tile, :tile]
        tiles.append(pad)
    rows = math.ceil(len(tiles) / cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    sheet = np.concatenate(
        [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0
    )
    path = Path(out) if out is not None else Path(root) / "preview.png"
    save_png(path, sheet)
    return path


# --- generators by name -------------------------------------------------------------------------
def make_generator(
    name: str, camera: Camera, config: HandSynthConfig | None = None
) -> tuple[FrameGenerator, dict]:
    """The generator ``name`` (``"hand"`` or ``"toy"``) and its meta.json description.

    ``config`` (hand only) defaults to :meth:`~handvox.synth.hand.HandSynthConfig.for_camera`.
    """
    if name == "toy":
        from handvox.synth.toy import TOY_VERSION, toy_generator

        return toy_generator(camera), {"name": "toy", "version": TOY_VERSION}
    if name == "hand":
        # Imported here: synth_hand imports this module.
        from handvox.synth.hand import (
            HAND_PARTS,
            HAND_VERSION,
            SCENE_FLAGS,
            SHAPE_LAYOUT,
            HandSynthConfig,
            hand_frame_generator,
        )

        cfg = config or HandSynthConfig.for_camera(camera)
        if cfg.camera != camera:
            raise ValueError(f"config camera {cfg.camera} differs from {camera}")
        info = {"name": "hand", "version": HAND_VERSION, "config": cfg.to_dict(),
                "shape_layout": [[n, list(s)] for n, s in SHAPE_LAYOUT],
                "parts": list(HAND_PARTS), "scene_flags": list(SCENE_FLAGS)}  # fmt: skip
        return hand_frame_generator(cfg), info
    raise ValueError(f"unknown generator {name!r}; choose 'hand' or 'toy'")


_TOY_NAMES = ("TOY_PARTS", "TOY_VERSION", "toy_frame", "toy_generator")


def __getattr__(name: str):
    # The toy generator lives in handvox.synth.toy; these names stay importable from here.
    if name in _TOY_NAMES:
        from handvox.synth import toy as synth_toy

        return getattr(synth_toy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
