"""Malformed input, generated: ``HANDVOX_FUZZ_CASES`` (default 10,000) seeded cases through the
depth readers, the label and prediction readers, ``evaluate``, ``predict`` and ``show``.

Each case is a mutation of a valid file with an oracle of what must happen:

- **depth files** (NYU RGB PNG, 16-bit PNG, ``.npy``, MSRA ``.bin``): truncated, bit-flipped,
  zero-byte, random bytes, other image modes (8-bit, RGBA, palette, 1-bit, 48-bit RGB), other
  sizes, other dtypes and dimensions, NaN / inf / negative values, lying headers (MSRA boxes,
  ``.npy`` shapes), special files (a FIFO, a folder, a dangling link). The reader either raises
  :class:`DataError` naming the file, or returns ``(H, W)`` float32 finite non-negative depth;
  a PNG whose bytes were flipped and still reads must read as the original (its chunks carry
  CRCs).
- **label and prediction text** (community uvd): a line deleted, duplicated or blanked, the last
  number cut, a number replaced by a non-number (``1_000``, ``inf``, ``nan``, ``1e300``, other
  scripts' digits, words), a byte that is not UTF-8, a column more or less, frames appended, and
  benign changes (CRLF line ends, trailing blanks). Scored: misaligning or invalid changes must be
  a :class:`DataError` naming the file (and the line where one is at fault); benign ones must
  give the original score exactly; no score may be non-finite.
- **predictions.json**: keys missing, values of the wrong type or shape, NaN written as text:
  a DataError naming the file, never a traceback.
- **through the commands**: a sample of the depth cases through ``predict`` (exit 0 or 1 with
  consistent outputs: a frame is ``found`` with finite joints or not found with none, and the
  community text holds zeros only for frames not found; or exit 2 with the file named), ``show``
  and ``evaluate``, in-process.

Every case runs under a per-case alarm (a hang fails the case). A failure prints the case's seed
and mutation so that it can be replayed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.cli.main import main
from handvox.errors import DataError, HandvoxError
from handvox.eval.files import evaluate_files
from handvox.io.depth import read_depth, write_msra_bin, write_nyu_depth, write_png16
from handvox.io.predictions import read_json

CASES = int(os.environ.get("HANDVOX_FUZZ_CASES", "10000"))
NYU = Camera.preset("nyu")
LABEL_LINES = 40  # frames of the label files the text cases mutate
# A case's budget: reading a frame takes milliseconds, a command a second or two.
ALARM_S = 20


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int):
    def ring(signum, frame):
        raise Hang(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- valid files ---------------------------------------------------------------------------------
def _valid_files(folder: Path) -> dict[str, bytes]:
    depth = np.rint(synthetic_frame(NYU)).astype(np.float32)
    write_nyu_depth(folder / "v.png", depth)
    write_png16(folder / "v16.png", depth)
    np.save(folder / "v.npy", depth)
    small = np.zeros((240, 320), np.float32)
    small[100:140, 150:200] = 500.0 + np.arange(50, dtype=np.float32)
    write_msra_bin(folder / "v.bin", small)
    return {
        "nyu": (folder / "v.png").read_bytes(),
        "png16": (folder / "v16.png").read_bytes(),
        "npy": (folder / "v.npy").read_bytes(),
        "bin": (folder / "v.bin").read_bytes(),
    }


SUFFIX = {"nyu": ".png", "png16": ".png", "npy": ".npy", "bin": ".bin"}


def _png_of(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG") if mode else Image.fromarray(array).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _png48(h: int, w: int) -> bytes:
    raw = b"".join(b"\x00" + np.full((w, 3), 700, ">u2").tobytes() for _ in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + (chunk(b"IEND", b""))
    )


def _npy_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# --- depth mutations ----------------------------------------------------------------------------
def depth_case(rng: np.random.Generator, valid: dict[str, bytes]) -> tuple[str, str, bytes | None]:
    """``(description, suffix, bytes)``; bytes None for the special-file cases."""
    kind = str(rng.choice(list(valid)))
    data = valid[kind]
    suffix = SUFFIX[kind]
    op = int(rng.integers(12))
    if op == 0:
        cut = int(rng.integers(0, len(data)))
        return f"{kind} truncated at {cut}", suffix, data[:cut]
    if op in (1, 2):
        b = bytearray(data)
        # the header region more often: that is where parsers go wrong
        region = 64 if op == 1 else len(b)
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, min(region, len(b))))
            b[i] ^= 1 << int(rng.integers(8))
        return f"{kind} bits flipped", suffix, bytes(b)
    if op == 3:
        return f"{kind} zero bytes", suffix, b""
    if op == 4:
        return f"{kind} random bytes", suffix, rng.bytes(int(rng.integers(1, 4096)))
    if op == 5:
        h, w = int(rng.integers(1, 600)), int(rng.integers(1, 800))
        modes = ["L", "RGBA", "P", "1", "LA", "I;16", "RGB", "48"]
        mode = str(rng.choice(modes))
        if mode == "48":
            return f"48-bit RGB PNG {w}x{h}", ".png", _png48(min(h, 64), min(w, 64))
        shape = {"RGBA": (h, w, 4), "LA": (h, w, 2), "RGB": (h, w, 3)}.get(mode, (h, w))
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        if mode == "I;16":
            arr = rng.integers(0, 65536, (h, w), dtype=np.uint16)
            return f"png16 {w}x{h}", ".png", _png_of(arr)
        if mode == "1":
            return f"1-bit PNG {w}x{h}", ".png", _png_of(arr > 127)
        if mode == "P":
            img = Image.fromarray(arr[..., 0] if arr.ndim == 3 else arr).convert("P")
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return f"palette PNG {w}x{h}", ".png", buf.getvalue()
        return f"{mode} PNG {w}x{h}", ".png", _png_of(arr)
    if op == 6:
        dtypes = ["float16", "float64", "int16", "uint16", "int64", "bool", "complex64", "U3",
                  "uint8", "int8", "float32"]  # fmt: skip
        dt = str(rng.choice(dtypes))
        shape = [(480, 640), (480, 640, 1), (480, 640, 3), (640,), (2, 480, 640), (0, 0), (1, 1),
                 (481, 640), ()][int(rng.integers(9))]  # fmt: skip
        arr = (rng.random(shape) * 2000).astype(dt) if dt != "U3" else np.full(shape, "abc")
        return f".npy {dt} {shape}", ".npy", _npy_of(arr)
    if op == 7:
        arr = np.rint(synthetic_frame(NYU)).astype(np.float32)
        what = str(rng.choice(["nan", "inf", "-inf", "negative", "huge", "all nan"]))
        n = int(rng.integers(1, 1000))
        idx = rng.integers(0, arr.size, n)
        flat = arr.reshape(-1)
        flat[idx] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -5.0,
                     "huge": 3e38, "all nan": np.nan}[what]  # fmt: skip
        if what == "all nan":
            arr[:] = np.nan
        return f".npy with {what}", ".npy", _npy_of(arr)
    if op == 8:
        vals = rng.integers(-(2**31), 2**31, 6, dtype=np.int64)
        keep = rng.random(6) < 0.5
        base = np.frombuffer(valid["bin"][:24], np.int32).astype(np.int64)
        head = np.where(keep, base, vals).astype(np.int32).tobytes()
        return "MSRA .bin header lies", ".bin", head + valid["bin"][24:]
    if op == 9:
        # .npy header claiming another shape or dtype than its data
        arr = np.zeros((480, 640), np.float32)
        head = _npy_of(arr)[:128].decode("latin1")
        fake = str(rng.choice(["(100000, 100000)", "(480, 641)", "(48, 64)", "(-1, 640)",
                               "(480, 640, 2)"]))  # fmt: skip
        dtype = str(rng.choice(["<f4", "<f8", "<i2", "|O"]))
        head = head.replace("(480, 640)", fake).replace("<f4", dtype)
        head = head[:127].ljust(127) + "\n"
        return f".npy header says {fake}", ".npy", head.encode("latin1") + arr.tobytes()
    if op == 10:
        return f"{kind} with bytes appended", suffix, data + rng.bytes(int(rng.integers(1, 64)))
    return f"special {int(rng.integers(3))}", suffix, None


def _write_case(path: Path, data: bytes | None, special: int) -> None:
    if data is not None:
        path.write_bytes(data)
    elif special == 0:
        os.mkfifo(path)
    elif special == 1:
        path.mkdir()
    else:
        path.symlink_to(path.with_name("nowhere"))


def _check_depth(path: Path, desc: str, original: np.ndarray | None, stats: Counter) -> None:
    try:
        depth = read_depth(path)
    except DataError as e:
        assert str(path) in str(e), (desc, str(e))
        stats["depth: clean error"] += 1
        return
    assert isinstance(depth, np.ndarray) and depth.ndim == 2 and depth.dtype == np.float32, desc
    assert np.isfinite(depth).all() and (depth >= 0).all(), desc
    if original is not None and "bits flipped" in desc and path.suffix == ".png":
        np.testing.assert_array_equal(depth, original, err_msg=desc)
    stats["depth: read"] += 1


# --- text mutations -----------------------------------------------------------------------------
BAD_TOKENS = ["1_000", "inf", "-inf", "nan", "NaN", "1e300", "-1e300", "١٢٣", "１２３", "abc", "",
              "0x10", "1e", "--5", "5..2", "∞"]  # fmt: skip


def text_case(rng: np.random.Generator, lines: list[str]) -> tuple[str, bytes, str]:
    """``(description, bytes, expectation)``: expectation ``"error"`` or ``"same"``."""
    out = list(lines)
    k = int(rng.integers(len(out)))
    op = int(rng.integers(11))
    if op == 0:
        del out[k]
        return f"line {k + 1} deleted", _join(out), "error"
    if op == 1:
        out.insert(k, out[k])
        return f"line {k + 1} duplicated", _join(out), "error"
    if op == 2:
        out[k] = ""
        return f"line {k + 1} blanked", _join(out), "error"
    if op == 3:
        # a copy or download that stopped: no line break after the cut
        last = out[-1]
        cut = int(rng.integers(1, len(last)))
        out[-1] = last[:cut]
        return f"last line cut at {cut}", _join(out)[:-1], "error"
    if op == 4:
        fields = out[k].split()
        i = int(rng.integers(len(fields)))
        fields[i] = str(rng.choice(BAD_TOKENS))
        out[k] = " ".join(fields)
        return f"line {k + 1} field {i + 1} -> {fields[i]!r}", _join(out), "error"
    if op == 5:
        data = bytearray(_join(out))
        pos = data.find(b"\n", int(rng.integers(len(data)))) - 1
        data.insert(max(0, pos), int(rng.choice([0x80, 0xFF, 0xC3, 0xFE])))
        return "a byte that is not UTF-8", bytes(data), "error"
    if op == 6:
        out[k] = out[k] + " 1.0" * int(rng.integers(1, 4))
        return f"line {k + 1} with columns more", _join(out), "error"
    if op == 7:
        out[k] = " ".join(out[k].split()[: -int(rng.integers(1, 4))])
        return f"line {k + 1} with columns fewer", _join(out), "error"
    if op == 8:
        extra = [out[int(i)] for i in rng.integers(0, len(out), int(rng.integers(1, 5)))]
        return "frames appended", _join(out + extra), "error"
    if op == 9:
        return "CRLF line ends", _join(out).replace(b"\n", b"\r\n"), "same"
    return "trailing blanks", b"\n".join(ln.encode() + b"  \t" for ln in out) + b"\n", "same"


def _join(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _check_text(path: Path, gt: Path, desc: str, expect: str, ref: float, stats: Counter) -> None:
    try:
        report = evaluate_files("nyu", path, gt=gt, partial=False)
    except (DataError, HandvoxError) as e:
        assert str(path.name) in str(e), (desc, str(e))
        assert expect == "error" or "line" in str(e), (desc, str(e))
        stats["text: clean error"] += 1
        return
    mean = report.metrics["methods"][0]["mean_error_mm"]
    assert np.isfinite(mean), (desc, mean)
    assert expect == "same", f"{desc}: scored {mean} where an error was due (silent wrong output)"
    assert mean == ref, (desc, mean, ref)
    stats["text: scored as the original"] += 1


JSON_MUTATIONS = ["drop", "type", "shape", "nan_text", "found_true_null", "not_json"]


def json_case(rng: np.random.Generator, doc: dict) -> tuple[str, bytes]:
    d = json.loads(json.dumps(doc))
    f = d["frames"][0]
    op = str(rng.choice(JSON_MUTATIONS))
    key = str(rng.choice(sorted(f)))
    if op == "drop":
        del f[key]
    elif op == "type":
        f[key] = ["x", 3, [], {}, True][int(rng.integers(5))]
    elif op == "shape":
        f["joints_xyz"] = [[1.0, 2.0]] * int(rng.integers(0, 30))
    elif op == "nan_text":
        return op, json.dumps(d).replace("[", '["NaN", ', 1).encode()
    elif op == "found_true_null":
        f["found"], f["joints_xyz"] = True, None
    else:
        return op, json.dumps(d).encode()[: int(rng.integers(1, 200))]
    return f"{op} {key}", json.dumps(d).encode()


# --- the suite ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_malformed_inputs_never_crash_hang_or_mislead(shared, tiny_model, tmp_path):
    rng = np.random.default_rng(20261206)
    valid = _valid_files(tmp_path)
    originals = {k: read_depth(tmp_path / f"v{'' if k != 'png16' else '16'}{SUFFIX[k]}")
                 for k in ("nyu", "png16")}  # fmt: skip
    gt_all = (shared / "data/nyu/nyu_test_groundtruth_label.txt").read_text().splitlines()
    pred_all = (shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt").read_text().splitlines()
    gt = tmp_path / "gt.txt"
    gt.write_text("\n".join(gt_all[:LABEL_LINES]) + "\n")
    pred_lines = pred_all[:LABEL_LINES]
    (tmp_path / "pred.txt").write_bytes(_join(pred_lines))
    ref = evaluate_files("nyu", tmp_path / "pred.txt", gt=gt).metrics["methods"][0]
    ref_mean = ref["mean_error_mm"]
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "v.npy"), "--camera", "nyu", "--model", str(tiny_model),
                 "--out", str(out), "--quiet", "--rotations", "none"]) in (0, 1)  # fmt: skip
    doc = json.loads((out / "predictions.json").read_text())

    stats: Counter = Counter()
    cases = tmp_path / "cases"
    cases.mkdir()
    for n in range(CASES):
        r = rng.random()
        desc = "?"
        try:
            with alarm(ALARM_S):
                if r < 0.55:
                    desc, suffix, data = depth_case(rng, valid)
                    path = cases / f"c{n}{suffix}"
                    _write_case(path, data, int(desc[-1]) if data is None else -1)
                    original = originals.get(desc.split()[0]) if "bits" in desc else None
                    _check_depth(path, desc, original, stats)
                    if n % 97 == 0:  # through the commands too
                        _through_commands(path, desc, tiny_model, tmp_path / f"out{n}", stats)
                elif r < 0.9:
                    desc, data, expect = text_case(rng, pred_lines)
                    path = cases / f"c{n}.txt"
                    path.write_bytes(data)
                    _check_text(path, gt, desc, expect, ref_mean, stats)
                    if n % 151 == 0:
                        code = main(["evaluate", "--dataset", "nyu", "--pred", str(path), "--gt",
                                     str(gt), "--out", str(tmp_path / f"ev{n}")])  # fmt: skip
                        assert code in (0, 2), desc
                        stats["evaluate command"] += 1
                else:
                    desc, data = json_case(rng, doc)
                    path = cases / f"c{n}.json"
                    path.write_bytes(data)
                    try:
                        preds = read_json(path)
                        for f in preds.frames:  # what reads is consistent
                            assert f.found == bool(np.isfinite(f.joints_xyz).all()), desc
                        stats["json: read"] += 1
                    except DataError as e:
                        assert str(path) in str(e), (desc, str(e))
                        stats["json: clean error"] += 1
        except Hang:
            pytest.fail(f"case {n} ({desc}) hung")
        except AssertionError:
            raise
        except Exception as e:  # a traceback a user would see
            raise AssertionError(f"case {n} ({desc}): {type(e).__name__}: {e}") from e
    assert sum(stats.values()) >= CASES, stats
    print(dict(stats))


def _through_commands(path: Path, desc: str, model: Path, out: Path, stats: Counter) -> None:
    import contextlib

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        argv = ["predict", str(path), "--camera", "nyu", "--model", str(model), "--out", str(out),
                "--quiet", "--rotations", "none", "--format", "json,txt"]  # fmt: skip
        code = main(argv)
    text = sink.getvalue()
    assert "Traceback" not in text, (desc, text)
    assert code in (0, 1, 2), (desc, code)
    if code == 2:
        assert path.name in text, (desc, text)
        stats["predict: clean error"] += 1
    else:
        frames = json.loads((out / "predictions.json").read_text())["frames"]
        txt = (out / "predictions.txt").read_text().splitlines()
        for f, line in zip(frames, txt, strict=True):
            zeros = all(float(v) == 0.0 for v in line.split())
            if f["found"]:
                assert f["joints_xyz"] is not None and not zeros, desc
                assert np.isfinite(np.asarray(f["joints_xyz"], float)).all(), desc
            else:
                assert f["joints_xyz"] is None and zeros, desc
        stats["predict: outputs consistent"] += 1
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = main(["show", str(path), "--camera", "nyu", "--out", str(out / "show.png")])
    assert code in (0, 2) and "Traceback" not in sink.getvalue(), desc
    stats["show"] += 1
