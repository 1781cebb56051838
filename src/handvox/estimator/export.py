"""ONNX export of the whole network (refinement + pose) and its check with ONNX Runtime.

The ONNX graph::

    input  "tsdf"    float32 (batch, 1, D, D, D): the raw TSDF around the COM, as
                     :func:`handvox.estimator.pipeline.hand_volumes` builds it (D = volume.size)
    output "joints"  float32 (batch, J, 3): joints MINUS the COM, in millimetres, camera frame
                     (OpenCV: x right, y down, z forward), in the model's joint set

so ``joints_xyz = joints + com`` (the volume's centre). Segmentation, COM and TSDF stay outside
the graph: they are data-dependent NumPy / gather code, cheap on a CPU. The batch axis is
dynamic. The graph holds the exact fp32 networks (not the int8 / bf16 CPU variants), exported
with torch's TorchScript-based exporter (the newer torch.export one needs onnxscript).

The file's metadata (``metadata_props``) holds ``handvox_config`` (the EstimatorConfig as JSON:
joint set, volume geometry, segmentation settings), ``joint_set``, ``joint_names`` and
``output`` (a one-line description of the output), so it can be used without handvox.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handvox.atomic import atomic_path
from handvox.errors import HandvoxError
from handvox.estimator.weights import Estimator, load_model
from handvox.joints import get_joint_set

OPSET = 17
OUTPUT_DOC = "joints minus the COM (volume centre), mm, camera frame (x right, y down, z forward)"


class WholeNetwork(nn.Module):
    """Refinement (if any) then pose: ``(B, 1, D, D, D)`` TSDF -> ``(B, J, 3)`` mm - COM."""

    def __init__(self, estimator: Estimator):
        super().__init__()
        self.refine = estimator.refine_net
        self.pose = estimator.pose_net
        self.scale = float(estimator.config.pose.target_scale_mm)

    def forward(self, tsdf: torch.Tensor) -> torch.Tensor:
        x = tsdf if self.refine is None else self.refine(tsdf)
        return self.pose(x) * self.scale


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and, when checked, the largest joint difference (mm)
    between ONNX Runtime and torch on the check volumes."""

    path: Path
    max_diff_mm: float | None
    batch: int


def _require_onnx():
    """The onnx module; HandvoxError naming the extra that installs it."""
    try:
        import onnx  # optional dependency: the `onnx` extra
    except ImportError:
        raise HandvoxError(
            "ONNX export needs the onnx package: pip install 'handvox[onnx]'"
        ) from None
    return onnx


def export_onnx(
    model: str | Path | Estimator,
    out: str | Path,
    check_tsdf: torch.Tensor | None = None,
    check: bool = True,
    opset: int = OPSET,
) -> ExportResult:
    """Write the whole network of a model folder (or a loaded Estimator) to an ONNX file.

    Args:
        out: the ``.onnx`` file to write (parent folders are created).
        check_tsdf: ``(B, 1, D, D, D)`` volumes to compare ONNX Runtime with torch on; default
            two volumes of uniform noise in [-1, 1] (equivalence must hold on any input).
        check: run the comparison (needs onnxruntime).
    """
    onnx = _require_onnx()

    est = model if isinstance(model, Estimator) else load_model(model)
    net = WholeNetwork(est).eval()
    d = est.config.volume.size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, d, d, d)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter's deprecation notice, and tracer notes on the shape check in
        # RefineNet.forward (spatial sizes are fixed; only the batch axis is dynamic).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(out),
            input_names=["tsdf"],
            output_names=["joints"],
            dynamic_axes={"tsdf": {0: "batch"}, "joints": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(out))
    js = get_joint_set(est.config.joint_set)
    meta = {
        "handvox_config": json.dumps(est.config.to_dict()),
        "joint_set": js.name,
        "joint_names": ",".join(js.names),
        "output": OUTPUT_DOC,
    }
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    if not check:
        return ExportResult(out, None, 0)
    if check_tsdf is None:
        gen = torch.Generator().manual_seed(0)
        check_tsdf = torch.rand(2, 1, d, d, d, generator=gen) * 2 - 1
    with torch.inference_mode():
        ref = net(check_tsdf.float()).numpy()
    got = run_onnx(out, check_tsdf.float().numpy())
    return ExportResult(out, float(np.abs(got - ref).max()), len(check_tsdf))


def run_onnx(path: str | Path, tsdf: np.ndarray) -> np.ndarray:
    """ONNX Runtime (CPU) on ``(B, 1, D, D, D)`` float32 volumes -> ``(B, J, 3)`` mm - COM."""
    try:
        import onnxruntime as ort  # optional dependency: the `onnx` extra
    except ImportError:
        raise HandvoxError(
            "running an ONNX model needs onnxruntime: pip install 'handvox[onnx]'"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["joints"], {"tsdf": np.ascontiguousarray(tsdf, dtype=np.float32)})[0]
