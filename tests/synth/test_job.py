"""The synthesis job: writing, reading back, sharding, worker processes, resumption, bad input;
and the storage format's codec as the job uses it."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.io.synthetic import SyntheticDataset
from handvox.synth import job as synth
from handvox.synth.frame import SynthFrame, frame_rng
from handvox.synth.job import parse_shard, shard_chunks, synthesize
from handvox.synth.toy import TOY_VERSION, toy_frame, toy_generator

NYU = Camera.preset("nyu")
# A small camera keeps the job tests cheap; the toy hand scales to any camera.
SMALL = Camera(150.0, 150.0, 80.0, 60.0, 160, 120)
TOY_INFO = {"name": "toy", "version": TOY_VERSION}


def _run(root, frames=26, seed=11, chunk_size=4, camera=SMALL, **kw):
    return synthesize(root, toy_generator(camera), camera, frames, seed, chunk_size=chunk_size,
                      generator_info=TOY_INFO, progress=False, **kw)  # fmt: skip


def _contents(root, **kw) -> dict:
    """Everything a dataset holds, decoded, as arrays (for equality checks)."""
    ds = SyntheticDataset(root, **kw)
    out = {
        "index": ds.frame_indices,
        "poses": ds.poses,
        "shapes": ds.shapes,
        "shape_ids": ds.shape_ids,
        "boxes": ds.boxes,
    }
    for name in ds.meta["joint_sets"]:
        out[name] = SyntheticDataset(root, joint_set=name, **kw).joints_xyz
    for key in ds.images:
        out[key] = np.stack([ds.image(i, key) for i in range(len(ds))])
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _mtimes(root: Path) -> dict:
    """Modification times of the complete chunks' folders and files."""
    paths = [p for c in (root / "chunks").glob("chunk_*") for p in [c, *c.iterdir()]]
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in paths}


# --- shards -------------------------------------------------------------------------------------
def test_shard_parsing():
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/2", "3/2", "1/0", "a/b", "2"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    assert shard_chunks(7, (2, 3)) == [1, 4] and shard_chunks(7, (1, 1)) == list(range(7))
    parts = [shard_chunks(10, (i, 4)) for i in range(1, 5)]
    assert sorted(sum(parts, [])) == list(range(10))


# --- write and read ----------------------------------------------------------------------------
def test_write_read_roundtrip(tmp_path):
    res = synthesize(tmp_path, toy_generator(NYU), NYU, 20, 3, chunk_size=8, progress=False)
    assert res.chunks_written == [0, 1, 2] and res.frames_written == 20
    ds = SyntheticDataset(tmp_path, require_complete=True)
    assert len(ds) == 20 and ds.camera == NYU and ds.missing_chunks == []
    assert ds.frame_ids[13] == "synth/000013"
    for i in (0, 13, 19):
        f = toy_frame(i, frame_rng(3, i), NYU)
        rec = ds[i]
        assert rec.depth.dtype == np.float32 and rec.depth.shape == (480, 640)
        # Stored: raw in whole mm, clean in 0.25 mm, both rounded to nearest.
        np.testing.assert_array_equal(rec.depth, np.rint(f.raw))
        np.testing.assert_array_equal(rec.clean_depth, np.rint(f.clean * 4) / 4)
        assert np.abs(rec.clean_depth - f.clean).max() <= 0.125
        np.testing.assert_array_equal(rec.joints_xyz, f.joints_xyz["canonical21"])
        np.testing.assert_allclose(rec.joints_uvd, NYU.xyz_to_uvd(rec.joints_xyz), rtol=1e-6)
        np.testing.assert_array_equal(ds.poses[i], f.pose)
        np.testing.assert_array_equal(ds.shapes[i], f.shape)
        assert ds.shape_ids[i] == f.shape_id
        np.testing.assert_array_equal(ds.frame_extras(i)["part"], f.extra["part"])
    assert ds[-1].frame_id == "synth/000019"
    with pytest.raises(IndexError):
        ds[20]
    # Marker sets as the generator stored them; exact mappings from canonical21 are derived.
    f = toy_frame(5, frame_rng(3, 5), NYU)
    nyu = SyntheticDataset(tmp_path, joint_set="nyu14", load_clean=False)[5]
    np.testing.assert_array_equal(nyu.joints_xyz, f.joints_xyz["nyu14"])
    assert nyu.joint_set.name == "nyu14" and nyu.clean_depth is None
    with pytest.raises(ValueError, match="nyu36"):
        SyntheticDataset(tmp_path, joint_set="nyu36")
    # The dataset survives pickling (DataLoader workers) after its memory maps were opened.
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[13].depth, ds[13].depth)


