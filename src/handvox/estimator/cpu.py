"""CPU inference variants of the networks: the same weights, laid out and typed for speed.

The estimator's ``fast=True`` (its default) on CPU runs the networks as the variants below, the
fastest measured (``handvox bench`` and ``benchmarks/model_speed.py``; figures in
docs/benchmarks.md, "The pose path and its CPU remedies"):

* pose net: FC layers dynamically quantised to int8, convolutions channels_last in bf16 (fp32
  without native bf16). Most of the pose net's weights sit in its first FC layer, read from
  memory once per forward: at batch 1 that read, not arithmetic, sets its speed, and int8
  weights quarter it; bf16 speeds up the convolutions.
* refinement net: ``bf16 + channels_last`` where the CPU has native bf16 (AVX512-BF16 / AMX),
  else ``channels_last`` in fp32.

* hand locator (2-D) and hand check (3-D): traced, frozen and rewritten for oneDNN
  (:func:`frozen_for_cpu`: batch norm folded into the convolutions, weights packed once instead
  of at every call); fp32, outputs within 1e-4 of eager. The check's first convolution has one
  input channel, which eager PyTorch runs on a slow generic kernel.

Joints move by hundredths to tenths of a millimetre against fp32; int8 quantises activations
with one scale per batch, so in fast mode a frame's joints also depend (as little) on its
batch-mates. ``fast=False`` runs the networks exactly as trained (fp32, eager). On GPUs the
networks run in fp32 either way.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

from handvox.estimator.networks import PoseNet


def _bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _SplitPose(nn.Module):
    """A pose net with its convolutions and its FC head converted separately."""

    def __init__(self, features: nn.Module, head: nn.Module, num_joints: int):
        super().__init__()
        self.features, self.head, self.num_joints = features, head, num_joints

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(volume)).view(-1, self.num_joints, 3)


def _int8_available() -> bool:
    engines = torch.backends.quantized.supported_engines
    return "x86" in engines or "fbgemm" in engines


def fast_cpu_networks(
    pose_net: PoseNet, refine_net: nn.Module | None
) -> tuple[nn.Module, nn.Module | None, dict[str, str]]:
    """The fastest measured CPU variants of both networks, and a name for each.

    Pose net: convolutions in bf16 (native bf16 CPUs) or fp32, channels_last; FC layers int8
    (the dense head has none: its soft-argmax reads the heatmaps in float32).
    """
    bf16, int8 = _bf16_native(), _int8_available()
    features = for_cpu_inference(pose_net.features, bf16=bf16)
    head = for_cpu_inference(pose_net.head, channels_last=False, int8_linear=int8)
    pose = _SplitPose(features, head, pose_net.cfg.num_joints).eval()
    conv = "bf16" if bf16 else "fp32"
    linear = f"+{'int8' if int8 else 'fp32'}-linear" if pose_net.cfg.fc else ""
    names = {"pose": f"{conv}-conv{linear}+channels_last"}
    refine = None
    if refine_net is not None:
        refine = for_cpu_inference(refine_net, bf16=bf16)
        names["refine"] = f"{conv}+channels_last"
    return pose, refine, names


class _Cast(nn.Module):
    """Runs ``model`` in ``dtype``, taking and returning float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def for_cpu_inference(
    model: nn.Module, *, channels_last: bool = True, bf16: bool = False, int8_linear: bool = False
) -> nn.Module:
    """An eval-mode copy of ``model`` tuned for CPU inference; ``model`` is left as it is.

    Measured options (benchmarks/model_speed.py; figures in docs/benchmarks.md, "The pose path
    and its CPU remedies"):

    * ``channels_last``: conv weights in ``channels_last_3d``, so oneDNN runs NDHWC kernels
      (same numbers; much faster max pooling).
    * ``bf16``: the whole model in bfloat16 (input cast in, output cast back to float32); fast
      on CPUs with AVX512-BF16 / AMX; outputs differ from float32 by ~1e-3.
    * ``int8_linear``: Linear layers dynamically quantised to int8
      (``torch.ao.quantization.quantize_dynamic``): a quarter of the weight bytes, which is what
      limits the pose net's 55M-weight first FC layer at batch 1. Not combinable with ``bf16``.
    """
    if bf16 and int8_linear:
        raise ValueError("bf16 and int8_linear do not combine")
    m = copy.deepcopy(model).eval()
    if channels_last:
        m = m.to(memory_format=torch.channels_last_3d)
    if int8_linear:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated for torchao
            m = quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    if bf16:
        m = _Cast(m, torch.bfloat16)
    return m


def frozen_for_cpu(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An eval-mode, frozen TorchScript copy of ``model`` rewritten for oneDNN
    (``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``), traced on ``example``; inputs
    of other sizes and batch sizes run too (the graph keeps their shapes symbolic). fp32, same
    results within float rounding. ``model`` is left as it is.

    Both calls are deprecated for ``torch.compile``, which needs a C++ compiler at run time and
    compiles for every new input size; these still run in the PyTorch handvox pins and measured
    the fastest (docs/benchmarks.md, "Live")."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, example)))
