"""Choose a model's inference settings on the validation set, never on the test set.

Scores every combination of the segmentation's centre shifts (``finger_shift_mm`` /
``ray_shift_mm`` at their defaults, or 0) and re-centring passes (0, 1) on the protocol's
validation set (:func:`handvox.protocol.make_test_set` with ``validation=True``: seed 98, the
training shapes), and prints the table the model card quotes. The shipped model's ``config.json``
takes the row with the lowest mean joint error.

    python benchmarks/inference_settings.py --model runs/default/best --data /tmp/val --frames 500
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from handvox.checkpoint import load_model
from handvox.estimator import HandPoseEstimator
from handvox.evaluate import score
from handvox.protocol import failures_as_far, make_test_set, predict_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="validation set (made if absent)")
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = make_test_set(args.data, args.frames, workers=1, progress=False, validation=True)
    print("| shifts | re-centring passes | validation mean (mm) | ≤20 / 40 / 50 mm (%) |")
    print("| --- | --- | --- | --- |")
    for shift in (True, False):
        for passes in (0, 1):
            model = load_model(args.model)
            if not shift:
                seg = dataclasses.replace(model.config.segment, finger_shift_mm=0.0,
                                          ray_shift_mm=0.0)  # fmt: skip
                model.config = dataclasses.replace(model.config, segment=seg)
            est = HandPoseEstimator(model, recentre=passes)
            pred, gt, _ = predict_dataset(est, ds, progress=False)
            res = score(failures_as_far(pred, gt), gt, "model", None, "xyz")
            t = res.table()
            print(f"| {'on' if shift else 'off'} | {passes} | {res.mean_error:.2f} | "
                  f"{t[20]:.1f} / {t[40]:.1f} / {t[50]:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
