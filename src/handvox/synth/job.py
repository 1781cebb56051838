"""The synthesis job: calls a per-frame generator and writes a dataset, sharded and resumable.

A generator is any callable ``make_frame(index, rng) -> SynthFrame``
(:data:`handvox.synth.frame.FrameGenerator`).
Frame ``i`` is always made with ``rng = np.random.default_rng([seed, i])``, so its content
depends on ``(seed, i)`` alone: not on sharding, worker count, or how often the job was resumed.
:func:`synthesize` runs the job; :class:`handvox.io.synthetic.SyntheticDataset` reads the result.

Generators: :func:`handvox.synth.hand.hand_frame_generator` (the kinematic hand of
:mod:`handvox.hand.kinematics` in a natural pose from :mod:`handvox.hand.poses`, with forearm,
body and wall, ray cast by :mod:`handvox.synth.raycast` and noised by :mod:`handvox.synth.noise`;
configured by :class:`handvox.synth.hand_config.HandSynthConfig`),
:class:`handvox.synth.transfer.TransferGenerator` (labelled real poses on new hands and views)
and the toy stand-in of :mod:`handvox.synth.toy`; :func:`handvox.synth.generators.make_generator`
picks one by name. ``benchmarks/synth_speed.py`` times them per stage and end to end.

The folder's layout and encodings are the storage contract of :mod:`handvox.io.synthformat`,
which the reader (:class:`handvox.io.synthetic.SyntheticDataset`) imports too.

Sharding: shard ``i/N`` (1-based) writes the chunks ``c`` with ``c % N == i - 1``; shards never
touch each other's files, so N machines may share one folder. Every shard writes the same
``meta.json`` (derived from the arguments and frame 0, never from time or host).

Resumption: a chunk is built in ``chunks/.chunk_XXXXXX.<tag>.tmp/`` and renamed to its final
name when complete, so a killed job leaves only complete chunks and partial folders. A restart
deletes its shard's partial folders, skips chunks that exist (checked: every file against the
chunk's ``SHA256SUMS``, labels readable, frame count and blob sizes as expected), names and
rewrites damaged ones, and writes the rest. Two processes writing the same shard of one folder
are refused (a lock per shard, held while the job runs and released by the kernel when the
process ends, killed or not). The rename protects against the process
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from handvox.atomic import naming, remove_stale_temps, temp_path, write_text, writer_lock
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.synthformat import (
    CHUNK_DIR,
    COMPRESSIONS,
    DEPTH_ENCODING,
    FORMAT,
    FORMAT_VERSION,
    IMAGE_FILTERS,
    INVALID_DEPTH,
    META_NAME,
    ZLIB_LEVEL,
    check_chunk,
    chunk_frames,
    chunk_name,
    crop_box,
    encode_image,
    quantise_depth,
    write_checksums,
)
from handvox.synth.frame import FrameGenerator, SynthFrame, frame_rng


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
            crop = quantise_depth(a, box, DEPTH_ENCODING[key][1], key, index, filt == "row_delta")
            blobs[key] = encode_image(crop, compression)
        else:
            blobs[key] = encode_image(a[v0:v1, u0:u1], compression, filt)
    return {"box": box, "blobs": blobs, "arrays": arrays}


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
        write_checksums(tmp, ["labels.npz"] + [f"{k}.npy" for k in encoded[0]["blobs"]])
        try:
            os.rename(tmp, final)
        except OSError:
            # Same content from a concurrent writer (frames depend on (seed, i) only).
            blobs = list(encoded[0]["blobs"])
            if final.is_dir() and check_chunk(final, len(encoded), blobs) is None:
                return False
            raise
        return True
    except OSError as e:  # a full disk names the chunk, not its temporary
        raise naming(e, final, tmp) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
        | ({"zlib_level": ZLIB_LEVEL} if compression == "zlib" else {})
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
    every frame pays their page faults again, a large share of the hand renderer's cost
    (docs/benchmarks.md, "`handvox synth` end to end"). A fixed mmap threshold of 32 MB
    (glibc's maximum) and a 256 MB trim threshold keep them.
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
    # One process per core: threads inside a worker would only compete with the others. numba
    # first: starting its thread layer resets torch's thread count.
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _worker_chunk(c: int) -> int:
    return _run_chunk(_WORKER_JOB, c)


@dataclass
class SynthResult:
    """What one :func:`synthesize` call did."""

    root: Path
    chunks_written: list[int]
    chunks_skipped: list[int]
    chunks_damaged: dict[int, str]  # chunk -> what was wrong with it (rewritten)
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
    workers (:func:`_keep_freed_memory`), which saves every frame's page faults on fresh images.
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
    with writer_lock(root, f"synth-shard-{shard[0]}-of-{shard[1]}", "this shard of a dataset"):
        _write_meta(root, _meta(camera, frames, seed, chunk_size, compression, gen_info, schema))
        removed = _clean_partials(chunks_dir, set(mine))
        removed += remove_stale_temps(root) + remove_stale_temps(chunks_dir)

        images = list(DEPTH_ENCODING) + [f"extra_{k}" for k in schema["extra_images"]]
        todo, skipped, damaged = [], [], {}
        for c in mine:
            path = chunks_dir / chunk_name(c)
            n = len(chunk_frames(c, frames, chunk_size))
            problem = check_chunk(path, n, images) if path.exists() else "missing"
            if problem is None:
                skipped.append(c)
            else:
                if path.exists():  # damaged at its final name (not from a kill): named, redone
                    damaged[c] = problem
                    print(f"synth: {path}: {problem}; writing it again", file=sys.stderr)
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                todo.append(c)

        job = _Job(root, generator, camera, frames, seed, chunk_size, compression, schema)
        total = sum(len(chunk_frames(c, frames, chunk_size)) for c in todo)
        written = 0
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
        return SynthResult(root, todo, skipped, damaged, written, removed, time.perf_counter() - t0)
