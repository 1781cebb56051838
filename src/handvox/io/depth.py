"""Depth images as the public datasets store them, decoded to float32 millimetres.

Encodings:
- ``nyu``: 8-bit RGB PNG, depth = (G << 8) | B, R = 0 (NYU hand pose dataset).
- ``png16``: 16-bit grayscale PNG in mm, 0 = invalid (ICVL, most sensor dumps).
- ``msra``: MSRA 2015 ``.bin``: six uint32 ``img_width img_height left top right bottom``, then
  ``(right - left) * (bottom - top)`` float32 depths of the box ``[left, right) x [top, bottom)`` in
  row order; pixels outside the box are 0.
- ``npy``: a NumPy ``(H, W)`` array of depths in mm (NaN or 0: no reading, read as 0).

An image with no valid pixel is returned as is: whether it holds a hand is for segmentation to say.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from tokenize import TokenError

import numpy as np
from PIL import Image

from handvox.atomic import atomic_path
from handvox.errors import DataError

ENCODINGS = ("auto", "nyu", "png16", "msra", "npy")
# No depth sensor's frame is larger (1280x720 is the largest in handvox.synth.sensors; 4096^2
# leaves room): a header claiming more is corrupt, and decoding it would exhaust the memory.
_MAX_PIXELS = 4096 * 4096
# Recordings of whole sessions, named as such (they are not images, whatever a reader would
# make of their bytes), and the `handvox live --source` that plays each.
RECORDINGS = {
    ".bag": ("RealSense (rosbag)", "bag:FILE"),
    ".db3": ("RealSense (ROS2)", "bag:FILE"),
    ".mkv": ("Azure Kinect (Matroska)", "k4a:FILE"),
    ".oni": ("OpenNI", "openni2:FILE"),
}
_MSRA_HEADER = np.dtype("<u4")
_MSRA_VALUES = np.dtype("<f4")


def check_depth(depth: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Check that ``depth`` is a ``(H, W)`` float32 array of finite, non-negative mm.

    Returns ``depth`` unchanged. Raises DataError naming ``path``. An all-zero image passes.
    """
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise DataError(path, f"depth must be a 2-D (H, W) array, got {np.shape(depth)}")
    if depth.dtype != np.float32:
        raise DataError(path, f"depth must be float32, got {depth.dtype}")
    if not np.isfinite(depth).all():
        raise DataError(path, "depth holds NaN or infinite values")
    if (depth < 0).any():
        raise DataError(path, "depth holds negative values")
    return depth


_PNG16_MODES = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes for 16-bit grayscale PNGs


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_chunks(path: Path) -> None:
    """Every chunk of a PNG file against its CRC. Pillow checks neither the image data's CRCs
    nor, when it has the pixels it needs, zlib's own checksum at the stream's end: a flipped
    bit there decodes to other depth values without an error (tests/test_fuzz.py found it)."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        return  # not a PNG: Pillow's own checks
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise DataError(path, f"unreadable or corrupt image (a PNG cut short at byte {pos})")
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        if length > 2**31 - 1 or end + 4 > len(data):
            raise DataError(
                path,
                f"unreadable or corrupt image (a PNG cut short or damaged: the chunk at byte "
                f"{pos} claims {length} bytes)",
            )
        kind = data[pos + 4 : pos + 8]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[pos + 4 : end]) != crc:
            name = kind.decode("latin1")
            raise DataError(
                path,
                f"unreadable or corrupt image (PNG chunk {name!r} at byte {pos} fails its CRC)",
            )
        if kind == b"IEND":
            return
        pos = end + 4


def _load_image(path: Path) -> tuple[str, np.ndarray]:
    """The image's Pillow mode and its pixels (decoded now, so corrupt data fails here)."""
    try:
        _check_png_chunks(path)
        with Image.open(path) as image:
            w, h = image.size
            if w * h > _MAX_PIXELS:  # before decoding: a lying header must not take the memory
                raise DataError(path, f"image header claims {w}x{h} pixels: not a depth frame")
            if image.format == "PNG" and image.mode == "RGB" and _png_bit_depth(path) == 16:
                # Pillow reads 16-bit channels as 8-bit RGB: it would pass for NYU's encoding
                raise DataError(
                    path,
                    "a 48-bit RGB PNG (16 bits a channel): no depth encoding (NYU's is 8-bit "
                    "RGB; 16-bit depth is one grey channel)",
                )
            return image.mode, np.asarray(image)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DataError(path, f"unreadable or corrupt image ({e})") from None


