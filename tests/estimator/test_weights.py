import dataclasses
import json

import pytest
import torch

from handvox.errors import DataError
from handvox.estimator.networks import PoseNetConfig
from handvox.estimator.volume import VolumeConfig
from handvox.estimator.weights import (
    EstimatorConfig,
    build_networks,
    load_model,
    read_config,
    save_model,
)
from tests.tiny import tiny_config


@pytest.mark.parametrize("refine", [False, True])
def test_round_trip_same_outputs(tmp_path, refine):
    cfg = tiny_config(refine=refine)
    pose, ref = build_networks(cfg)
    save_model(tmp_path, cfg, pose, ref, meta={"command": "test"})
    est = load_model(tmp_path)
    assert est.config == cfg and est.meta == {"command": "test"}
    x = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    pose.eval()
    torch.testing.assert_close(est.pose_net(x), pose(x))
    if refine:
        ref.eval()
        torch.testing.assert_close(est.refine_net(x), ref(x))
    assert not list(tmp_path.glob(".*tmp*"))


def test_config_is_plain_json_with_inf(tmp_path):
    cfg = tiny_config()
    save_model(tmp_path, cfg, *build_networks(cfg))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["estimator"]["volume"]["max_depth_mm"] == "inf"
    assert read_config(tmp_path)[0].volume.max_depth_mm == float("inf")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="config.json"):
        load_model(tmp_path)
    cfg = tiny_config()
    save_model(tmp_path, cfg, *build_networks(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="model.safetensors"):
        load_model(tmp_path)
    other = tiny_config(refine=True)
    save_model(tmp_path, cfg, *build_networks(cfg))
    # weights of a pose-only model under a config that expects refinement too
    (tmp_path / "config.json").write_text(
        (tmp_path / "config.json").read_text().replace('"refine": null', json.dumps(
            {"refine": other.to_dict()["refine"]})[1:-1])
    )  # fmt: skip
    with pytest.raises(DataError, match="do not match"):
        load_model(tmp_path)


def test_mismatched_sizes_rejected():
    with pytest.raises(ValueError, match="volume size"):
        EstimatorConfig(volume=VolumeConfig(size=32), pose=PoseNetConfig(input_size=60))


def test_joint_spread_needs_the_dense_head_and_one_positive_number_a_joint():
    from handvox.estimator.presets import dense_estimator

    dense = dense_estimator()
    ok = EstimatorConfig.from_dict({**dense.to_dict(), "joint_spread_mm": [40.0] * 21})
    assert ok.joint_spread_mm == (40.0,) * 21
    with pytest.raises(ValueError, match="21 positive numbers"):
        dataclasses.replace(dense, joint_spread_mm=(40.0,) * 20)
    with pytest.raises(ValueError, match="21 positive numbers"):
        dataclasses.replace(dense, joint_spread_mm=(40.0,) * 20 + (0.0,))
    with pytest.raises(ValueError, match="dense head"):
        tiny_config(joint_spread_mm=(40.0,) * 14)


def test_average_models_is_the_mean_of_the_weights(tmp_path):
    import dataclasses

    from handvox.cli.main import main
    from handvox.errors import HandvoxError
    from handvox.estimator.weights import average_models

    cfg = tiny_config(refine=True)
    cfg = dataclasses.replace(cfg, pose=dataclasses.replace(cfg.pose, batch_norm=True))
    nets = []
    for i in range(3):
        torch.manual_seed(i)
        pose, ref = build_networks(cfg)
        pose.train()(torch.rand(4, 1, 16, 16, 16))  # moves the batch-norm statistics apart
        save_model(tmp_path / f"m{i}", cfg, pose, ref, meta={"step": 10 * i})
        nets.append((pose, ref))
    assert main(["average", *(str(tmp_path / f"m{i}") for i in range(3)),
                 "--out", str(tmp_path / "avg")]) == 0  # fmt: skip
    avg = load_model(tmp_path / "avg")
    for name, net in (("pose", avg.pose_net), ("refine", avg.refine_net)):
        srcs = [dict((p if name == "pose" else r).state_dict()) for p, r in nets]
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                want = sum(s[k].double() for s in srcs) / 3
                torch.testing.assert_close(v.double(), want, rtol=1e-6, atol=1e-7)
    bn = [k for k in avg.pose_net.state_dict() if k.endswith("running_mean")]
    assert bn and not torch.equal(nets[0][0].state_dict()[bn[0]], nets[1][0].state_dict()[bn[0]])
    assert [s["step"] for s in avg.meta["averaged_from"]] == [0, 10, 20]
    assert avg.config == cfg

    other = dataclasses.replace(cfg, refine=None)
    save_model(tmp_path / "other", other, *build_networks(other))
    with pytest.raises(HandvoxError, match="refine differs"):
        average_models([tmp_path / "m0", tmp_path / "other"], tmp_path / "bad")
    with pytest.raises(HandvoxError, match="at least two"):
        average_models([tmp_path / "m0"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
