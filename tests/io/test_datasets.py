import pickle

import numpy as np
import pytest
import scipy.io
from torch.utils.data import DataLoader

from handvox.camera import Camera, flip_y
from handvox.errors import DataError
from handvox.io.datasets import DatasetSpec, open_dataset
from handvox.io.depth import read_depth, write_msra_bin, write_nyu_depth, write_png16
from handvox.io.frames import collate_records
from handvox.io.icvl import ICVLDataset
from handvox.io.labels import read_labels, write_labels
from handvox.io.msra import MSRADataset
from handvox.io.nyu import NYUDataset
from handvox.io.record import HandRecord
from handvox.joints import CANONICAL21, ICVL16, MSRA21, NYU14, NYU14_FROM_NYU36, NYU36

NYU_CAM = Camera.preset("nyu")


def _draw_joints(camera: Camera, uvd: np.ndarray, background: float = 0.0) -> np.ndarray:
    """A depth image with a 5x5 patch at each joint's pixel, 10 mm in front of the joint."""
    depth = np.full((camera.height, camera.width), background, np.float32)
    for u, v, d in uvd:
        r, c = int(round(v)), int(round(u))
        depth[r - 2 : r + 3, c - 2 : c + 3] = round(d - 10)
    return depth


# --- community label files (io/labels.py) ------------------------------------------------------
def test_icvl_label_files(shared):
    seq1 = read_labels(shared / "data/icvl/test_seq_1.txt", num_joints=16)
    seq2 = read_labels(shared / "data/icvl/test_seq_2.txt", num_joints=16)
    assert seq1.joints.shape == (702, 16, 3) and seq2.joints.shape == (894, 16, 3)
    assert seq1.names[0] == "test_seq_1/image_0000.png"
    assert seq2.names[-1] == "test_seq_2/image_0893.png"
    plain = read_labels(shared / "data/icvl/icvl_test_groundtruth_label.txt", num_joints=16)
    assert plain.names is None
    np.testing.assert_allclose(np.concatenate([seq1.joints, seq2.joints]), plain.joints, atol=1e-3)


def test_nyu_label_file(shared):
    labels = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt", num_joints=14)
    assert labels.joints.shape == (8252, 14, 3) and labels.kind is None and labels.names is None


def test_written_labels_read_back(tmp_path):
    rng = np.random.default_rng(1)
    joints = rng.uniform(-100, 800, (5, 21, 3))
    names = [f"frame_{i}" for i in range(5)]
    write_labels(tmp_path / "p.txt", joints, kind="xyz", names=names, joint_set="canonical21")
    back = read_labels(tmp_path / "p.txt", num_joints=21)
    assert back.kind == "xyz" and back.names == names
    np.testing.assert_allclose(back.joints, joints, atol=5e-4)


@pytest.mark.parametrize(
    "second_line, words",
    [
        ("1 2 x 4 5 6", "not a number"),
        ("1 2 3 4 5", "not a multiple of 3"),
        ("1 2 3 4 5 nan", "not a number"),
        ("1 2 3 4 5 inf", "not a number"),
        ("1 2 3 4 5 1_000", "not a number"),  # float() takes these; no label file holds them
        ("1 2 3 4 5 \u0661\u0662", "not a number"),  # Arabic-Indic digits
        ("1 2 3 4 5 \uff11\uff12", "not a number"),  # full-width digits
        ("1 2 3 4 5 1e300", "beyond 1e\\+06"),  # finite, but scores would overflow to inf
        ("1 2 3", "1 joints, but earlier lines have 2"),
    ],
)
def test_corrupt_label_line(tmp_path, second_line, words):
    path = tmp_path / "bad_labels.txt"
    path.write_text(f"1 2 3 4 5 6\n# a comment\n{second_line}\n")
    with pytest.raises(DataError, match=f"bad_labels.txt: line 3: .*{words}"):
        read_labels(path)


def test_a_blank_line_between_frames_is_a_lost_frame_not_skipped(tmp_path):
    # One blank line in V2V-PoseNet's NYU file moved its score from 8.419 to 10.160 mm when it
    # was skipped: every later frame met the label before its own.
    path = tmp_path / "p.txt"
    path.write_text("1 2 3 4 5 6\n\n7 8 9 10 11 12\n")
    path.write_text("1 2 3 4 5 6\n7 8 9 10 11 12\n\n7 8 9 10 11 12\n")
    with pytest.raises(DataError, match="p.txt: line 4: 1 blank line.*others have 0"):
        read_labels(path)
    path.write_text("\n# header\n\n1 2 3 4 5 6\n7 8 9 10 11 12\n\n\n")  # before / after: fine
    assert read_labels(path).joints.shape == (2, 2, 3)
    path.write_text("1 2 3 4 5 6\n\n7 8 9 10 11 12\n\n1 2 3 4 5 6\n")  # every frame apart: fine
    assert read_labels(path).joints.shape == (3, 2, 3)