def test_format_1_folders_still_read(tmp_path, monkeypatch):
    _run(tmp_path / "v2", frames=8)
    meta = json.loads((tmp_path / "v2/meta.json").read_text())
    assert meta["format_version"] == 2 and meta["image_codec"]["filters"] == {"clean": "row_delta"}
    # Format 1 (no filters), as handvox wrote it before
    monkeypatch.setattr(synth, "IMAGE_FILTERS", {})
    monkeypatch.setattr(synth, "FORMAT_VERSION", 1)
    _run(tmp_path / "v1", frames=8)
    monkeypatch.undo()
    meta = json.loads((tmp_path / "v1/meta.json").read_text())
    assert meta["format_version"] == 1 and "filters" not in meta["image_codec"]
    _assert_same(_contents(tmp_path / "v1"), _contents(tmp_path / "v2"))
    # the stored clean crops differ: format 1's are not filtered
    c1, c2 = (np.load(tmp_path / v / "chunks/chunk_000000/clean.npy") for v in ("v1", "v2"))
    assert not np.array_equal(c1, c2)
    meta["format_version"] = 3
    (tmp_path / "v1/meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 3, this handvox reads 1, 2"):
        SyntheticDataset(tmp_path / "v1")


def test_shards_fill_one_folder_like_an_unsharded_run(tmp_path):
    _run(tmp_path / "whole")
    ref = _contents(tmp_path / "whole")
    split = tmp_path / "split"
    res = _run(split, shard=(1, 2))
    assert res.chunks_written == [0, 2, 4, 6]
    with pytest.raises(DataError, match="chunk_000001, chunk_000003, chunk_000005"):
        SyntheticDataset(split, require_complete=True)
    with pytest.warns(UserWarning, match="3 of 7 chunks missing"):
        half = SyntheticDataset(split)
    assert list(half.frame_indices) == [i for i in range(26) if (i // 4) % 2 == 0]
    np.testing.assert_array_equal(half.poses, ref["poses"][half.frame_indices])
    assert _run(split, shard=(2, 2)).chunks_written == [1, 3, 5]
    _assert_same(_contents(split, require_complete=True), ref)
    meta = (split / "meta.json").read_bytes()
    assert meta == (tmp_path / "whole" / "meta.json").read_bytes()
    assert json.loads(meta)["num_chunks"] == 7


@pytest.mark.slow
def test_worker_processes_write_the_same_frames(tmp_path):
    _run(tmp_path / "serial", frames=12)
    res = _run(tmp_path / "pool", frames=12, workers=2)
    assert sorted(res.chunks_written) == [0, 1, 2] and res.frames_written == 12
    _assert_same(_contents(tmp_path / "pool"), _contents(tmp_path / "serial"))


_KILLED_JOB = """
import sys, time
from handvox.camera import Camera
from handvox.synth.toy import TOY_VERSION, toy_frame
from handvox.synth.job import parse_shard, shard_chunks, synthesize

CAM = Camera(150.0, 150.0, 80.0, 60.0, 160, 120)

def slow(i, rng):
    time.sleep(0.04)  # leaves the test time to kill the job halfway
    return toy_frame(i, rng, CAM)

synthesize(sys.argv[1], slow, CAM, 40, 11, chunk_size=4,
           generator_info={"name": "toy", "version": TOY_VERSION}, progress=False)
"""


@pytest.mark.slow
def test_killed_job_resumes_without_redoing_chunks(tmp_path):
    root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_JOB), str(root)])
    chunks = root / "chunks"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if chunks.is_dir() and len(list(chunks.glob("chunk_*"))) >= 3:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    done = sorted(p.name for p in chunks.glob("chunk_*"))
    assert 3 <= len(done) < 10
    with pytest.raises(DataError, match="missing"):
        SyntheticDataset(root, require_complete=True)
    # A kill in the middle of writing a chunk leaves a partial folder like this one.
    stale = chunks / ".chunk_000009.4242-deadbeef.tmp"
    stale.mkdir(exist_ok=True)
    (stale / "raw.npy").write_bytes(b"\x93NUMPY truncated")
    before = _mtimes(root)

    res = _run(root, frames=40)
    assert [f"chunk_{c:06d}" for c in res.chunks_skipped] == done
    assert len(res.chunks_written) == 10 - len(done) and res.partials_removed >= 1
    assert not list(chunks.glob(".*.tmp"))
    after = _mtimes(root)
    assert len(before) == 6 * len(done)  # per chunk: folder, labels, raw, clean, part, sums
    assert {k: after[k] for k in before} == before
    _run(tmp_path / "whole", frames=40)
    _assert_same(_contents(root, require_complete=True), _contents(tmp_path / "whole"))
    assert (root / "meta.json").read_bytes() == (tmp_path / "whole/meta.json").read_bytes()
    assert _run(root, frames=40).chunks_written == []


# --- bad input ---------------------------------------------------------------------------------
def test_damaged_chunks_are_reported_and_rewritten(tmp_path):
    _run(tmp_path, frames=12)
    ref = _contents(tmp_path)
    blob = tmp_path / "chunks/chunk_000001/raw.npy"
    data = blob.read_bytes()
    blob.write_bytes(data[:-10])
    with pytest.raises(DataError, match="chunk_000001") as e:
        SyntheticDataset(tmp_path)
    assert "bytes" in str(e.value)
    # Same size, garbled payload: found when the frame is decoded.
    blob.write_bytes(data[:-40] + bytes(40))
    ds = SyntheticDataset(tmp_path)
    with pytest.raises(DataError, match="raw.npy"):
        for i in range(4, 8):
            ds[i]
    blob.write_bytes(data[:-10])
    assert _run(tmp_path, frames=12).chunks_written == [1]
    _assert_same(_contents(tmp_path), ref)


