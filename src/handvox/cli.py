"""``handvox`` command line: a thin layer of argument parsing over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handvox.errors import HandvoxError


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from handvox.evaluate import evaluate_files

    report = evaluate_files(
        dataset=args.dataset,
        pred=args.pred,
        gt=args.gt,
        compare=args.compare,
        out=args.out,
        pred_format=args.format,
        names=args.name,
    )
    print(report.markdown)
    print(f"wrote {args.out}/metrics.json, report.md, curve.png, per_joint.png")


def _cmd_show(args: argparse.Namespace) -> None:
    from handvox.draw import show_file

    show_file(
        depth=args.depth,
        camera=args.camera,
        out=args.out,
        gt=args.gt,
        pred=args.pred,
        frame=args.frame,
        joint_set=args.joint_set,
        crop=not args.no_crop,
    )
    print(f"wrote {args.out}")


def _cmd_synth(args: argparse.Namespace) -> None:
    from handvox.camera import Camera
    from handvox.synth import make_generator, parse_shard, synthesize, write_preview

    try:
        camera = Camera.from_string(args.camera)
        shard = parse_shard(args.shard)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    generator, info = make_generator(args.generator, camera)
    result = synthesize(
        args.out,
        generator,
        camera,
        frames=args.frames,
        seed=args.seed,
        chunk_size=args.chunk_size,
        shard=shard,
        workers=args.workers,
        compression=args.compression,
        generator_info=info,
        progress=not args.quiet,
    )
    print(
        f"wrote {result.frames_written} frames in {len(result.chunks_written)} chunks to "
        f"{args.out} ({result.frames_per_second:.0f} frames/s); "
        f"{len(result.chunks_skipped)} chunks were already complete"
    )
    if args.preview:
        print(f"wrote {write_preview(args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handvox", description="3D hand pose from depth with volumetric 3D CNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "evaluate",
        help="score predictions as the community scorer does; write metrics, table and plots",
    )
    p.add_argument("--dataset", required=True, choices=["nyu", "icvl", "msra"])
    p.add_argument("--pred", required=True, type=Path, help="prediction file (one frame a line)")
    p.add_argument(
        "--gt",
        type=Path,
        help="ground-truth labels (community format, uvd); default: the dataset's test labels "
        "in ../shared/data/<dataset>/ when present",
    )
    p.add_argument("--compare", nargs="*", type=Path, default=[], help="other methods' files")
    p.add_argument(
        "--name",
        action="append",
        help="display name for --pred then each --compare file, in order (default: file stem)",
    )
    p.add_argument(
        "--format",
        choices=["auto", "uvd", "xyz"],
        default="auto",
        help="prediction format: community uvd, or handvox xyz (mm, OpenCV); auto reads the "
        "header handvox writes and otherwise assumes uvd",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("show", help="draw a depth frame with its skeleton(s) to PNG")
    p.add_argument("depth", type=Path, help="depth file: NYU RGB PNG, 16-bit PNG, MSRA .bin, .npy")
    p.add_argument("--camera", default="nyu", help="preset (nyu, icvl, msra) or fx,fy,cx,cy,w,h")
    p.add_argument("--gt", type=Path, help="ground-truth label file (community format)")
    p.add_argument("--pred", type=Path, help="prediction label file (community format or xyz)")
    p.add_argument("--frame", type=int, default=0, help="0-based line of the label files to draw")
    p.add_argument("--joint-set", default=None, help="joint set of the labels (default: by count)")
    p.add_argument("--no-crop", action="store_true", help="draw the whole image")
    p.add_argument("--out", required=True, type=Path, help="output PNG")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser(
        "synth",
        help="generate a synthetic dataset (resumable; shards may share one folder)",
    )
    p.add_argument("--out", required=True, type=Path, help="dataset folder")
    p.add_argument("--frames", required=True, type=int, help="frames in the whole dataset")
    p.add_argument("--seed", required=True, type=int, help="frame i depends on (seed, i) only")
    p.add_argument(
        "--shard",
        default="1/1",
        help="i/N, 1-based: write only chunks c with c %% N == i-1 (run N jobs, one per i)",
    )
    p.add_argument("--chunk-size", type=int, default=256, help="frames per chunk (the unit of "
                   "sharding and resumption)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="processes generating chunks")
    p.add_argument("--camera", default="nyu", help="preset (nyu, icvl, msra) or fx,fy,cx,cy,w,h")
    p.add_argument(
        "--generator",
        choices=["hand", "toy"],
        default="hand",
        help="hand: the kinematic hand renderer; toy: a cheap stand-in for tests",
    )
    p.add_argument(
        "--compression",
        choices=["zlib", "none"],
        default="zlib",
        help="depth crops: zlib level 1 (small), or none (faster for full-frame scenes)",
    )
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except HandvoxError as e:
        print(f"handvox {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
