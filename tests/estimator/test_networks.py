"""The networks of Table 3: layer lists, parameter counts and FLOPs computed by hand from the
table, forward/backward behaviour."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from handvox.estimator.cpu import for_cpu_inference
from handvox.estimator.networks import (
    PoseNet,
    PoseNetConfig,
    RefineNet,
    RefineNetConfig,
    count_flops,
    layer_table,
)


def conv(k: int, c_in: int, c_out: int) -> int:
    return k**3 * c_in * c_out + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("joints", [14, 16])
def test_pose_net_paper_layers_and_counts(joints):
    net = PoseNet(PoseNetConfig(num_joints=joints))
    rows = [(r.kind, r.out_shape, r.params) for r in layer_table(net, (1, 1, 60, 60, 60))]
    flat = 8 * 15**3
    assert flat == 27000
    assert rows == [
        ("Conv3d", (1, 8, 60, 60, 60), conv(5, 1, 8)),
        ("ReLU", (1, 8, 60, 60, 60), 0),
        ("MaxPool3d", (1, 8, 30, 30, 30), 0),
        ("Conv3d", (1, 8, 30, 30, 30), conv(5, 8, 8)),
        ("ReLU", (1, 8, 30, 30, 30), 0),
        ("MaxPool3d", (1, 8, 15, 15, 15), 0),
        ("Flatten", (1, flat), 0),
        ("Linear", (1, 2048), fc(flat, 2048)),
        ("ReLU", (1, 2048), 0),
        ("Dropout", (1, 2048), 0),
        ("Linear", (1, 2048), fc(2048, 2048)),
        ("ReLU", (1, 2048), 0),
        ("Dropout", (1, 2048), 0),
        ("Linear", (1, 3 * joints), fc(2048, 3 * joints)),
    ]
    expected = (
        conv(5, 1, 8) + conv(5, 8, 8) + fc(flat, 2048) + fc(2048, 2048) + fc(2048, 3 * joints)
    )
    assert n_params(net) == expected
    assert n_params(net) == {14: 59_589_474, 16: 59_601_768}[joints]
    assert net.head[-1].out_features == {14: 42, 16: 48}[joints]  # Table 3's caption
    macs = 125 * 8 * 60**3 + 125 * 64 * 30**3 + flat * 2048 + 2048 * 2048 + 2048 * 3 * joints
    assert count_flops(net, (1, 1, 60, 60, 60)) == 2 * macs
    assert count_flops(net, (4, 1, 60, 60, 60)) == 8 * macs
    assert 0.95e9 < 2 * macs < 1.05e9  # "about 1 GFLOP a frame"


def test_pose_net_small_variant_and_forward():
    cfg = PoseNetConfig(input_size=32, channels=(4, 8, 8), kernel=3, fc=(64,), num_joints=21)
    net = PoseNet(cfg)
    assert cfg.feature_size == 4 and cfg.flat_features == 8 * 4**3
    expected = conv(3, 1, 4) + conv(3, 4, 8) + conv(3, 8, 8) + fc(512, 64) + fc(64, 63)
    assert n_params(net) == expected
    out = net(torch.randn(3, 1, 32, 32, 32))
    assert out.shape == (3, 21, 3)
    with pytest.raises(ValueError):
        PoseNet(PoseNetConfig(input_size=3))


def refine_param_count(enc, bottleneck, dec, k=3, c0=1, extra=0) -> int:
    total, c, skips = 0, c0, []
    for level in enc:
        for o in level:
            total, c = total + conv(k, c, o), o
        skips.append(c)
    for o in bottleneck:
        total, c = total + conv(k, c, o), o
    for level, skip in zip(dec, reversed(skips), strict=True):
        c += skip
        for o in level:
            total, c = total + conv(k, c, o), o
    return total + conv(k, c, 1) + extra


def test_refine_net_paper_layers_and_counts():
    net = RefineNet()
    rows = [(r.name, r.kind, r.out_shape, r.params) for r in layer_table(net, (1, 1, 60, 60, 60))]
    convs = [(name, shape, p) for name, kind, shape, p in rows if kind == "Conv3d"]
    s60, s30, s15 = (60,) * 3, (30,) * 3, (15,) * 3
    assert convs == [
        ("encoder.0.0", (1, 32, *s60), conv(3, 1, 32)),
        ("encoder.0.2", (1, 32, *s60), conv(3, 32, 32)),
        ("encoder.1.0", (1, 64, *s30), conv(3, 32, 64)),
        ("encoder.1.2", (1, 64, *s30), conv(3, 64, 64)),
        ("bottleneck.0", (1, 128, *s15), conv(3, 64, 128)),
        ("bottleneck.2", (1, 128, *s15), conv(3, 128, 128)),
        ("decoder.0.0", (1, 64, *s30), conv(3, 128 + 64, 64)),  # up-sampled + skip
        ("decoder.0.2", (1, 64, *s30), conv(3, 64, 64)),
        ("decoder.1.0", (1, 32, *s60), conv(3, 64 + 32, 32)),
        ("decoder.1.2", (1, 16, *s60), conv(3, 32, 16)),
        ("out.0", (1, 1, *s60), conv(3, 16, 1)),
    ]
    kinds = [kind for _, kind, _, _ in rows]
    assert kinds.count("ReLU") == 10 and kinds.count("MaxPool3d") == 2
    assert kinds.count("Upsample") == 2 and kinds[-1] == "Tanh"
    assert n_params(net) == sum(p for _, _, p in convs) == 1_398_145
    # MACs = weights (params less biases) x output voxels, per conv
    macs = sum((p - shape[1]) * int(np.prod(shape[2:])) for _, shape, p in convs)
    assert count_flops(net, (1, 1, 60, 60, 60)) == 2 * macs == 91_632_384_000  # "~92 GFLOP"


def test_refine_net_transpose_upsampling_adds_parameters():
    net = RefineNet(RefineNetConfig(upsample="transpose"))
    extra = (128 * 128 * 8 + 128) + (64 * 64 * 8 + 64)
    assert n_params(net) == 1_398_145 + extra
    out = net(torch.zeros(1, 1, 8, 8, 8))
    assert out.shape == (1, 1, 8, 8, 8)


def test_refine_net_small_variant_forward_backward():
    cfg = RefineNetConfig(encoder=((4, 4), (8, 8)), bottleneck=(16,), decoder=((8,), (4, 4)))
    net = RefineNet(cfg)
    assert n_params(net) == refine_param_count(cfg.encoder, cfg.bottleneck, cfg.decoder)
    x = torch.randn(2, 1, 16, 16, 16) * 5
    out = net(x)
    assert out.shape == (2, 1, 16, 16, 16)
    assert out.abs().max() <= 1.0  # tanh output, a TSDF range
    target = torch.rand_like(out) * 2 - 1
    torch.nn.functional.mse_loss(out, target).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.encoder[0][0].weight.grad.abs().sum() > 0  # reaches the first layer
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 1, 18, 18, 18))


def test_pose_net_trains_one_step():
    torch.manual_seed(0)
    cfg = PoseNetConfig(input_size=16, channels=(4, 4), kernel=3, fc=(32, 32), num_joints=16)
    net = PoseNet(cfg)
    net.eval()  # no dropout noise, so a small gradient step must lower the loss
    x = torch.rand(4, 1, 16, 16, 16) * 2 - 1
    y = torch.randn(4, 16, 3) * 0.3
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).sum(-1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    net.train()
    assert not torch.equal(net(x), net(x))  # dropout active in training
    net.eval()
    torch.testing.assert_close(net(x), net(x))


def test_layer_table_leaves_model_untouched():
    net = PoseNet(PoseNetConfig(input_size=16, kernel=3, fc=(8,)))
    before = [p.clone() for p in net.parameters()]
    layer_table(net, (2, 1, 16, 16, 16))
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert not net.features[0]._forward_hooks


def test_for_cpu_inference_variants_agree_with_fp32():
    torch.manual_seed(0)
    net = PoseNet(PoseNetConfig(input_size=16, channels=(4, 4), kernel=3, fc=(64, 64)))
    x = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    net.eval()
    with torch.no_grad():
        ref = net(x)
        cl = for_cpu_inference(net)
        assert cl.features[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(cl(x), ref)
        q = for_cpu_inference(net, int8_linear=True)
        assert "quantized" in type(q.head[1]).__module__
        assert (q(x) - ref).abs().max() < 0.05 * ref.abs().max()
        bf = for_cpu_inference(net, bf16=True)
        out = bf(x)
        assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.05 * ref.abs().max()
        assert (bf(x) - ref).abs().max() > 0  # really ran in bfloat16
    assert isinstance(net.head[1], torch.nn.Linear)
    assert net.features[0].weight.is_contiguous()  # the original is untouched
    with pytest.raises(ValueError):
        for_cpu_inference(net, bf16=True, int8_linear=True)


def test_pose_net_levels_with_several_convs_and_batch_norm():
    from handvox.estimator.networks import PoseNet, PoseNetConfig

    cfg = PoseNetConfig(input_size=32, channels=((16,), (32, 32), (64,)), kernel=3,
                        batch_norm=True, fc=(128,), num_joints=21)  # fmt: skip
    net = PoseNet(cfg)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv3d)]
    norms = [m for m in net.features if isinstance(m, torch.nn.BatchNorm3d)]
    pools = [m for m in net.features if isinstance(m, torch.nn.MaxPool3d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 64] and len(pools) == 3
    assert len(norms) == 4 and all(c.bias is None for c in convs)
    assert cfg.feature_size == 4 and cfg.flat_features == 64 * 4**3
    conv_params = 27 * (1 * 16 + 16 * 32 + 32 * 32 + 32 * 64) + 2 * (16 + 32 + 32 + 64)
    fc_params = (64 * 64 + 1) * 128 + (128 + 1) * 63
    assert sum(p.numel() for p in net.parameters()) == conv_params + fc_params
    assert net(torch.zeros(2, 1, 32, 32, 32)).shape == (2, 21, 3)
    # the paper's config (ints) is the same as one-conv levels
    assert PoseNetConfig(channels=(8, 8)).levels == ((8,), (8,))


# --- the dense head ---------------------------------------------------------------------------


def test_soft_argmax_reads_each_axis_at_the_cubes_voxel_centres():
    """A peaked heatmap at voxel (k, j, i) gives that voxel's centre as the volume places it
    (x along W, y along H, z along D), in units of the half cube; a flat one the cube's centre."""
    from handvox.estimator.networks import soft_argmax_3d
    from handvox.estimator.volume import VolumeConfig, voxel_centers

    r, half = 8, 150.0
    cfg = VolumeConfig(size=r, voxel_mm=2 * half / r)
    com = torch.tensor([[10.0, -20.0, 500.0]], dtype=torch.float64)
    centres = voxel_centers(com, cfg)[0]  # (z, y, x, 3) mm
    logits = torch.full((3, 2, r, r, r), -1e4)
    picks = [((1, 6, 3), (7, 0, 2)), ((0, 0, 0), (4, 4, 5)), ((2, 7, 6), (3, 1, 0))]
    for b, voxels in enumerate(picks):
        for j, (k, y, x) in enumerate(voxels):
            logits[b, j, k, y, x] = 0.0
    out = soft_argmax_3d(logits)
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    for b, voxels in enumerate(picks):
        for j, (k, y, x) in enumerate(voxels):
            mm = out[b, j].double() * half + com[0]
            torch.testing.assert_close(mm, centres[k, y, x])
    flat = soft_argmax_3d(torch.zeros(1, 1, r, r, r))
    torch.testing.assert_close(flat, torch.zeros(1, 1, 3))
    # bf16 logits are read in float32: the same centre to float32's precision
    bf = soft_argmax_3d(logits.to(torch.bfloat16))
    assert bf.dtype == torch.float32 and (bf - out).abs().max() < 1e-6


