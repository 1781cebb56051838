import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handvox.errors import DataError
from handvox.io.depth import (
    check_depth,
    read_depth,
    read_msra_bin,
    write_msra_bin,
    write_nyu_depth,
    write_png16,
)


def _hand_like(h=240, w=320, seed=0) -> np.ndarray:
    """Whole-mm depth: a blob of 300..900 mm on 0 background."""
    rng = np.random.default_rng(seed)
    depth = np.zeros((h, w), np.float32)
    depth[50:130, 100:170] = rng.integers(300, 900, (80, 70))
    return depth


# --- real frames -------------------------------------------------------------------------------
def test_real_nyu_frame(shared):
    path = shared / "data/nyu/depth_1_0000001.png"
    depth = read_depth(path)
    assert depth.dtype == np.float32 and depth.shape == (480, 640)
    assert depth.min() == 731 and depth.max() == 2001
    np.testing.assert_array_equal(read_depth(path, "nyu"), depth)
    with pytest.raises(DataError, match="16-bit"):
        read_depth(path, "png16")


def test_real_sensor_png16(shared):
    path = shared / "data/hands17/image_D00000030.png"
    depth = read_depth(path)
    assert depth.dtype == np.float32 and depth.shape == (480, 640)
    assert depth.min() == 0 and depth.max() == 1030
    with pytest.raises(DataError, match="RGB"):
        read_depth(path, "nyu")


def test_nyu_writer_matches_real_encoding(shared, tmp_path):
    real = shared / "data/nyu/depth_1_0000001.png"
    depth = read_depth(real)
    out = tmp_path / "copy.png"
    write_nyu_depth(out, depth)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(real)))


# --- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "writer, name, encoding",
    [
        (write_nyu_depth, "d.png", "nyu"),
        (write_png16, "d.png", "png16"),
        (write_msra_bin, "d.bin", "msra"),
        (lambda p, d: np.save(p, d), "d.npy", "npy"),
    ],
)
def test_round_trip(tmp_path, writer, name, encoding):
    depth = _hand_like()
    path = tmp_path / name
    writer(path, depth)
    for enc in (encoding, "auto"):
        back = read_depth(path, enc)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, depth)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left behind


def test_16bit_writers_round_to_mm_and_cover_full_range(tmp_path):
    depth = np.array([[0.4, 0.6, 700.49, 700.5001], [1.0, 255.0, 256.0, 65535.0]], np.float32)
    expected = np.array([[0, 1, 700, 701], [1, 255, 256, 65535]], np.float32)
    write_nyu_depth(tmp_path / "a.png", depth)
    write_png16(tmp_path / "b.png", depth)
    np.testing.assert_array_equal(read_depth(tmp_path / "a.png"), expected)
    np.testing.assert_array_equal(read_depth(tmp_path / "b.png"), expected)
    for bad in (np.full((2, 2), 65536.0), np.full((2, 2), -1.0), np.full((2, 2), np.nan)):
        with pytest.raises(ValueError):
            write_png16(tmp_path / "c.png", bad)
    assert not (tmp_path / "c.png").exists()


def test_msra_bin_stores_bounding_box(tmp_path):
    depth = _hand_like()
    depth[60, 90] = 123.25  # float values survive (the format stores float32)
    path = tmp_path / "000000_depth.bin"
    write_msra_bin(path, depth)
    header = struct.unpack("<6I", path.read_bytes()[:24])
    assert header == (320, 240, 90, 50, 170, 130)
    assert path.stat().st_size == 24 + 4 * 80 * 80
    np.testing.assert_array_equal(read_msra_bin(path), depth)


def test_empty_depth_is_not_an_error(tmp_path):
    empty = np.zeros((240, 320), np.float32)
    write_msra_bin(tmp_path / "e.bin", empty)
    write_png16(tmp_path / "e.png", empty)
    for name in ("e.bin", "e.png"):
        np.testing.assert_array_equal(read_depth(tmp_path / name), empty)


def test_overwrite_existing_file(tmp_path):
    path = tmp_path / "d.png"
    write_png16(path, np.full((4, 4), 5.0))
    write_png16(path, np.full((4, 4), 7.0))
    assert (read_depth(path) == 7).all()


def test_unknown_encoding(tmp_path):
    with pytest.raises(ValueError, match="encoding"):
        read_depth(tmp_path / "x.png", "jpeg")


# --- bad files ---------------------------------------------------------------------------------
def _png_bytes(tmp_path: Path) -> bytes:
    write_png16(tmp_path / "good.png", _hand_like())
    return (tmp_path / "good.png").read_bytes()


def _bin_bytes(tmp_path: Path) -> bytes:
    write_msra_bin(tmp_path / "good.bin", _hand_like())
    return (tmp_path / "good.bin").read_bytes()


def _header(*values) -> bytes:
    return struct.pack("<6I", *values)


def _save_image(array: np.ndarray):
    def make(path: Path, tmp_path: Path) -> None:
        Image.fromarray(array).save(path, format="PNG")

    return make


