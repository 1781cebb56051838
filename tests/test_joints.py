import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.io.labels import read_labels
from handvox.joints import (
    CANONICAL21,
    ICVL16,
    JOINT_SETS,
    MSRA21,
    NYU14,
    NYU14_FROM_NYU36,
    NYU36,
    convert_joints,
    get_joint_set,
    get_mapping,
)


def test_sizes_and_orders():
    assert [len(s) for s in (CANONICAL21, NYU36, NYU14, ICVL16, MSRA21)] == [21, 36, 14, 16, 21]
    assert CANONICAL21.names[:5] == ("wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip")
    assert CANONICAL21.names[5:9] == ("index_mcp", "index_pip", "index_dip", "index_tip")
    assert CANONICAL21.names[-1] == "little_tip"
    assert NYU36.names[0] == "F1_KNU3_A" and NYU36.names[24] == "TH_KNU3_A"
    assert NYU36.names[30:] == tuple(f"PALM_{i}" for i in range(1, 7))
    assert MSRA21.names[1] == "index_mcp" and MSRA21.names[17] == "thumb_mcp"
    assert ICVL16.names[:4] == ("palm", "thumb_root", "thumb_mid", "thumb_tip")


@pytest.mark.parametrize("name", sorted(JOINT_SETS))
def test_bones_form_a_tree_reaching_every_joint(name):
    js = JOINT_SETS[name]
    parents = {}
    for a, b in js.bones:
        assert b not in parents, f"{name}: joint {b} has two parents"
        parents[b] = a
    roots = set(range(len(js))) - set(parents)
    assert len(roots) == 1, f"{name}: roots {roots}"
    assert len(js.bone_colors()) == len(js.bones)


def test_nyu36_to_nyu14_selects_evaluation_joints():
    x = np.arange(36 * 3, dtype=np.float64).reshape(36, 3)
    y = convert_joints(x, NYU36, NYU14)
    np.testing.assert_array_equal(y, x[list(NYU14_FROM_NYU36)])
    assert get_mapping("nyu36", "nyu14").exact


def test_msra_canonical_round_trip_torch():
    x = torch.randn(2, 21, 3)
    y = convert_joints(convert_joints(x, "canonical21", "msra21"), "msra21", "canonical21")
    torch.testing.assert_close(y, x)
    # the thumb's anatomical CMC is MSRA's "thumb_mcp"
    m = convert_joints(x, CANONICAL21, MSRA21)
    cmc = x[:, CANONICAL21.index("thumb_cmc")]
    torch.testing.assert_close(m[:, MSRA21.index("thumb_mcp")], cmc)


def test_approximate_mappings_flagged_and_refusable():
    x = np.zeros((21, 3))
    assert convert_joints(x, "canonical21", "icvl16").shape == (16, 3)
    with pytest.raises(ValueError, match="approximate"):
        convert_joints(x, "canonical21", "nyu14", exact_only=True)
    with pytest.raises(ValueError, match="no mapping"):
        convert_joints(np.zeros((16, 3)), "icvl16", "nyu14")
    with pytest.raises(ValueError, match="expected 21"):
        convert_joints(np.zeros((14, 3)), "canonical21", "msra21")


def test_dataset_names_resolve():
    assert get_joint_set("nyu") is NYU14 and get_joint_set("ICVL") is ICVL16
    assert get_joint_set(MSRA21) is MSRA21
    with pytest.raises(ValueError, match="unknown joint set"):
        get_joint_set("mano")


def test_nyu14_bones_have_hand_lengths_on_real_labels(shared):
    uvd = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints
    xyz = Camera.preset("nyu").uvd_to_xyz(uvd)
    for a, b in NYU14.bones:
        length = np.median(np.linalg.norm(xyz[:, a] - xyz[:, b], axis=-1))
        # every drawn bone links neighbouring hand points, not points across the hand
        assert 10 < length < 110, (NYU14.names[a], NYU14.names[b], length)
