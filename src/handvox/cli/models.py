"""``handvox export`` and ``handvox average``: model folders in, a model file or folder out."""

from __future__ import annotations

import argparse

from handvox.estimator.export import export_onnx
from handvox.estimator.weights import average_models


def run_export(args: argparse.Namespace) -> None:
    """``handvox export``."""
    res = export_onnx(args.model, args.out, check=not args.no_check, opset=args.opset)
    print(f"wrote {res.path}")
    if res.max_diff_mm is not None:
        print(f"ONNX Runtime vs torch on {res.batch} volumes: max joint difference "
              f"{res.max_diff_mm:.2e} mm")  # fmt: skip


def run_average(args: argparse.Namespace) -> None:
    """``handvox average``."""
    out = average_models(args.models, args.out)
    print(f"wrote {out}: the mean of {len(args.models)} models' weights")