BAD_FILES = {
    # name: (file name, encoding, how to make it, expected words in the message)
    "missing png": ("nope.png", "auto", None, "no such file"),
    "missing bin": ("nope.bin", "msra", None, "no such file"),
    "missing npy": ("nope.npy", "npy", None, "no such file"),
    "garbage png": ("g.png", "auto", lambda p, t: p.write_bytes(b"not a png" * 50), "corrupt"),
    "truncated png": ("t.png", "png16", lambda p, t: p.write_bytes(_png_bytes(t)[:300]), "corrupt"),
    "empty png": ("z.png", "nyu", lambda p, t: p.write_bytes(b""), "corrupt"),
    "8-bit gray png": ("l.png", "auto", _save_image(np.zeros((4, 4), np.uint8)), "mode L"),
    "rgba as nyu": ("a.png", "nyu", _save_image(np.zeros((4, 4, 4), np.uint8)), "mode RGBA"),
    "colour image as nyu": (
        "c.png",
        "auto",
        _save_image(np.full((4, 4, 3), 9, np.uint8)),
        "red channel",
    ),
    "bin shorter than header": ("s.bin", "msra", lambda p, t: p.write_bytes(b"\0" * 10), "header"),
    "truncated bin": ("t.bin", "msra", lambda p, t: p.write_bytes(_bin_bytes(t)[:-4]), "truncated"),
    "bin with trailing bytes": (
        "x.bin",
        "msra",
        lambda p, t: p.write_bytes(_bin_bytes(t) + b"\0\0\0\0"),
        "trailing",
    ),
    "bin box outside image": (
        "o.bin",
        "auto",
        lambda p, t: p.write_bytes(_header(320, 240, 300, 0, 330, 1) + b"\0" * 120),
        "bounding box",
    ),
    "bin empty box": (
        "e.bin",
        "msra",
        lambda p, t: p.write_bytes(_header(320, 240, 10, 10, 10, 20)),
        "bounding box",
    ),
    "bin wrong image size": (
        "w.bin",
        "msra",
        lambda p, t: p.write_bytes(_header(640, 480, 0, 0, 1, 1) + b"\0" * 4),
        "640x480",
    ),
    "bin with inf": (
        "n.bin",
        "msra",
        lambda p, t: p.write_bytes(_header(320, 240, 0, 0, 1, 1) + struct.pack("<f", np.inf)),
        "infinite",
    ),
    "npy with inf": ("n.npy", "auto", lambda p, t: np.save(p, np.full((3, 3), np.inf)), "infinite"),
    "npy 3-D": ("d.npy", "npy", lambda p, t: np.save(p, np.zeros((2, 3, 3))), "2-D"),
    "npy strings": ("s.npy", "npy", lambda p, t: np.save(p, np.array([["a"]])), "numeric"),
    "npy garbage": ("g.npy", "npy", lambda p, t: p.write_bytes(b"\x93NUMPY garbage"), "corrupt"),
    "rosbag": (
        "r.bag",
        "auto",
        lambda p, t: p.write_bytes(b"#ROSBAG V2.0\n"),
        "RealSense (rosbag) recording, not a depth image: play it with handvox live --source bag",
    ),
    "mkv": ("k.mkv", "auto", lambda p, t: p.write_bytes(b"\x1aE\xdf\xa3"), "--source k4a:FILE"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_data_error_naming_it(tmp_path, case):
    name, encoding, make, words = BAD_FILES[case]
    path = tmp_path / name
    if make is not None:
        make(path, tmp_path)
    with pytest.raises(DataError) as info:
        read_depth(path, encoding)
    assert name in str(info.value) and words in str(info.value)
    assert info.value.path == path


def _png_claiming(path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` 16-bit pixels, with next to no data."""
    import struct as st
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return st.pack(">I", len(data)) + kind + data + st.pack(">I", zlib.crc32(kind + data))

    ihdr = st.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))  # fmt: skip


def _npy_claiming(path, shape) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )


def _npy_bit_flipped(path) -> None:
    np.save(path, np.ones((4, 4), np.float32))
    data = bytearray(path.read_bytes())
    data[data.index(b"shape") + 9] ^= 0x40  # inside the header's dict literal
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("huge.png", lambda p: _png_claiming(p, 30000, 30000), "pixels"),
        ("big.png", lambda p: _png_claiming(p, 8000, 8000), "claims 8000x8000"),
        ("huge.npy", lambda p: _npy_claiming(p, (10**6, 10**6)), "corrupt"),
        ("flipped.npy", _npy_bit_flipped, "corrupt"),
        ("fifo.png", lambda p: os.mkfifo(p), "not a regular file"),
        ("fifo.bin", lambda p: os.mkfifo(p), "not a regular file"),
    ],
)  # fmt: skip
def test_lying_headers_and_special_files_are_clean_errors_not_crashes_or_hangs(
    tmp_path, name, make, words
):
    # The fuzzing of issue 13 found these as tracebacks (DecompressionBombError, MemoryError,
    # TokenError) and a FIFO that blocked predict for ever.
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=words) as info:
        read_depth(path)
    assert info.value.path == path


def test_nan_reads_as_no_reading_as_the_api_takes_it(tmp_path):
    # NaN means "no reading" to HandPoseEstimator; a file holding it must give the same answer
    depth = np.array([[500.0, np.nan], [np.nan, 700.0]], np.float32)
    np.save(tmp_path / "n.npy", depth)
    np.testing.assert_array_equal(read_depth(tmp_path / "n.npy"), [[500.0, 0.0], [0.0, 700.0]])
    (tmp_path / "n.bin").write_bytes(
        _header(320, 240, 0, 0, 2, 1) + struct.pack("<2f", np.nan, 650.0)
    )
    got = read_depth(tmp_path / "n.bin")
    assert got[0, 0] == 0.0 and got[0, 1] == 650.0


def test_check_depth():
    good = np.zeros((3, 4), np.float32)
    assert check_depth(good, "f.png") is good
    bad = {
        "2-D": np.zeros((3, 4, 1), np.float32),
        "float32": np.zeros((3, 4), np.float64),
        "NaN": np.array([[1.0, np.nan]], np.float32),
        "negative": np.array([[1.0, -2.0]], np.float32),
    }
    for words, depth in bad.items():
        with pytest.raises(DataError, match=f"f.png: .*{words}"):
            check_depth(depth, "f.png")
