"""The synthetic storage contract (handvox.io.synthformat): image codec, crop boxes, depth
quantisation. Whole datasets written and read back: tests/synth/test_job.py."""

from __future__ import annotations

import numpy as np
import pytest

from handvox.io.synthformat import crop_box, decode_image, encode_image, quantise_depth


def test_image_codec_row_delta_and_crop_box():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 65536, (7, 9)).astype(np.uint16)
    img[:, 0], img[:, 1] = 65535, 0  # steps that wrap around
    for comp in ("zlib", "none"):
        buf = encode_image(img, comp, "row_delta")
        out = decode_image(buf, (2, 1, 11, 8), (10, 12), np.uint16, comp, "row_delta")
        np.testing.assert_array_equal(out[1:8, 2:11], img)
        assert not out[:1].any() and not out[:, :2].any() and out.dtype == np.uint16
        plain = decode_image(buf, (2, 1, 11, 8), (10, 12), np.uint16, comp)
        np.testing.assert_array_equal(np.cumsum(plain[1:8, 2:11], 1, np.uint16), img)
    with pytest.raises(ValueError, match="unsigned"):
        encode_image(img.astype(np.float32), "zlib", "row_delta")
    with pytest.raises(ValueError, match="filter"):
        encode_image(img, "zlib", "paeth")
    # crop_box: the box of every non-zero (or NaN) pixel over images of any dtype
    for dt in (np.float32, np.float16, np.uint8, np.int64, bool):
        a, b = np.zeros((30, 40), dt), np.zeros((30, 40), np.float32)
        a[3:5, 30] = 1
        b[20, 7] = np.nan
        assert crop_box([a]) == (30, 3, 31, 5) and crop_box([a, b]) == (7, 3, 31, 21)
        assert crop_box([np.zeros_like(a)]) == (0, 0, 0, 0)


def test_depth_quantisation_rounds_like_numpy():
    rng = np.random.default_rng(1)
    depth = (rng.random((60, 80)) * 4000).astype(np.float32)
    depth[::3] = np.round(depth[::3]) + 0.5  # ties: to even, as np.rint
    depth[1::3] = np.round(depth[1::3] * 4) / 4 + 0.125
    depth[5, :7] = [0.0, -0.0, 0.5, 1.5, 2.5, 16383.625, 16383.75]
    box = (3, 2, 77, 59)
    for unit in (1.0, 0.25):
        want = np.rint(depth[2:59, 3:77] / np.float32(unit)).astype(np.uint16)
        np.testing.assert_array_equal(quantise_depth(depth, box, unit, "raw", 0), want)
        delta = quantise_depth(depth, box, unit, "raw", 0, row_delta=True)
        np.testing.assert_array_equal(np.cumsum(delta, 1, np.uint16), want)
    with pytest.raises(ValueError, match=r"frame 4: clean depth spans -1.0\.\.3.0 mm"):
        quantise_depth(np.array([[-1.0, 3.0]], np.float32), (0, 0, 2, 1), 0.25, "clean", 4)
    with pytest.raises(ValueError, match="outside 0..65535"):
        quantise_depth(np.array([[65535.6]], np.float32), (0, 0, 1, 1), 1.0, "raw", 4)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantise_depth(np.array([[np.inf]], np.float32), (0, 0, 1, 1), 1.0, "raw", 4)
