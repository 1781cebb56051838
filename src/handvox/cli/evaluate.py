"""``handvox evaluate``: score prediction files as the community scorer does."""

from __future__ import annotations

import argparse

from handvox.eval.files import evaluate_files


def run(args: argparse.Namespace) -> None:
    """``handvox evaluate``."""
    report = evaluate_files(
        dataset=args.dataset,
        pred=args.pred,
        gt=args.gt,
        compare=args.compare,
        out=args.out,
        pred_format=args.format,
        names=args.name,
        partial=args.partial,
    )
    print(report.markdown)
    print(f"wrote {args.out}/metrics.json, report.md, curve.png, per_joint.png")
