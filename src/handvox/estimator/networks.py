"""The paper's two volumetric networks (supplement, Table 3), built from config dataclasses.

Table 3 as read from the paper (kernel, stride, padding per axis; every conv3D is followed by its
activation; pooling is max pooling):

(a) TSDF refinement, a 3D U-Net ("FCN"), input ``(B, 1, 60, 60, 60)``::

    conv3D 32  k3 s1 p1 ReLU | conv3D 32  k3 s1 p1 ReLU | pooling3D k2 s2           -> 30^3
    conv3D 64  k3 s1 p1 ReLU | conv3D 64  k3 s1 p1 ReLU | pooling3D k2 s2           -> 15^3
    conv3D 128 k3 s1 p1 ReLU | conv3D 128 k3 s1 p1 ReLU | upPooling3D k2            -> 30^3
    [concat encoder's 64] conv3D 64 k3 ReLU | conv3D 64 k3 ReLU | upPooling3D k2    -> 60^3
    [concat encoder's 32] conv3D 32 k3 ReLU | conv3D 16 k3 ReLU | conv3D 1 k3 Tanh

    The text: "we up-sample the previous layers feature maps, and then concatenate them with the
    feature map from encoder". upPooling3D has no channel count in the table, i.e. no weights:
    we read it as nearest-neighbour up-sampling (each voxel copied into a 2^3 block), the default
    ``upsample="nearest"``. ``upsample="transpose"`` uses a learned ConvTranspose3d(c, c, 2, 2)
    instead, which adds ``8 c^2 + c`` parameters per up-sampling (and changes the counts).

(b) Pose estimation, input ``(B, 1, 60, 60, 60)``::

    conv3D 8 k5 s1 p2 ReLU | pooling3D k2 s2 -> 30^3
    conv3D 8 k5 s1 p2 ReLU | pooling3D k2 s2 -> 15^3, flatten 8 * 15^3 = 27000
    FC 2048 ReLU | dropout 0.5 | FC 2048 ReLU | dropout 0.5 | FC 3 J (42 for NYU, 48 for ICVL)

    The text says "3D convolution + 3D pooling + ReLU"; the table puts ReLU on the conv row. Both
    orders give the same numbers (max pooling and ReLU commute); we follow the table.

(c) handvox's dense head (``PoseNetConfig.head = "dense"``), not in the paper: the same encoder
levels without the last pooling, then a top-down decoder (each level: 1^3 projection, 2x nearest
up-sampling, the encoder's feature map of that size added, one conv k3 + BN + ReLU) and a 1^3
conv to one heatmap per joint; a soft-argmax per joint (softmax over the heatmap's voxels, the
expected voxel centre: integral regression, Sun et al., ECCV 2018) gives its coordinates. For
the compact encoder at 32^3 with ``decoder=(64, 32)``: 4^3 -> 8^3 -> 16^3 heatmaps.
Why this dense head (docs/benchmarks.md, "A dense head"): it outputs the same ``(B, J, 3)`` target
as the holistic heads, so the codec, the L2 loss, the test-time views, the trainer and the CPU
variants serve both unchanged; unlike V2V-PoseNet's argmax over 44^3 heatmaps (2.3 mm voxels of
an 88^3 input) its expectation is not quantised to the voxel, which at handvox's 16^3 heatmaps
(18.75 mm voxels) would be ruinous; and each joint is a weighted mean of places in the cube,
tied to where the evidence is, instead of one vector read off the whole volume.

The pose net regresses joints relative to the COM divided by ``PoseNetConfig.target_scale_mm``
(default 150 mm, half the paper's cube, so targets inside the cube lie in [-1, 1]); the codec is
:func:`handvox.estimator.volume.encode_joints` / :func:`~handvox.estimator.volume.decode_joints`.

FLOPs here are 2 x multiply-accumulates of the conv and linear layers (bias, activations,
pooling and up-sampling are not counted), the convention behind "~1 GFLOP" for the pose net.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from math import prod
from typing import TypeVar

import numpy as np
import torch
from torch import nn

Array = TypeVar("Array", np.ndarray, torch.Tensor)

HEADS = ("holistic", "dense")


@dataclass(frozen=True)
class PoseNetConfig:
    """Pose CNN of Table 3(b); defaults are the paper's for NYU (14 joints).

    Attributes:
        input_size: D of the ``(B, 1, D, D, D)`` input volume.
        channels: one entry per level, each level ending with 2^3 max pooling: an int (one
            conv of that many output channels, as in the paper) or a tuple (several convs).
        kernel: cubic kernel edge; padding is ``kernel // 2`` so convs keep the size.
        batch_norm: batch normalisation after every conv (before its ReLU); the paper has none.
        fc: widths of the hidden fully connected layers (each with ReLU and dropout).
        dropout: dropout fraction after each hidden FC layer.
        num_joints: J; the last FC layer has 3 J outputs.
        target_scale_mm: the regression target is ``(joints - com) / target_scale_mm``.
        head: ``"holistic"`` (FC layers on the flattened features: the paper's) or ``"dense"``
            (a decoder to per-joint heatmaps and a soft-argmax; module docstring, (c)). The
            dense head's heatmaps span the cube, so it needs ``target_scale_mm`` to be half the
            cube's edge (checked by the estimator's config) and has no FC layers (``fc=()``).
        decoder: the dense head's decoder channels, coarse to fine, one entry per 2x
            up-sampling; its heatmaps have ``feature_size * 2 ** (len(decoder) + 1)`` voxels a
            side. Empty for the holistic head.
    """

    input_size: int = 60
    channels: tuple[int | tuple[int, ...], ...] = (8, 8)
    kernel: int = 5
    batch_norm: bool = False
    fc: tuple[int, ...] = (2048, 2048)
    dropout: float = 0.5
    num_joints: int = 14
    target_scale_mm: float = 150.0
    head: str = "holistic"
    decoder: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {self.head!r}")
        if self.head == "holistic" and self.decoder:
            raise ValueError("the holistic head has no decoder: leave decoder empty")
        if self.head == "dense":
            if self.fc:
                raise ValueError("the dense head has no FC layers: set fc = ()")
            if not 1 <= len(self.decoder) <= len(self.channels) - 1:
                raise ValueError(
                    f"the dense head needs 1 to {len(self.channels) - 1} decoder levels "
                    f"(one fewer than the encoder's), got {len(self.decoder)}"
                )

    @property
    def heatmap_size(self) -> int:
        """Edge of the dense head's heatmaps (voxels)."""
        return self.input_size // 2 ** (len(self.channels) - 1 - len(self.decoder))

    @property
    def levels(self) -> tuple[tuple[int, ...], ...]:
        """Conv output channels of each level."""
        return tuple((c,) if isinstance(c, int) else tuple(c) for c in self.channels)

    @property
    def feature_size(self) -> int:
        """Edge of the feature volume after all poolings (floor division, like MaxPool3d)."""
        s = self.input_size
        for _ in self.channels:
            s //= 2
        return s

    @property
    def flat_features(self) -> int:
        """Inputs of the first FC layer."""
        return self.levels[-1][-1] * self.feature_size**3