def test_heatmap_moments_of_a_point_two_points_and_a_flat_heatmap():
    """A heatmap on one voxel spreads 0; split evenly between two voxels d apart along one axis,
    d / 2; flat over n^3 voxels, sqrt(3 (n^2 - 1) / (3 n^2)) half cubes (the discrete uniform's
    variance on each axis); the means are soft_argmax_3d's; float32 whatever the logits' dtype."""
    from handvox.estimator.networks import heatmap_moments, soft_argmax_3d

    r = 8
    logits = torch.full((1, 3, r, r, r), -1e4)
    logits[0, 0, 2, 3, 4] = 0.0
    logits[0, 1, 1, 1, 1] = logits[0, 1, 1, 1, 6] = 0.0  # x: voxels 1 and 6, 5 voxels apart
    logits[0, 2] = 0.0
    mean, s = heatmap_moments(logits)
    assert s.shape == (1, 3) and s.dtype == torch.float32
    torch.testing.assert_close(mean, soft_argmax_3d(logits))
    voxel = 2 / r  # half cubes
    torch.testing.assert_close(s[0, :2], torch.tensor([0.0, 2.5 * voxel]), atol=1e-3, rtol=0)
    torch.testing.assert_close(s[0, 2], torch.tensor(((r * r - 1) / (r * r)) ** 0.5))
    assert (heatmap_moments(logits.to(torch.bfloat16))[1] - s).abs().max() < 1e-4


