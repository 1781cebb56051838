"""docs/reproduce.md as written: its NYU and ICVL recipes (train -> predict -> evaluate --compare)
on tiny trees laid out as the datasets are distributed.

The commands are read from the doc's ```bash blocks marked ``<!-- recipe: nyu -->`` and
``<!-- recipe: icvl -->``. The test changes nothing in them but (1) the values of the doc's
variables ($NYU, $ICVL, $AHPE: here the tiny trees), (2) the tiny sizes of :data:`TINY`, appended
to each command (argparse lets a later flag win) and (3) the working directory, a temporary one.
So the doc and this test cannot drift apart: a broken recipe fails here.

The trees hold rendered hands (handvox's synthetic generator), so segmentation finds a hand as in
real frames; "published" results are the ground truth moved by known offsets, which the scorer
must report back exactly.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from handvox.camera import Camera, flip_y
from handvox.cli.main import build_parser, main
from handvox.estimator.locate import HAND_FINDERS
from handvox.estimator.weights import load_model
from handvox.io.depth import write_nyu_depth, write_png16
from handvox.io.labels import read_labels, write_labels
from handvox.joints import NYU14_FROM_NYU36, NYU36
from handvox.synth.frame import frame_rng
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HandSynthConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproduce.md"
# The only additions to the doc's commands: CPU-sized, a handful of steps.
TINY = {
    "train": ["--small", "--volume-size", "16", "--epochs", "1", "--batch-size", "4",
              "--workers", "0", "--device", "cpu", "--quiet"],
    "predict": ["--batch", "4", "--quiet"],
    "evaluate": [],
}  # fmt: skip
RENDERS = 4  # distinct hands; the frames of a tree cycle through them
NYU_TRAIN, NYU_TEST = 60, 5  # 60 frames: two blocks of 50, so the default split has a val block
ICVL_TRAIN = {"201403121135": 30, "201403121140": 30}
ICVL_TEST = {"test_seq_1": 3, "test_seq_2": 4}


pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow, pytest.mark.integration]


# --- the doc's recipes ----------------------------------------------------------------------------
def recipe(name: str) -> tuple[set[str], list[list[str]]]:
    """The variables a recipe block assigns, and its ``handvox`` commands (words after it)."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- recipe: {name} -->\s*```bash\n(.*?)```", text, re.S)
    assert m, f"{DOC} has no ```bash block after <!-- recipe: {name} -->"
    variables, commands = set(), []
    for line in m.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assign = re.fullmatch(r"([A-Z_]+)=\S+", words[0])
        if assign and len(words) == 1:
            variables.add(assign.group(1))
            continue
        # Anything else in a recipe block must be a handvox command, so all of it is tested.
        assert words[0] == "handvox", f"untested command in recipe {name}: {line}"
        commands.append(words[1:])
    return variables, commands


def expand(word: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: values[m.group(1)], word)


def prepared(name: str, values: dict[str, str]) -> list[list[str]]:
    """The recipe's commands with the test's variable values and tiny sizes."""
    variables, commands = recipe(name)
    assert variables == set(values), "the doc's variables changed: update the test's trees"
    out = [[expand(w, values) for w in words] + TINY[words[0]] for words in commands]
    assert [c[0] for c in out] == ["train", "predict", "evaluate"]
    return out


def run(commands: list[list[str]], capsys) -> dict[str, object]:
    """Run each command through the CLI; returns their parsed arguments by subcommand."""
    parser = build_parser()
    parsed = {}
    for args in commands:
        code = main(args)
        out = capsys.readouterr()
        assert code == 0, f"handvox {' '.join(args)}\n{out.err[-3000:]}"
        parsed[args[0]] = parser.parse_args(args)
    return parsed