@dataclass(frozen=True)
class RefineNetConfig:
    """TSDF refinement 3D U-Net of Table 3(a); defaults are the paper's.

    Attributes:
        in_channels: channels of the input volume.
        encoder: conv channels of each encoder level (each level ends with 2^3 max pooling).
        bottleneck: conv channels at the coarsest level.
        decoder: conv channels of each decoder level, coarse to fine; each level starts by
            up-sampling and concatenating the encoder's feature map of the same size.
        out_channels: channels of the last conv (tanh).
        kernel: cubic kernel edge of every conv; padding ``kernel // 2``.
        upsample: ``"nearest"`` (parameter-free, our reading of upPooling3D) or ``"transpose"``.
    """

    in_channels: int = 1
    encoder: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64))
    bottleneck: tuple[int, ...] = (128, 128)
    decoder: tuple[tuple[int, ...], ...] = ((64, 64), (32, 16))
    out_channels: int = 1
    kernel: int = 3
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        if len(self.encoder) != len(self.decoder):
            raise ValueError("encoder and decoder need the same number of levels")
        if self.upsample not in ("nearest", "transpose"):
            raise ValueError(f"upsample must be 'nearest' or 'transpose', not {self.upsample!r}")

    @property
    def levels(self) -> int:
        return len(self.encoder)


