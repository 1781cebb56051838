"""``make demo``: run what handvox can do end to end and write a report folder.

Today: score the published methods' NYU and ICVL predictions with handvox's evaluation toolkit and
draw the real NYU test frame with its labels. Reference data is looked for in ``../shared/data``
(beside the checkout); without it those steps are skipped with a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Evaluated first (the "method under test"), then the rest, in the order papers list them.
PUBLISHED = {
    "nyu": [
        ("CVPR18_NYU_V2V_PoseNet.txt", "V2V-PoseNet"),
        ("ICCVW17_NYU_DeepPrior++.txt", "DeepPrior++"),
        ("CVPR17_NYU_3DCNN.txt", "3D CNN (Ge et al.)"),
        ("ICCV15_NYU_Feedback.txt", "Feedback"),
        ("IJCAI16_NYU_DeepModel.txt", "DeepModel"),
        ("CVWW15_NYU_Prior.txt", "DeepPrior"),
    ],
    "icvl": [
        ("CVPR18_ICVL_V2V_PoseNet.txt", "V2V-PoseNet"),
        ("IJCAI16_ICVL_DeepModel.txt", "DeepModel"),
        ("CVPR14_LRF_Results.txt", "LRF"),
        ("CVWW15_ICVL_Prior.txt", "DeepPrior"),
    ],
}


def find_shared(start: Path | None = None) -> Path | None:
    """``../shared`` next to the working directory, if it holds the reference data."""
    candidate = (start or Path.cwd()).resolve().parent / "shared"
    return candidate if (candidate / "data").is_dir() else None


def run_published_evaluation(shared: Path, out: Path) -> dict[str, str]:
    """Score every published method on NYU and ICVL; returns dataset -> Markdown table."""
    from handvox.evaluate import evaluate_files

    tables = {}
    for dataset, methods in PUBLISHED.items():
        folder = shared / "data" / "published" / dataset
        files = [folder / f for f, _ in methods]
        report = evaluate_files(
            dataset=dataset,
            pred=files[0],
            gt=shared / "data" / dataset / f"{dataset}_test_groundtruth_label.txt",
            compare=files[1:],
            out=out / dataset,
            pred_format="uvd",
            names=[name for _, name in methods],
        )
        tables[dataset] = report.markdown
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handvox.demo")
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    shared = find_shared()
    if shared is None:
        print(
            "handvox demo: ../shared/data not found beside this checkout; the published-results "
            "report and the real NYU frame need it, so they are skipped."
        )
        return 0

    print(f"handvox demo: scoring published methods with the data in {shared}")
    for dataset, table in run_published_evaluation(shared, args.out).items():
        print(f"\n## {dataset.upper()} test set\n\n{table}")

    from handvox.draw import show_file

    nyu = shared / "data" / "nyu"
    frame_png = args.out / "nyu_frame.png"
    show_file(
        depth=nyu / "depth_1_0000001.png",
        camera="nyu",
        out=frame_png,
        gt=nyu / "nyu_test_groundtruth_label.txt",
        pred=shared / "data" / "published" / "nyu" / "CVPR18_NYU_V2V_PoseNet.txt",
        frame=0,
        joint_set="nyu14",
        crop=True,
    )
    print(f"\nwrote {args.out}/nyu/, {args.out}/icvl/ (report.md, curve.png, per_joint.png)")
    print(f"wrote {frame_png} (real NYU test frame 1: labels and V2V-PoseNet's prediction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