def _png_bit_depth(path: Path) -> int:
    """Bits per channel in a PNG's IHDR (byte 24: after the signature, length, type, size)."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 else 0


def _decode_nyu(mode: str, rgb: np.ndarray, path: Path) -> np.ndarray:
    if mode != "RGB":
        raise DataError(path, f"NYU depth must be an 8-bit RGB PNG, got mode {mode}")
    # A non-zero red channel means a colour image (e.g. NYU's rgb_*.png), not encoded depth.
    if rgb[..., 0].any():
        raise DataError(path, "red channel is not zero: not an NYU-encoded depth image")
    depth = (rgb[..., 1].astype(np.uint16) << 8) | rgb[..., 2]
    return depth.astype(np.float32)


def _decode_png16(mode: str, pixels: np.ndarray, path: Path) -> np.ndarray:
    if mode not in _PNG16_MODES:
        raise DataError(path, f"expected a 16-bit grayscale PNG, got mode {mode}")
    if pixels.dtype.kind == "i" and (pixels.min() < 0 or pixels.max() > 65535):
        raise DataError(path, "pixel values outside the 16-bit range")
    return pixels.astype(np.float32)


def read_msra_bin(path: str | Path, width: int = 320, height: int = 240) -> np.ndarray:
    """Read an MSRA 2015 ``.bin`` depth file into a full image.

    Args:
        width, height: the image size the header must state.
    Returns:
        ``(height, width)`` float32 mm, 0 outside the stored bounding box.
    Raises:
        DataError: missing file, bad header, wrong byte length, non-finite values.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read below
        raise DataError(path, "not a regular file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as e:
        raise DataError(path, f"unreadable ({e})") from None
    if len(data) < 24:
        raise DataError(path, f"truncated: {len(data)} bytes, shorter than the 24-byte header")
    img_w, img_h, left, top, right, bottom = (int(v) for v in np.frombuffer(data, _MSRA_HEADER, 6))
    if (img_w, img_h) != (width, height):
        raise DataError(path, f"header says {img_w}x{img_h} image, expected {width}x{height}")
    if not (0 <= left < right <= img_w and 0 <= top < bottom <= img_h):
        raise DataError(
            path, f"bad bounding box left={left} top={top} right={right} bottom={bottom}"
        )
    box_h, box_w = bottom - top, right - left
    expected = 24 + 4 * box_w * box_h
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise DataError(path, f"{what}: {len(data)} bytes, the header implies {expected}")
    box = np.frombuffer(data, _MSRA_VALUES, box_w * box_h, offset=24).reshape(box_h, box_w)
    depth = np.zeros((img_h, img_w), np.float32)
    depth[top:bottom, left:right] = box
    return check_depth(_nan_as_no_reading(depth), path)


def _read_npy(path: Path) -> np.ndarray:
    try:
        # The header first: a corrupt one can claim any shape (MemoryError) or not parse
        # (tokenize errors), and neither may escape as a traceback.
        array = np.load(path, allow_pickle=False, mmap_mode="r")
        if array.size > _MAX_PIXELS:
            raise DataError(path, f".npy header claims shape {array.shape}: not a depth frame")
        array = np.array(array)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except DataError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        MemoryError,
        OverflowError,
        SyntaxError,
        TokenError,
    ) as e:
        raise DataError(path, f"unreadable or corrupt .npy file ({e})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataError(path, f"expected a numeric array, got {getattr(array, 'dtype', array)}")
    if array.ndim != 2:
        raise DataError(path, f"expected a 2-D (H, W) depth array, got shape {array.shape}")
    return check_depth(_nan_as_no_reading(array.astype(np.float32)), path)


def _nan_as_no_reading(depth: np.ndarray) -> np.ndarray:
    """NaN marks a pixel without a reading in float formats, as the estimator's API takes it:
    stored as 0 here, so that a file and the same array passed to the API give one answer."""
    return np.where(np.isnan(depth), np.float32(0), depth).astype(np.float32, copy=False)


def read_depth(path: str | Path, encoding: str = "auto") -> np.ndarray:
    """Read a depth image as ``(H, W)`` float32 mm.

    Args:
        encoding: one of :data:`ENCODINGS`. ``auto`` picks by extension (``.bin`` msra, ``.npy``
            npy) and otherwise by image mode (RGB: nyu, 16-bit grayscale: png16).
    Raises:
        DataError: missing, unreadable or corrupt file, wrong mode or shape, infinite or
            negative values (NaN in ``.npy`` and ``.bin`` files means no reading: 0).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown depth encoding {encoding!r}; choose one of {ENCODINGS}")
    path = Path(path)
    suffix = path.suffix.lower()
    if path.exists() and not path.is_file():  # a folder, a FIFO, a device: reading could hang
        raise DataError(path, "not a regular file")
    if suffix in RECORDINGS:
        kind, source = RECORDINGS[suffix]
        raise DataError(
            path,
            f"a {kind} recording, not a depth image: play it with handvox live --source "
            f"{source} (its camera and unit come from the recording), or export its depth "
            "frames as 16-bit PNGs with their camera.json (README, 'Your own camera')",
        )
    if encoding == "msra" or (encoding == "auto" and suffix == ".bin"):
        return read_msra_bin(path)
    if encoding == "npy" or (encoding == "auto" and suffix == ".npy"):
        return _read_npy(path)
    mode, pixels = _load_image(path)
    if encoding == "auto":
        if mode not in ("RGB", *_PNG16_MODES):
            raise DataError(
                path, f"image mode {mode} is no depth encoding (RGB: NYU, 16-bit grayscale: png16)"
            )
        encoding = "nyu" if mode == "RGB" else "png16"
    if encoding == "nyu":
        return _decode_nyu(mode, pixels, path)
    return _decode_png16(mode, pixels, path)


# --- writers -----------------------------------------------------------------------------------
def _to_uint16(depth: np.ndarray) -> np.ndarray:
    """Round mm to whole millimetres (what the 16-bit formats hold)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if not np.isfinite(depth).all() or depth.min(initial=0) < 0 or depth.max(initial=0) > 65535:
        raise ValueError("depth must be finite and within 0..65535 mm for a 16-bit format")
    return np.rint(depth).astype(np.uint16)


def write_nyu_depth(path: str | Path, depth: np.ndarray) -> None:
    """Write ``(H, W)`` mm as an NYU RGB PNG (rounded to whole mm)."""
    d = _to_uint16(depth)
    rgb = np.zeros((*d.shape, 3), np.uint8)
    rgb[..., 1] = d >> 8
    rgb[..., 2] = d & 0xFF
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def write_png16(path: str | Path, depth: np.ndarray) -> None:
    """Write ``(H, W)`` mm as a 16-bit grayscale PNG (rounded to whole mm)."""
    d = _to_uint16(depth)
    with atomic_path(path) as tmp:
        Image.fromarray(d).save(tmp, format="PNG")


def write_msra_bin(path: str | Path, depth: np.ndarray) -> None:
    """Write ``(H, W)`` mm as an MSRA ``.bin`` holding the bounding box of non-zero pixels.

    An all-zero image is stored as a 1x1 box of 0 at the origin (the format has no empty box).
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if not np.isfinite(depth).all():
        raise ValueError("depth must be finite")
    rows, cols = np.nonzero(depth)
    if rows.size:
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    else:
        top, bottom, left, right = 0, 1, 0, 1
    h, w = depth.shape
    header = np.array([w, h, left, top, right, bottom], _MSRA_HEADER)
    box = np.ascontiguousarray(depth[top:bottom, left:right], _MSRA_VALUES)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.tobytes() + box.tobytes())
