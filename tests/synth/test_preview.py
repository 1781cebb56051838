"""Contact sheets of synthetic data: a dataset's, as ``handvox synth --preview`` writes them, and
the skinned-hand sheet ``handvox demo`` shows."""

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.hand.poses import GESTURE_NAMES
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.preview import skinned_sheet
from handvox.synth.toy import TOY_VERSION

NYU = Camera.preset("nyu")


@pytest.mark.slow
@pytest.mark.integration
def test_cli_synth_with_preview(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--frames", "6", "--seed", "2", "--generator", "toy"]
    assert main(args + ["--chunk-size", "4", "--preview", "--quiet", "--shard", "1/1"]) == 0
    assert "wrote 6 frames in 2 chunks" in capsys.readouterr().out
    ds = SyntheticDataset(out, require_complete=True)
    assert (
        len(ds) == 6
        and ds.camera == NYU
        and ds.meta["generator"] == {"name": "toy", "version": TOY_VERSION}
    )
    sheet = np.asarray(Image.open(out / "preview.png"))
    assert sheet.shape == (512, 1024, 3)  # 4 tiles a row, 2 rows for 6 frames
    assert sheet[:256, :256].std() > 10 and not sheet[256:, 512:].any()  # tiles 7, 8 are empty
    assert main(args + ["--chunk-size", "4", "--quiet"]) == 0
    assert "0 frames in 0 chunks" in capsys.readouterr().out

    assert main(args + ["--shard", "3/2"]) == 2
    assert "shard 3/2" in capsys.readouterr().err


@pytest.mark.slow
def test_skinned_sheet_pairs_the_mesh_hand_with_the_capsule_hand():
    size = 96
    sheet = skinned_sheet(size_px=size)
    # 20 gestures, 4 a row, each a (mesh, capsules) pair of square panels with 4 px white gaps
    assert len(GESTURE_NAMES) == 20
    assert sheet.shape == (5 * (size + 4) + 4, 8 * (size + 4) + 4, 3) and sheet.dtype == np.uint8
    assert (sheet[:4] == 255).all() and (sheet[:, :4] == 255).all()
    step = size + 4
    tiles = [sheet[4 + r * step : 4 + r * step + size, 4 + c * step : 4 + c * step + size]
             for r in range(5) for c in range(8)]  # fmt: skip
    below_title = slice(size // 6, None)
    hand = [t[below_title].max(-1) > 30 for t in tiles]  # depth drawn grey, no depth black
    t16 = [t.astype(np.int16) for t in tiles]
    bones = [(t.max(-1) - t.min(-1) > 60)[below_title] for t in t16]  # the coloured skeleton

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / (a | b).sum())

    for g, name in enumerate(GESTURE_NAMES):
        mesh, caps = 2 * g, 2 * g + 1
        for k in (mesh, caps):
            assert 0.1 < hand[k].mean() < 0.6, (name, k)  # a hand, not an empty or full panel
            assert bones[k].mean() > 0.01, (name, k)  # its ground-truth joints drawn
        # the same pose, bones and crop: the hand in the same place, the skeleton the same...
        assert iou(hand[mesh], hand[caps]) > 0.6, name
        assert iou(bones[mesh], bones[caps]) > 0.9, name
        # ...but two surfaces: the mesh's outline is not the capsules'
        assert iou(hand[mesh], hand[caps]) < 0.95, name
        assert not np.array_equal(tiles[mesh], tiles[caps]), name
    # and the gestures differ from one another
    assert iou(hand[0], hand[2]) < 0.9  # open hand, fist