def test_dense_head_layers_shapes_and_config_rules():
    from handvox.estimator.networks import DenseTrunk, SoftArgmax3d
    from handvox.estimator.presets import compact_estimator, dense_estimator, dense_head
    from handvox.estimator.volume import VolumeConfig
    from handvox.estimator.weights import EstimatorConfig

    est = dense_estimator()
    cfg = est.pose
    assert cfg.head == "dense" and cfg.fc == () and cfg.heatmap_size == 16
    assert cfg.levels == compact_estimator().pose.levels  # the compact encoder
    net = PoseNet(cfg)
    assert isinstance(net.features, DenseTrunk) and isinstance(net.head, SoftArgmax3d)
    rows = layer_table(net, (1, 1, 32, 32, 32))
    assert rows[-2].kind == "Conv3d" and rows[-2].out_shape == (1, 21, 16, 16, 16)
    assert rows[-1].kind == "SoftArgmax3d" and rows[-1].out_shape == (1, 63)
    assert not any(r.kind == "Linear" for r in rows)
    # encoder (as compact's, no last pooling), 2 decoder levels (1^3 projection, k3 fuse + BN)
    # and the 1^3 heatmap conv
    enc = 27 * (16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128) + 2 * (
        16 + 32 + 32 + 64 + 64 + 128
    )
    dec = (128 * 64 + 64) + (27 * 64 * 64 + 2 * 64) + (64 * 32 + 32) + (27 * 32 * 32 + 2 * 32)
    assert n_params(net) == enc + dec + 32 * 21 + 21
    out = net(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, 21, 3) and out.abs().max() < 0.01  # flat heatmaps at the start
    # any joint set; decoder channels that differ from the encoder's get a lateral projection
    other = PoseNet(dense_head(dataclasses.replace(cfg, num_joints=14), decoder=(48, 24, 8)))
    assert other.cfg.heatmap_size == 32
    assert other(torch.randn(1, 1, 32, 32, 32)).shape == (1, 14, 3)
    assert isinstance(other.features.lateral[0], torch.nn.Conv3d)

    with pytest.raises(ValueError, match="no FC layers"):
        PoseNetConfig(head="dense", decoder=(8,))
    with pytest.raises(ValueError, match="decoder levels"):
        dataclasses.replace(cfg, decoder=(64, 32, 16, 8))
    with pytest.raises(ValueError, match="no decoder"):
        dataclasses.replace(compact_estimator().pose, decoder=(8,))
    with pytest.raises(ValueError, match="head must be"):
        PoseNetConfig(head="heatmap")
    with pytest.raises(ValueError, match="half the cube"):
        EstimatorConfig(volume=VolumeConfig(size=32, voxel_mm=5.0), pose=cfg)


