"""The storage contract of a synthetic dataset folder: what the writer
(:func:`handvox.synth.job.synthesize`) and the reader
(:class:`handvox.io.synthetic.SyntheticDataset`) both import, so neither imports the other.

Layout of a dataset folder::

    meta.json                     camera, seed, frame count, chunk size, generator, encodings
    chunks/chunk_000000/          frames 0 .. K-1 (K = chunk_size; the last chunk may be shorter)
        labels.npz                frame_index (K,), box (K, 4), offsets_<image> (K+1,),
                                  joints_<set> (K, J, 3), pose (K, P), shape (K, B),
                                  shape_id (K,), extra_<name> (K, ...)
        raw.npy, clean.npy        (N,) uint8: the frames' encoded crops, back to back
        extra_<name>.npy          the same for each (H, W) image in ``SynthFrame.extra``
        SHA256SUMS                the SHA-256 of every file above (``sha256sum -c`` reads it),
                                  written last: a chunk whose bytes changed after it was written
                                  (a bad disk, a copy cut short, an edit) is found and named

Encodings (decided by measurement: ``benchmarks/synth_write_speed.py``, figures in
docs/benchmarks.md):

* Depth is stored as uint16: ``raw`` in 1 mm units (what a real sensor's file holds: NYU and ICVL
  store integer mm, and the Kinect's own disparity steps are 1-2 mm at hand range) and ``clean``
  in 0.25 mm units (error <= 0.125 mm, range up to 16383.75 mm), both rounded to nearest.
  Values must be finite and in range; 0 (:data:`INVALID_DEPTH`) marks invalid (raw) or
  background (clean).
* Each frame keeps only the box holding every non-zero pixel of all its images (one box per
  frame, ``(u0, v0, u1, v1)`` half-open), compressed with zlib level 1 (``compression="zlib"``),
  deflated by isal when it is installed (the same zlib streams, faster; any zlib inflates them).
  Cropping and zlib beat whole-frame ``.npy``, ``np.savez_compressed`` and 16-bit PNG on both
  time and size; a scene with a full-frame background (a wall) leaves nothing to crop.
* ``clean`` is filtered before compression (format version 2, ``image_codec.filters`` in
  meta.json): each pixel less its left neighbour, modulo 2**16, which shrinks smooth rendered
  surfaces and deflates them faster; reading undoes it with a cumulative sum. Raw depth gains
  nothing from it (quantised, noisy) and is stored as is. Version 1 folders (no filters) are read
  as before; a job does not resume one (its meta.json differs).
* Frames are compressed one by one and stored back to back with an offset table, so the reader
  decodes one frame from a memory map of one ``.npy`` instead of inflating a whole chunk per item.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np

# Optional: the same zlib streams, deflated and inflated faster (benchmarks/synth_write_speed.py,
# with and without --stdlib-zlib; figures in docs/benchmarks.md, "benchmarks/synth_write_speed.py").
try:
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


ZLIB_LEVEL = 1


_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


def chunk_name(c: int) -> str:
    return f"chunk_{c:06d}"


def chunk_frames(c: int, frames: int, chunk_size: int) -> range:
    """Global frame indices held by chunk ``c``."""
    return range(c * chunk_size, min((c + 1) * chunk_size, frames))


def quantise_depth(
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


# One vectorised pass each where numpy would make several full-frame temporaries (comparisons,
# reductions, casts), which cost most with a wall in the frame (docs/benchmarks.md,
# "benchmarks/synth_write_speed.py").
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
    return _deflater.compress(data, ZLIB_LEVEL) if compression == "zlib" else data.tobytes()


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


CHECKSUMS = "SHA256SUMS"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path, names: Sequence[str]) -> None:
    """Write ``folder/SHA256SUMS`` for the files ``names`` in it (``sha256sum``'s own format)."""
    lines = [f"{file_sha256(folder / n)}  {n}\n" for n in sorted(names)]
    with open(folder / CHECKSUMS, "w", encoding="ascii", newline="\n") as f:
        f.writelines(lines)


def read_checksums(folder: Path) -> dict[str, str] | None:
    """``{file name: hex SHA-256}`` of a chunk; None for a chunk of a handvox older than
    checksums (nothing to check it against).

    Raises:
        ValueError: a damaged checksum file.
    """
    path = folder / CHECKSUMS
    if not path.exists():
        return None
    sums = {}
    for n, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line:
            continue
        digest, sep, name = line.partition(b"  ")
        if not sep or len(digest) != 64 or any(c not in b"0123456789abcdef" for c in digest):
            raise ValueError(f"{CHECKSUMS} line {n} is not '<sha256>  <name>'")
        sums[name.decode("ascii", "replace")] = digest.decode()
    return sums


def verify_file(folder: Path, name: str, sums: dict[str, str] | None) -> str | None:
    """Why ``folder/name`` does not match its checksum, or None (also when no checksums)."""
    if sums is None:
        return None
    if name not in sums:
        return f"{name} is not in {CHECKSUMS}"
    if file_sha256(folder / name) != sums[name]:
        return f"{name}: content damaged (SHA-256 differs from {CHECKSUMS})"
    return None


def check_chunk(
    path: Path, frames: int, images: Sequence[str], verify: Sequence[str] | None = None
) -> str | None:
    """Why the chunk folder ``path`` is not a complete chunk of ``frames`` frames, or None.

    Reads the labels' index arrays and the blobs' headers; ``verify``: the files whose bytes are
    also checked against the chunk's checksums (None: all of them; a rerun of a job uses that;
    the reader checks ``labels.npz`` when it opens a folder and a blob when it first reads it).
    """
    try:
        sums = read_checksums(path)
        for name in ["labels.npz"] + [f"{k}.npy" for k in images]:
            if verify is None or name in verify:
                problem = verify_file(path, name, sums)
                if problem is not None:
                    return problem
        with np.load(path / "labels.npz") as z:
            if len(z["frame_index"]) != frames:
                return f"holds {len(z['frame_index'])} frames, expected {frames}"
            for key in images:
                offsets = z[f"offsets_{key}"]
                size = _blob_bytes(path / f"{key}.npy")
                if len(offsets) != frames + 1 or size != offsets[-1]:
                    return f"{key}.npy holds {size} bytes, labels expect {offsets[-1]}"
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return None