def _conv_relu(c_in: int, c_out: int, kernel: int, batch_norm: bool = False) -> list[nn.Module]:
    conv = nn.Conv3d(c_in, c_out, kernel, stride=1, padding=kernel // 2, bias=not batch_norm)
    norm = [nn.BatchNorm3d(c_out)] if batch_norm else []
    return [conv, *norm, nn.ReLU(inplace=True)]


def _marginals(logits: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each channel's softmax over its ``(D, H, W)`` voxels, summed to its x, y and z
    marginals: ``[(p (B, J, n), voxel centres (n,))]`` for x, y, z, in float32 under no
    autocast (bf16's 8-bit mantissa would move a joint by up to ~0.4 % of the cube)."""
    b, j, d, h, w = logits.shape
    dev = logits.device.type
    # (torch.autocast knows no "meta", on which layer_table runs the network.)
    off = torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else nullcontext()
    with off:
        p = torch.softmax(logits.float().reshape(b, j, -1), dim=-1).view(b, j, d, h, w)

        def centres(n: int) -> torch.Tensor:
            return (2 * torch.arange(n, device=logits.device, dtype=torch.float32) + 1) / n - 1

        return [(p.sum(dim=(2, 3)), centres(w)), (p.sum(dim=(2, 4)), centres(h)),
                (p.sum(dim=(3, 4)), centres(d))]  # fmt: skip


def soft_argmax_3d(logits: torch.Tensor) -> torch.Tensor:
    """Expected voxel centre under each channel's softmax: ``(B, J, D, H, W)`` logits ->
    ``(B, J, 3)`` (x, y, z) in units of the half cube, voxel centres at ``(2 i + 1) / n - 1``;
    float32 whatever the input's dtype."""
    return torch.stack([(p * c).sum(-1) for p, c in _marginals(logits)], dim=-1)


def heatmap_moments(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`soft_argmax_3d` and how far each channel's softmax spreads about it, from one
    softmax: ``(B, J, D, H, W)`` logits -> ``(B, J, 3)`` expectations and ``(B, J)`` root of the
    summed x, y, z variances, both in units of the half cube.

    A wide or split heatmap is a joint the network is unsure of: on validation frames this
    ranks joints and frames by their error (docs/benchmarks.md, "Confidence from one view").
    """
    marginals = _marginals(logits)
    mean = torch.stack([(p * c).sum(-1) for p, c in marginals], dim=-1)
    var = sum((p * c**2).sum(-1) for p, c in marginals) - (mean**2).sum(-1)
    return mean, var.clamp_min(0).sqrt()


class SoftArgmax3d(nn.Module):
    """:func:`soft_argmax_3d` as a module, flattened to ``(B, 3 J)`` like a holistic head's."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return soft_argmax_3d(logits).flatten(1)


class DenseTrunk(nn.Module):
    """The dense head's network up to its heatmaps: ``(B, 1, D, D, D)`` -> ``(B, J, R, R, R)``
    logits, R = ``cfg.heatmap_size`` (module docstring, (c))."""

    def __init__(self, cfg: PoseNetConfig):
        super().__init__()
        self.encoder = nn.ModuleList()
        c_in = 1
        skips = []
        for level in cfg.levels:
            layers: list[nn.Module] = []
            for c in level:
                layers += _conv_relu(c_in, c, cfg.kernel, cfg.batch_norm)
                c_in = c
            self.encoder.append(nn.Sequential(*layers))
            skips.append(c_in)
        self.pool = nn.MaxPool3d(2, stride=2)
        self.project, self.lateral, self.fuse = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for c, skip in zip(cfg.decoder, reversed(skips[:-1]), strict=False):
            self.project.append(nn.Conv3d(c_in, c, 1))
            self.lateral.append(nn.Identity() if skip == c else nn.Conv3d(skip, c, 1))
            self.fuse.append(nn.Sequential(*_conv_relu(c, c, cfg.kernel, cfg.batch_norm)))
            c_in = c
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.heatmaps = nn.Conv3d(c_in, cfg.num_joints, 1)
        # Flat heatmaps at the start: every joint begins at the cube's centre, where the
        # holistic head's zero-mean output starts too.
        nn.init.normal_(self.heatmaps.weight, std=1e-3)
        nn.init.zeros_(self.heatmaps.bias)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = volume
        skips = []
        for i, level in enumerate(self.encoder):
            if i:
                x = self.pool(x)
            x = level(x)
            skips.append(x)
        for project, lateral, fuse, skip in zip(
            self.project, self.lateral, self.fuse, reversed(skips[:-1]), strict=False
        ):
            x = fuse(self.up(project(x)) + lateral(skip))
        return self.heatmaps(x)


class PoseNet(nn.Module):
    """``(B, 1, D, D, D)`` TSDF -> ``(B, J, 3)`` joints relative to the COM / target scale.

    ``features`` then ``head``: for the holistic head the conv levels and the FC layers, for the
    dense head :class:`DenseTrunk` and :class:`SoftArgmax3d` (which is why the CPU variants of
    :mod:`handvox.estimator.cpu` serve both).
    """

    def __init__(self, cfg: PoseNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PoseNetConfig()
        if cfg.feature_size < 1:
            raise ValueError(f"input_size {cfg.input_size} too small for {len(cfg.channels)} pools")
        if cfg.head == "dense":
            self.features: nn.Module = DenseTrunk(cfg)
            self.head: nn.Module = SoftArgmax3d()
            return
        layers: list[nn.Module] = []
        c_in = 1
        for level in cfg.levels:
            for c in level:
                layers += _conv_relu(c_in, c, cfg.kernel, cfg.batch_norm)
                c_in = c
            layers.append(nn.MaxPool3d(2, stride=2))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        n_in = cfg.flat_features
        for width in cfg.fc:
            head += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            n_in = width
        head.append(nn.Linear(n_in, 3 * cfg.num_joints))
        self.head = nn.Sequential(*head)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(volume)).view(-1, self.cfg.num_joints, 3)


class RefineNet(nn.Module):
    """``(B, C, D, D, D)`` raw TSDF -> ``(B, 1, D, D, D)`` refined TSDF in [-1, 1].

    D must be divisible by ``2 ** levels`` (60 is, for the paper's two levels).
    """

    def __init__(self, cfg: RefineNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RefineNetConfig()
        k = cfg.kernel
        self.encoder = nn.ModuleList()
        c_in = cfg.in_channels
        skips = []
        for level in cfg.encoder:
            convs = []
            for c in level:
                convs += _conv_relu(c_in, c, k)
                c_in = c
            self.encoder.append(nn.Sequential(*convs))
            skips.append(c_in)
        self.pool = nn.MaxPool3d(2, stride=2)
        convs = []
        for c in cfg.bottleneck:
            convs += _conv_relu(c_in, c, k)
            c_in = c
        self.bottleneck = nn.Sequential(*convs)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level, skip in zip(cfg.decoder, reversed(skips), strict=True):
            if cfg.upsample == "transpose":
                self.up.append(nn.ConvTranspose3d(c_in, c_in, 2, stride=2))
            else:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
            c_in += skip
            convs = []
            for c in level:
                convs += _conv_relu(c_in, c, k)
                c_in = c
            self.decoder.append(nn.Sequential(*convs))
        self.out = nn.Sequential(
            nn.Conv3d(c_in, cfg.out_channels, k, stride=1, padding=k // 2), nn.Tanh()
        )

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        n = 2**self.cfg.levels
        if any(s % n for s in volume.shape[2:]):
            raise ValueError(f"volume size {tuple(volume.shape[2:])} must be divisible by {n}")
        x = volume
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.out(x)


@dataclass
class LayerInfo:
    """One conv / linear / up-sampling layer of a traced forward pass (per the whole batch)."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    macs: int = field(default=0)


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Leaf layers in call order with output shapes, parameters and multiply-accumulates.

    Runs the model on the meta device (no memory, no arithmetic): the model itself is untouched.
    """
    rows: list[LayerInfo] = []

    def hook(name: str):
        def record(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            macs = 0
            if isinstance(mod, nn.Conv3d):
                macs = out.numel() * mod.in_channels // mod.groups * prod(mod.kernel_size)
            elif isinstance(mod, nn.ConvTranspose3d):
                macs = inputs[0].numel() * mod.out_channels // mod.groups * prod(mod.kernel_size)
            elif isinstance(mod, nn.Linear):
                macs = out.numel() * mod.in_features
            rows.append(LayerInfo(name, type(mod).__name__, tuple(out.shape), params, macs))

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if not list(m.children())
    ]
    meta = {
        n: torch.empty_like(t, device="meta")
        for n, t in [*model.named_parameters(), *model.named_buffers()]
    }
    try:
        with torch.no_grad():
            torch.func.functional_call(model, meta, (torch.empty(input_shape, device="meta"),))
    finally:
        for h in handles:
            h.remove()
    return rows


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on a batch of ``input_shape``: 2 x the multiply-accumulates of
    conv, transposed-conv and linear layers (bias, activations, pooling not counted)."""
    return 2 * sum(r.macs for r in layer_table(model, input_shape))