def test_dense_head_learns_a_joint_where_the_surface_is():
    """Trained a few steps on cubes whose joint sits at a blob of the input, the dense head
    moves its estimates towards the blob: the gradient reaches the encoder through the
    soft-argmax."""
    from handvox.estimator.presets import dense_head

    torch.manual_seed(0)
    cfg = dense_head(PoseNetConfig(input_size=16, channels=(4, 8, 8), kernel=3, fc=(),
                                   batch_norm=True, num_joints=1), decoder=(8, 4))  # fmt: skip
    net = PoseNet(cfg)
    n = 16
    grid = (2 * torch.arange(n) + 1) / n - 1
    targets = torch.rand(8, 1, 3) * 1.2 - 0.6
    z, y, x = torch.meshgrid(grid, grid, grid, indexing="ij")
    pos = torch.stack([x, y, z], -1)  # (D, H, W, 3)
    d2 = ((pos[None] - targets[:, None, None, None, 0]) ** 2).sum(-1)
    volume = (1 - 2 * torch.exp(-d2 / 0.02))[:, None]  # -1 at the joint, +1 far from it
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((net(volume) - targets) ** 2).sum(-1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert net.features.encoder[0][0].weight.grad.abs().sum() > 0
    assert losses[-1] < 0.2 * losses[0]


def test_dense_head_cpu_variant_agrees_and_saves(tmp_path):
    from handvox.estimator.cpu import fast_cpu_networks
    from handvox.estimator.presets import dense_estimator
    from handvox.estimator.weights import build_networks, load_model, save_model

    torch.manual_seed(0)
    est = dense_estimator()
    pose, _ = build_networks(est)
    with torch.no_grad():
        pose.features.heatmaps.weight.normal_(std=3.0)  # heatmaps that are not flat
    pose.eval()
    x = torch.rand(2, 1, 32, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = pose(x)
        fast, _, names = fast_cpu_networks(pose, None)
        out = fast(x)
    assert ref.abs().max() > 0.01
    assert out.dtype == torch.float32 and (out - ref).abs().max() < 0.02
    save_model(tmp_path / "m", est, pose)
    back = load_model(tmp_path / "m")
    assert back.config == est and back.config.pose.decoder == (64, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.pose_net.eval()(x), ref)


def test_frozen_for_cpu_agrees_with_eager_at_any_size_and_leaves_the_model():
    from handvox.estimator.check import HandCheckNet
    from handvox.estimator.cpu import frozen_for_cpu
    from handvox.estimator.locate import LocatorNet

    torch.manual_seed(0)
    for net, example, others in (
        (LocatorNet(8), torch.rand(1, 2, 120, 160), [(1, 2, 64, 72), (3, 2, 184, 320)]),
        (HandCheckNet(4, 32), torch.rand(1, 1, 32, 32, 32), [(5, 1, 32, 32, 32)]),
    ):
        for m in net.modules():  # batch-norm statistics that are not the identity
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        net.eval()
        frozen = frozen_for_cpu(net, example)
        assert isinstance(frozen, torch.jit.ScriptModule)
        with torch.no_grad():
            for shape in [tuple(example.shape), *others]:
                x = torch.rand(shape) * 2 - 1
                ref = net(x)
                torch.testing.assert_close(frozen(x), ref, atol=1e-4, rtol=1e-4)
        assert not net.training and any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()
        )  # the original keeps its batch norms (freezing folds them into a copy)