# --- the real NYU frame and its label ----------------------------------------------------------
def test_real_nyu_labels_lie_on_the_hand(shared):
    depth = read_depth(shared / "data/nyu/depth_1_0000001.png")
    uvd = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints[0]
    observed = depth[np.rint(uvd[:, 1]).astype(int), np.rint(uvd[:, 0]).astype(int)]
    assert (observed < 2001).all()  # every joint lands on a hand pixel, not background
    behind = uvd[:, 2] - observed  # labels sit inside the finger, behind its surface
    # The bounds were [2.6, 33]; the real minimum (ring tip) is 2.589 mm.
    assert behind.min() == pytest.approx(2.589, abs=1e-3)
    assert behind.max() == pytest.approx(32.841, abs=1e-3)
    assert ((behind >= 2.5) & (behind <= 33)).all()


# --- NYU ---------------------------------------------------------------------------------------
def _nyu_tree(root, n_kinects=2, n_frames=2):
    """A tiny NYU ``test/`` folder; returns the y-up xyz written to joint_data.mat."""
    rng = np.random.default_rng(2)
    xyz_up = np.stack(
        [
            rng.uniform(-80, 80, (n_kinects, n_frames, 36)),
            rng.uniform(-80, 80, (n_kinects, n_frames, 36)),
            rng.uniform(600, 900, (n_kinects, n_frames, 36)),
        ],
        axis=-1,
    )
    # The dataset's uvd is image coordinates (v down) of its y-up xyz.
    uvd = NYU_CAM.xyz_to_uvd(flip_y(xyz_up))
    names = np.empty((1, 36), object)
    names[0, :] = list(NYU36.names)
    folder = root / "test"
    folder.mkdir(parents=True)
    scipy.io.savemat(
        folder / "joint_data.mat", {"joint_xyz": xyz_up, "joint_uvd": uvd, "joint_names": names}
    )
    for k in range(n_kinects):
        for i in range(n_frames):
            write_nyu_depth(
                folder / f"depth_{k + 1}_{i + 1:07d}.png", _draw_joints(NYU_CAM, uvd[k, i], 2001)
            )
            write_nyu_depth(
                folder / f"synthdepth_{k + 1}_{i + 1:07d}.png", _draw_joints(NYU_CAM, uvd[k, i])
            )
    return xyz_up, uvd


def test_nyu_records(tmp_path):
    xyz_up, uvd = _nyu_tree(tmp_path)
    ds = NYUDataset(tmp_path, split="test", kinect=2, load_clean=True)
    assert len(ds) == 2 and ds.frame_ids == ["test/2/0000001", "test/2/0000002"]
    rec = ds[1]
    assert isinstance(rec, HandRecord) and rec.frame_id == "test/2/0000002"
    assert rec.joint_set is NYU14 and rec.camera == NYU_CAM
    assert rec.depth.dtype == np.float32 and rec.depth.shape == (480, 640)
    assert rec.joints_xyz.dtype == np.float32 and rec.joints_xyz.shape == (14, 3)
    sel = list(NYU14_FROM_NYU36)
    # y flipped from the file's y-up to y-down, the 14 evaluation joints selected
    np.testing.assert_allclose(rec.joints_xyz[:, 1], -xyz_up[1, 1, sel, 1], rtol=1e-6)
    np.testing.assert_allclose(rec.joints_xyz[:, [0, 2]], xyz_up[1, 1][sel][:, [0, 2]], rtol=1e-6)
    np.testing.assert_allclose(rec.joints_uvd, uvd[1, 1, sel], rtol=1e-6)
    np.testing.assert_allclose(NYU_CAM.xyz_to_uvd(rec.joints_xyz), rec.joints_uvd, atol=1e-3)
    # the joints land on the patches drawn in the raw and the clean image
    r, c = np.rint(rec.joints_uvd[:, 1]).astype(int), np.rint(rec.joints_uvd[:, 0]).astype(int)
    assert (rec.depth[r, c] < 2001).all() and (rec.clean_depth[r, c] > 0).all()
    assert (rec.depth == 2001).mean() > 0.9 and (rec.clean_depth == 0).mean() > 0.9
    assert NYUDataset(tmp_path, kinect=1)[0].clean_depth is None