def test_damaged_content_is_found_named_and_rewritten_by_a_rerun(tmp_path):
    """One flipped bit anywhere in a chunk, sizes unchanged: the checksums find it (the issue's
    20/20 damaged chunks were kept as complete before them)."""
    _run(tmp_path, frames=12)
    ref = _contents(tmp_path)
    rng = np.random.default_rng(0)
    chunk = tmp_path / "chunks/chunk_000001"
    for name in ["raw.npy", "clean.npy", "labels.npz"]:
        f = chunk / name
        data = bytearray(f.read_bytes())
        data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        f.write_bytes(bytes(data))
        if name == "labels.npz":  # read when the folder is opened
            with pytest.raises(DataError, match=f"chunk_000001.*{name}"):
                SyntheticDataset(tmp_path)
        else:  # read when one of its frames is
            ds = SyntheticDataset(tmp_path)
            ds[0]
            with pytest.raises(DataError, match=f"chunk_000001.*{name}.*damaged"):
                ds[5]
        res = _run(tmp_path, frames=12)
        assert res.chunks_written == [1] and name in res.chunks_damaged[1], res.chunks_damaged
        _assert_same(_contents(tmp_path), ref)
    # Labels that are no zip at all (BadZipFile before): a clean error naming the file.
    (chunk / "labels.npz").write_bytes(b"PK\x03\x04 not a zip")
    (chunk / "SHA256SUMS").unlink()  # as a chunk of a handvox older than checksums
    with pytest.raises(DataError, match="chunk_000001.*BadZipFile"):
        SyntheticDataset(tmp_path)
    assert _run(tmp_path, frames=12).chunks_written == [1]


def test_two_writers_of_one_shard_are_refused_and_stale_temporaries_swept(tmp_path):
    from handvox.atomic import temp_path, writer_lock

    _run(tmp_path, frames=8)
    with writer_lock(tmp_path, "synth-shard-1-of-1", "x"):  # as a second process would hold it
        # flock is per open file: a second open in this process conflicts like another process
        with pytest.raises(HandvoxError, match="another process .* is writing"):
            _run(tmp_path, frames=8)
    _run(tmp_path, frames=8, shard=(1, 2))  # another shard: its own lock
    # A killed writer's temporary (a dead pid) goes; a live one's stays.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = temp_path(tmp_path / "meta.json")
    stale = stale.with_name(stale.name.replace(f".{os.getpid()}@", f".{dead}@"))
    stale.write_text("half")
    live = temp_path(tmp_path / "meta.json")  # this process's: alive
    live.write_text("being written")
    _run(tmp_path, frames=8)
    assert not stale.exists() and live.exists()


def test_bad_frames_and_folders(tmp_path):
    def nan_at_3(i, rng):
        f = toy_frame(i, rng, SMALL)
        if i == 3:
            f.raw[60, 80] = np.nan
        return f

    with pytest.raises(ValueError, match="frame 3: raw depth holds NaN"):
        synthesize(tmp_path / "a", nan_at_3, SMALL, 8, 0, progress=False)

    def wrong_camera(i, rng):
        return toy_frame(i, rng, NYU)

    with pytest.raises(ValueError, match="frame 0: raw is"):
        synthesize(tmp_path / "b", wrong_camera, SMALL, 8, 0, progress=False)

    def fewer_sets(i, rng):
        f = toy_frame(i, rng, SMALL)
        if i > 0:
            del f.joints_xyz["nyu14"]
        return f

    with pytest.raises(ValueError, match="frame 1: joint sets"):
        synthesize(tmp_path / "c", fewer_sets, SMALL, 8, 0, progress=False)

    def no_canonical(i, rng):
        f = toy_frame(i, rng, SMALL)
        return SynthFrame(f.raw, f.clean, {"nyu14": f.joints_xyz["nyu14"]}, f.pose, f.shape)

    with pytest.raises(ValueError, match="canonical21"):
        synthesize(tmp_path / "d", no_canonical, SMALL, 8, 0, progress=False)

    _run(tmp_path / "e", frames=8)
    with pytest.raises(DataError, match="another dataset.*seed"):
        _run(tmp_path / "e", frames=8, seed=12)
    with pytest.raises(DataError, match="meta.json: no such file"):
        SyntheticDataset(tmp_path / "nothing")
    (tmp_path / "f").mkdir()
    (tmp_path / "f/meta.json").write_text("{ not json")
    with pytest.raises(DataError, match="corrupt JSON"):
        SyntheticDataset(tmp_path / "f")
    with pytest.raises(ValueError, match="seed"):
        _run(tmp_path / "g", seed=-1)
