"""``handvox export``, ``handvox average`` and ``handvox calibrate``: model folders in, a model
file or folder out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    """``handvox average``: the mean weights, then batch-norm statistics recomputed on the
    training data of the run they came from (``--bn-run``, else the run folder holding the first
    model: ``RUN/best``, ``RUN/checkpoints/stepN``), unless ``--bn-batches 0``."""
    # Here, not at the top: handvox export need not load the training package.
    from handvox.train.batchnorm import recompute_batch_norm

    run = args.bn_run
    if run is None and args.bn_batches:
        first = Path(args.models[0])
        run = next((p for p in (first.parent, first.parent.parent)
                    if (p / "train_config.json").is_file()), None)  # fmt: skip
    out = average_models(args.models, args.out)
    print(f"wrote {out}: the mean of {len(args.models)} models' weights")
    if not args.bn_batches:
        print("batch-norm statistics: averaged with the weights (--bn-batches 0)")
    elif run is None:
        print(
            "handvox average: batch-norm statistics averaged with the weights, not recomputed: "
            "no run folder found above the first model; give --bn-run RUN (its training data)",
            file=sys.stderr,
        )
    else:
        n = recompute_batch_norm(out, run, args.bn_batches)
        print(f"batch-norm statistics recomputed on {n} training batches of {run}")


def run_calibrate(args: argparse.Namespace) -> None:
    """``handvox calibrate``."""
    # Here, not at the top: handvox export need not load the training package.
    from handvox.train.confidence import calibrate_joint_spread

    value = calibrate_joint_spread(args.model, args.data, args.frames)
    print(f"{args.model}/config.json: joint_spread_mm {min(value):.1f}-{max(value):.1f} mm "
          "(the heatmap spread at which each joint's confidence halves)")  # fmt: skip