def test_nyu36_and_bad_arguments(tmp_path):
    xyz_up, _ = _nyu_tree(tmp_path)
    rec = NYUDataset(tmp_path, joint_set="nyu36")[0]
    assert rec.joint_set is NYU36 and rec.joints_xyz.shape == (36, 3)
    np.testing.assert_allclose(rec.joints_xyz, flip_y(xyz_up[0, 0]), rtol=1e-6)
    with pytest.raises(ValueError, match="joint_set"):
        NYUDataset(tmp_path, joint_set="icvl16")
    with pytest.raises(ValueError, match="split"):
        NYUDataset(tmp_path, split="val")
    with pytest.raises(DataError, match="kinect 3"):
        NYUDataset(tmp_path, kinect=3)
    with pytest.raises(DataError, match="train/joint_data.mat: no such file"):
        NYUDataset(tmp_path, split="train")


def test_nyu_index_bounds(tmp_path):
    _nyu_tree(tmp_path)
    ds = NYUDataset(tmp_path)
    assert ds[-1].frame_id == "test/1/0000002"
    for bad in (2, -3):
        with pytest.raises(IndexError, match="out of range for 2 frames"):
            ds[bad]


def test_nyu_is_lazy_and_names_bad_images(tmp_path):
    _nyu_tree(tmp_path)
    for png in (tmp_path / "test").glob("*.png"):
        png.unlink()
    ds = NYUDataset(tmp_path)  # labels only: no error yet
    with pytest.raises(DataError, match="depth_1_0000001.png: no such file"):
        ds[0]
    (tmp_path / "test/depth_1_0000002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError, match="depth_1_0000002.png: unreadable or corrupt"):
        ds[1]
    write_nyu_depth(tmp_path / "test/depth_1_0000001.png", np.zeros((240, 320)))
    with pytest.raises(
        DataError, match="depth_1_0000001.png: depth is 320x240 but the camera is 640x480"
    ):
        ds[0]


def test_nyu_bad_label_files(tmp_path):
    _nyu_tree(tmp_path)
    mat = tmp_path / "test/joint_data.mat"
    data = mat.read_bytes()
    mat.write_bytes(data[:1000])
    with pytest.raises(DataError, match="joint_data.mat: unreadable or corrupt MATLAB"):
        NYUDataset(tmp_path)
    # A v7.3 file is HDF5 behind a MATLAB header (version 0x0200 at byte 124).
    mat.write_bytes(b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM" + b"\0" * 512)
    with pytest.raises(DataError, match="joint_data.mat: MATLAB v7.3.*h5py"):
        NYUDataset(tmp_path)
    scipy.io.savemat(mat, {"joint_xyz": np.zeros((1, 2, 14, 3)), "joint_uvd": np.zeros((1, 2))})
    with pytest.raises(DataError, match="joint_data.mat: joint_xyz must be"):
        NYUDataset(tmp_path)
    scipy.io.savemat(mat, {"joint_xyz": np.zeros((1, 2, 36, 3))})
    with pytest.raises(DataError, match="joint_data.mat: no variable 'joint_uvd'"):
        NYUDataset(tmp_path)
    labels = np.zeros((1, 2, 36, 3))
    scipy.io.savemat(mat, {"joint_xyz": labels, "joint_uvd": labels + np.nan})
    with pytest.raises(DataError, match="joint_data.mat: joint labels hold NaN"):
        NYUDataset(tmp_path)


# --- ICVL --------------------------------------------------------------------------------------
ICVL_CAM = Camera.preset("icvl")


def _icvl_test_tree(shared, root):
    (root / "Testing").mkdir(parents=True)
    for name in ("test_seq_1.txt", "test_seq_2.txt"):
        (root / "Testing" / name).symlink_to(shared / "data/icvl" / name)


def test_icvl_real_test_labels(shared, tmp_path):
    _icvl_test_tree(shared, tmp_path)
    ds = ICVLDataset(tmp_path, split="test")  # no image exists yet: construction reads labels only
    assert len(ds) == 702 + 894 == 1596
    assert ds.frame_ids[0] == "test_seq_1/image_0000.png"
    assert ds.frame_ids[702] == "test_seq_2/image_0000.png"
    truth = read_labels(shared / "data/icvl/icvl_test_groundtruth_label.txt").joints
    for i in (0, 702):
        write_png16(tmp_path / "Testing/Depth" / ds.frame_ids[i], _draw_joints(ICVL_CAM, truth[i]))
        rec = ds[i]
        assert rec.frame_id == ds.frame_ids[i] and rec.joint_set is ICVL16
        assert rec.camera == ICVL_CAM and rec.depth.shape == (240, 320)
        np.testing.assert_allclose(rec.joints_uvd, truth[i], atol=1e-3)
        np.testing.assert_allclose(ICVL_CAM.uvd_to_xyz(truth[i]), rec.joints_xyz, rtol=1e-5)
        r, c = np.rint(truth[i][:, 1]).astype(int), np.rint(truth[i][:, 0]).astype(int)
        np.testing.assert_array_equal(rec.depth[r, c], np.round(truth[i][:, 2] - 10))
    with pytest.raises(DataError, match="test_seq_1/image_0001.png: no such file"):
        ds[1]


def test_icvl_train_labels(tmp_path):
    rng = np.random.default_rng(3)
    uvd = rng.uniform([100, 80, 250], [200, 160, 400], (3, 16, 3))
    names = ["201403121135/image_0000.png", "201403121135/image_0001.png", "2014/image_0000.png"]
    lines = [
        n + " " + " ".join(f"{v:.3f}" for v in j.ravel()) + " "
        for n, j in zip(names, uvd, strict=True)
    ]
    (tmp_path / "Training").mkdir()
    (tmp_path / "Training/labels.txt").write_bytes(("\r\r\n\r\r\n".join(lines) + "\r\r\n").encode())
    write_png16(tmp_path / "Training/Depth" / names[1], _draw_joints(ICVL_CAM, uvd[1]))
    ds = ICVLDataset(tmp_path, split="train")
    assert ds.frame_ids == names
    np.testing.assert_allclose(ds[1].joints_uvd, uvd[1], atol=1e-3)
    with pytest.raises(DataError, match="Testing/test_seq_1.txt: no such file"):
        ICVLDataset(tmp_path, split="test")


# --- MSRA --------------------------------------------------------------------------------------
MSRA_CAM = Camera.preset("msra")


def _msra_joints(seed: int) -> np.ndarray:
    """Plausible (21, 3) xyz mm in handvox's frame: in front of the camera, within the image."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(-60, 60, 21), rng.uniform(-60, 60, 21), rng.uniform(300, 400, 21)], axis=-1
    )


def _write_msra_gesture(folder, joints_xyz: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    lines = [str(len(joints_xyz))]
    for i, xyz in enumerate(joints_xyz):
        # The file's convention: y up and z negated.
        stored = xyz * np.array([1.0, -1.0, -1.0])
        lines.append(" ".join(f"{v:.4f}" for v in stored.ravel()) + " ")
        write_msra_bin(
            folder / f"{i:06d}_depth.bin", _draw_joints(MSRA_CAM, MSRA_CAM.xyz_to_uvd(xyz))
        )
    (folder / "joint.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def msra_root(tmp_path):
    truth = {
        "P0/1": [_msra_joints(0), _msra_joints(1)],
        "P0/TIP": [_msra_joints(2)],
        "P3/1": [_msra_joints(3)],
    }
    for sub, frames in truth.items():
        _write_msra_gesture(tmp_path / sub, frames)
    return tmp_path, truth


def test_msra_records(msra_root):
    root, truth = msra_root
    ds = MSRADataset(root)
    assert ds.frame_ids == ["P0/1/000000", "P0/1/000001", "P0/TIP/000000", "P3/1/000000"]
    rec = ds[1]
    assert rec.joint_set is MSRA21 and rec.camera == MSRA_CAM and rec.depth.shape == (240, 320)
    np.testing.assert_allclose(rec.joints_xyz, truth["P0/1"][1], atol=1e-4)
    assert (rec.joints_xyz[:, 2] > 0).all()
    # projecting the joints lands on the pixels drawn for them
    r, c = np.rint(rec.joints_uvd[:, 1]).astype(int), np.rint(rec.joints_uvd[:, 0]).astype(int)
    np.testing.assert_array_equal(rec.depth[r, c], np.round(rec.joints_uvd[:, 2] - 10))
    assert (rec.depth > 0).mean() < 0.1


def test_msra_selection_and_joint_set(msra_root):
    root, truth = msra_root
    ds = MSRADataset(root, subjects=[3, "P0"], gestures=["1"], joint_set="canonical21")
    assert ds.frame_ids == ["P3/1/000000", "P0/1/000000", "P0/1/000001"]
    rec = ds[0]
    assert rec.joint_set is CANONICAL21
    thumb_cmc, msra_thumb_mcp = CANONICAL21.index("thumb_cmc"), MSRA21.index("thumb_mcp")
    np.testing.assert_allclose(
        rec.joints_xyz[thumb_cmc], truth["P3/1"][0][msra_thumb_mcp], atol=1e-4
    )
    with pytest.raises(DataError, match="P5: no such subject folder"):
        MSRADataset(root, subjects=[5])
    with pytest.raises(DataError, match="TIP/joint.txt: no such file"):
        MSRADataset(root, subjects=[3], gestures=["TIP"])


def test_msra_is_lazy(msra_root):
    root, _ = msra_root
    (root / "P0/TIP/000000_depth.bin").unlink()
    ds = MSRADataset(root)
    with pytest.raises(DataError, match="P0/TIP/000000_depth.bin: no such file"):
        ds[2]


@pytest.mark.parametrize(
    "text, words",
    [
        ("2\n" + "1 " * 63 + "\n", "line 1 says 2 frames, the file has 1"),
        ("1\n" + "1 " * 62 + "\n", "line 2: 62 numbers"),
        ("1\n" + "1 " * 62 + "x\n", "line 2: not a number"),
        ("one\n", "line 1 must hold the number of frames"),
        ("1\n" + "1 " * 62 + "nan\n", "NaN"),
    ],
)
def test_msra_bad_joint_file(tmp_path, text, words):
    (tmp_path / "P0/1").mkdir(parents=True)
    (tmp_path / "P0/1/joint.txt").write_text(text)
    with pytest.raises(DataError, match=f"joint.txt: {words}"):
        MSRADataset(tmp_path)


# --- DataLoader, pickling, factory -------------------------------------------------------------
def test_dataloader_and_pickle(tmp_path, msra_root):
    _nyu_tree(tmp_path / "nyu")
    root, _ = msra_root
    for ds, sizes in ((NYUDataset(tmp_path / "nyu"), [2]), (MSRADataset(root), [3, 1])):
        batches = list(DataLoader(ds, batch_size=3, collate_fn=collate_records, num_workers=0))
        records = [r for b in batches for r in b]
        assert [len(b) for b in batches] == sizes and isinstance(records[0], HandRecord)
        assert [r.frame_id for r in records] == ds.frame_ids
        single = [r.frame_id for r in DataLoader(ds, batch_size=None)]
        assert single == ds.frame_ids
        copy = pickle.loads(pickle.dumps(ds))
        np.testing.assert_array_equal(copy[0].depth, ds[0].depth)


def test_open_dataset(tmp_path, msra_root):
    _nyu_tree(tmp_path / "nyu")
    assert isinstance(open_dataset("NYU", tmp_path / "nyu", joint_set="nyu36"), NYUDataset)
    assert isinstance(open_dataset("msra", msra_root[0], subjects=[0]), MSRADataset)
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("hands17", tmp_path)


def test_dataset_specs_take_reader_options():
    s = DatasetSpec.parse("nyu:/d/nyu?kinect=2&split=train")
    assert (s.kind, s.root, s.reader_options()) == (
        "nyu",
        "/d/nyu",
        {"kinect": 2, "split": "train"},
    )
    assert DatasetSpec.parse("msra:/m?subjects=P0,P1").reader_options() == {
        "subjects": ["P0", "P1"]
    }
    assert DatasetSpec.parse("icvl:/i").reader_options() == {}
    s = DatasetSpec.parse("nyu:/data/nyu?kinect=2@0.5")
    assert (s.weight, DatasetSpec.parse(s.spec)) == (0.5, s)
    assert DatasetSpec.parse("synthetic:/a@b/c").root == "/a@b/c"
    for bad in ("nyu:/d?camera=2", "nyu", "icvl:/i?split", "hands17:/h", "/just/a/path"):
        with pytest.raises(ValueError):
            DatasetSpec.parse(bad)
    with pytest.raises(ValueError, match="kinect=two"):
        DatasetSpec.parse("nyu:/d?kinect=two").reader_options()