# --- tiny trees -----------------------------------------------------------------------------------
def renders(camera: Camera, joint_set: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(raw depth, clean depth, joints xyz in ``joint_set``) of a few rendered hands."""
    # Hand and forearm only: the recipe is under test here, not segmentation in clutter.
    cfg = HandSynthConfig.for_camera(camera, body_prob=0.0, wall_prob=0.0, pose_block=1)
    gen, _ = make_generator("hand", camera, cfg)
    frames = [gen(i, frame_rng(5, i)) for i in range(RENDERS)]
    return [(f.raw, f.clean, f.joints_xyz[joint_set].astype(np.float64)) for f in frames]


def nyu_tree(root: Path) -> dict[str, np.ndarray]:
    """``root/{train,test}`` as in nyu_hand_dataset_v2: 3 kinects, depth / synthdepth / rgb PNGs
    and joint_data.mat (36 joints, xyz y-up). Returns each split's 14 joints of kinect 1 (uvd)."""
    cam = Camera.preset("nyu")
    hands = renders(cam, "nyu14")
    files = root / "_renders"
    files.mkdir(parents=True)
    for k, (raw, clean, _) in enumerate(hands):
        write_nyu_depth(files / f"depth{k}.png", raw)
        write_nyu_depth(files / f"synth{k}.png", clean)
    Image.new("RGB", (640, 480), (90, 70, 60)).save(files / "rgb.png")
    names = np.empty((1, 36), object)
    names[0, :] = list(NYU36.names)
    labels = {}
    for split, n in (("train", NYU_TRAIN), ("test", NYU_TEST)):
        folder = root / split
        folder.mkdir()
        xyz14 = np.stack([hands[i % RENDERS][2] for i in range(n)])  # (n, 14, 3), y down
        # The 22 joints outside the evaluation set are not read for nyu14: put the palm there.
        xyz36 = np.repeat(xyz14[:, 13:14], 36, axis=1)
        xyz36[:, list(NYU14_FROM_NYU36)] = xyz14
        xyz36 = np.repeat(xyz36[None], 3, axis=0)  # 3 kinects: the same views, for brevity
        uvd36 = cam.xyz_to_uvd(xyz36)
        scipy.io.savemat(
            folder / "joint_data.mat",
            {"joint_xyz": flip_y(xyz36), "joint_uvd": uvd36, "joint_names": names},
        )
        for kinect in (1, 2, 3):
            for i in range(n):
                stem = f"{kinect}_{i + 1:07d}.png"
                shutil.copyfile(files / f"depth{i % RENDERS}.png", folder / f"depth_{stem}")
                shutil.copyfile(files / f"synth{i % RENDERS}.png", folder / f"synthdepth_{stem}")
                shutil.copyfile(files / "rgb.png", folder / f"rgb_{stem}")
        labels[split] = uvd36[0][:, list(NYU14_FROM_NYU36)]
    shutil.rmtree(files)
    return labels


def _icvl_labels(path: Path, names: list[str], uvd: np.ndarray) -> None:
    # The distributed files' quirks: a trailing space and "\r\r\n" line ends.
    rows = (
        " ".join([n, *(f"{v:.4f}" for v in j.ravel())]) for n, j in zip(names, uvd, strict=True)
    )
    path.write_bytes("".join(f"{row} \r\r\n" for row in rows).encode())


def icvl_tree(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``root/Training`` and ``root/Testing`` as distributed. Returns uvd per label file."""
    cam = Camera.preset("icvl")
    hands = renders(cam, "icvl16")
    labels: dict[str, dict[str, np.ndarray]] = {}
    for folder, groups, label_of in (
        ("Training", ICVL_TRAIN, lambda seq: "labels.txt"),
        ("Testing", ICVL_TEST, lambda seq: f"{seq}.txt"),
    ):
        per_file: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        k = 0
        for seq, n in groups.items():
            names, uvd = per_file.setdefault(label_of(seq), ([], []))
            for i in range(n):
                raw, _, xyz = hands[k % RENDERS]
                k += 1
                names.append(f"{seq}/image_{i:04d}.png")
                uvd.append(cam.xyz_to_uvd(xyz))
                write_png16(root / folder / "Depth" / names[-1], raw)
        labels[folder] = {}
        for file, (names, uvd) in per_file.items():
            _icvl_labels(root / folder / file, names, np.stack(uvd))
            labels[folder][file] = np.stack(uvd)
    return labels


def community_files(
    evaluate_args: list[str], gt_uvd: np.ndarray, camera: Camera, partial: dict[str, int]
) -> dict[str, float]:
    """Write the --gt file and a "published" file for each --compare path the doc names: the
    ground truth moved by a known offset. Returns each file's expected mean error (mm)."""
    ns = build_parser().parse_args(evaluate_args)
    ns.gt.parent.mkdir(parents=True, exist_ok=True)
    write_labels(ns.gt, gt_uvd, kind="uvd")
    xyz = camera.uvd_to_xyz(gt_uvd)
    expected = {}
    for k, path in enumerate(ns.compare):
        offset = 3.0 + 2.0 * k  # mm, along x and z
        moved = xyz + np.array([offset * 0.6, 0.0, offset * 0.8])
        n = partial.get(path.name, len(moved))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_labels(path, camera.xyz_to_uvd(moved[:n]), kind="uvd")
        expected[path.name] = offset
    return expected


# --- checks ---------------------------------------------------------------------------------------
def check_train(ns, joint_set: str, data_spec: str, train_frames: int) -> None:
    out = Path(ns.out)
    assert (out / "log.csv").is_file() and (out / "split.json").is_file()
    model = load_model(out / "best")
    assert model.config.joint_set == joint_set and model.config.volume.size == 16
    meta = model.meta
    mode = ns.mode or "pose"
    assert meta["mode"] == mode and (model.refine_net is not None) == (mode != "pose")
    assert meta["data"] == [data_spec]
    # these runs find the hand by the depth rule, and the model says so
    assert model.config.segment.method == "depth"
    assert meta["input"]["com"] == f"{HAND_FINDERS['depth']} on the input depth"
    # Every training frame of the split is used, validated or skipped, and only those.
    assert meta["train_frames"] + meta["val_frames"] + sum(meta["skipped"].values()) == (
        train_frames
    )
    assert meta["val_frames"] > 0 and meta["train_frames"] > 0


def check_predict(ns, ids: list[str], joints: int) -> np.ndarray:
    """Returns the predicted joints, ``(N, J, 3)`` xyz mm."""
    out = Path(ns.out)
    frames = json.loads((out / "predictions.json").read_text())["frames"]
    assert [f["id"] for f in frames] == ids  # the test split, in the ground truth's order
    assert all(f["found"] for f in frames)  # rendered hands: segmentation finds each one
    pred = read_labels(out / "predictions.txt").joints
    assert pred.shape == (len(ids), joints, 3) and np.isfinite(pred).all()
    assert (pred[..., 2] > 100).all()  # real depths, not the zeros of a missed frame
    return np.array([f["joints_xyz"] for f in frames], np.float64)


def check_evaluate(
    ns, gt_xyz: np.ndarray, pred_xyz: np.ndarray, expected: dict[str, float], partial: dict
) -> None:
    frames = len(gt_xyz)
    metrics = json.loads((Path(ns.out) / "metrics.json").read_text())
    methods = metrics["methods"]
    assert [m["name"] for m in methods] == ns.name
    assert metrics["frames_in_labels"] == frames
    ours = methods[0]
    assert ours["frames_scored"] == frames and ours["coverage"] == "full"
    # The community file's uvd, converted back by the scorer, gives the error of the xyz that
    # predict computed.
    own = np.linalg.norm(pred_xyz - gt_xyz, axis=-1).mean()
    assert ours["mean_error_mm"] == pytest.approx(own, abs=0.01) and own > 0
    for m, path in zip(methods[1:], ns.compare, strict=True):
        assert m["mean_error_mm"] == pytest.approx(expected[path.name], abs=0.01)
        n = partial.get(path.name, frames)
        assert m["frames_scored"] == n and m["coverage"] == ("partial" if n < frames else "full")
    for name in ("report.md", "curve.png", "per_joint.png"):
        assert (Path(ns.out) / name).stat().st_size > 0


# --- the recipes ----------------------------------------------------------------------------------
def test_nyu_recipe(tmp_path, monkeypatch, capsys):
    labels = nyu_tree(tmp_path / "nyu")
    values = {"NYU": str(tmp_path / "nyu"), "AHPE": str(tmp_path / "ahpe")}
    commands = prepared("nyu", values)
    expected = community_files(commands[2], labels["test"], Camera.preset("nyu"), {})
    monkeypatch.chdir(tmp_path)

    ns = run(commands, capsys)

    check_train(ns["train"], "nyu14", f"nyu:{tmp_path / 'nyu'}?kinect=1", NYU_TRAIN)
    ids = [f"test/1/{i:07d}" for i in range(1, NYU_TEST + 1)]  # kinect 1, all test frames
    pred = check_predict(ns["predict"], ids, 14)
    gt_xyz = Camera.preset("nyu").uvd_to_xyz(labels["test"])
    check_evaluate(ns["evaluate"], gt_xyz, pred, expected, {})


def test_icvl_recipe(tmp_path, monkeypatch, capsys):
    labels = icvl_tree(tmp_path / "icvl")
    values = {"ICVL": str(tmp_path / "icvl"), "AHPE": str(tmp_path / "ahpe")}
    commands = prepared("icvl", values)
    test = labels["Testing"]
    gt = np.concatenate([test["test_seq_1.txt"], test["test_seq_2.txt"]])
    # As published, DeepPrior's ICVL file covers test_seq_1 only.
    partial = {"CVWW15_ICVL_Prior.txt": ICVL_TEST["test_seq_1"]}
    expected = community_files(commands[2], gt, Camera.preset("icvl"), partial)
    monkeypatch.chdir(tmp_path)

    ns = run(commands, capsys)

    check_train(ns["train"], "icvl16", f"icvl:{tmp_path / 'icvl'}", sum(ICVL_TRAIN.values()))
    ids = [f"{seq}/image_{i:04d}.png" for seq, n in ICVL_TEST.items() for i in range(n)]
    pred = check_predict(ns["predict"], ids, 16)
    check_evaluate(ns["evaluate"], Camera.preset("icvl").uvd_to_xyz(gt), pred, expected, partial)
