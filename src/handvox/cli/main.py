"""``handvox`` command line: a thin layer of argument parsing over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handvox.cli.train import add_train_command
from handvox.errors import HandvoxError


def _cmd_evaluate(args: argparse.Namespace) -> None:
    # Each command loads only what it runs (here matplotlib, for the figures).
    from handvox.eval.files import evaluate_files

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
    # Each command loads only what it runs (here matplotlib, and torch for the segmentation).
    from handvox.cli.show import show_file

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


def _scene_overrides(args: argparse.Namespace) -> dict:
    """HandSynthConfig fields given on the command line."""
    names = ("forearm_prob", "body_prob", "wall_prob", "noise")
    out = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if getattr(args, "hand_shapes", None):
        from handvox.hand.shapes import SHAPE_NAMES

        picked = tuple(n.strip() for n in args.hand_shapes.split(",") if n.strip())
        unknown = [n for n in picked if n not in SHAPE_NAMES]
        if unknown or not picked:
            raise ValueError(
                f"--hand-shapes {args.hand_shapes!r}: choose among {', '.join(SHAPE_NAMES)}"
            )
        out["shapes"] = picked
    return out


def _cmd_synth(args: argparse.Namespace) -> None:
    from handvox.camera import Camera
    from handvox.synth.generators import make_generator
    from handvox.synth.hand import HandSynthConfig
    from handvox.synth.job import parse_shard, synthesize
    from handvox.synth.preview import write_preview

    try:
        camera = Camera.from_string(args.camera)
        shard = parse_shard(args.shard)
        config = None
        if args.generator == "hand":
            config = HandSynthConfig.for_camera(camera, **_scene_overrides(args))
        generator, info = make_generator(args.generator, camera, config)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
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


# --- predict, export, bench ---------------------------------------------------------------------
def _parse_numbers(text: str | None, flag: str, example: str) -> tuple[float, ...] | None:
    """A test-time option: None (the model's), 'none' (), or comma-separated numbers."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise HandvoxError(
            f"{flag}: expected numbers like {example} or 'none', got {text!r}"
        ) from None


def _load_estimator(
    model: Path | None,
    device: str,
    exact: bool,
    rotations: str | None = None,
    scales: str | None = None,
):
    from handvox.estimator.pipeline import HandPoseEstimator

    kw = {
        "device": device,
        "fast": not exact,
        "test_rotations_deg": _parse_numbers(rotations, "--rotations", "-20,20"),
        "test_scales": _parse_numbers(scales, "--scales", "0.9,1.1"),
    }
    if model is None:
        return HandPoseEstimator.default(**kw)
    return HandPoseEstimator.from_folder(model, **kw)


def _cmd_predict(args: argparse.Namespace) -> None:
    # Each command loads only what it runs (here torch, for the estimator).
    from handvox.cli.predict import collect_frames, predict_frames

    if not args.inputs and args.dataset is None:
        raise HandvoxError("give depth files or folders, or --dataset NAME:ROOT")
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    # Frames first: a bad input is reported before the model is loaded.
    frames = collect_frames(args.inputs, args.camera, args.dataset, args.limit)
    try:
        est = _load_estimator(args.model, args.device, args.exact, args.rotations, args.scales)
    except ValueError as e:  # a rotation of 0, a scale of 1, inf or NaN
        raise HandvoxError(f"--rotations/--scales: {e}") from None
    summary = predict_frames(
        est,
        frames,
        args.out,
        formats=formats,
        overlay=args.overlay,
        joint_set=args.joint_set,
        batch_size=args.batch,
        skip_errors=args.skip_errors,
        progress=not args.quiet,
        model_name=str(args.model) if args.model else "default",
    )
    print(
        f"{summary.frames} frames, hand found in {summary.found}"
        + (f", {summary.errors} unreadable" if summary.errors else "")
        + "; wrote "
        + ", ".join(str(p) for p in summary.files)
        + (f" and {args.out / 'overlays'}/" if args.overlay else "")
    )


def _cmd_export(args: argparse.Namespace) -> None:
    from handvox.estimator.export import export_onnx

    res = export_onnx(args.model, args.out, check=not args.no_check, opset=args.opset)
    print(f"wrote {res.path}")
    if res.max_diff_mm is not None:
        print(f"ONNX Runtime vs torch on {res.batch} volumes: max joint difference "
              f"{res.max_diff_mm:.2e} mm")  # fmt: skip


def _cmd_average(args: argparse.Namespace) -> None:
    from handvox.estimator.weights import average_models

    out = average_models(args.models, args.out)
    print(f"wrote {out}: the mean of {len(args.models)} models' weights")


def _cmd_bench(args: argparse.Namespace) -> None:
    from handvox.cli.bench import BenchSettings, format_markdown, run_bench, write_json

    if args.model is None and not args.paper_arch:
        raise HandvoxError("give --model DIR or --paper-arch")
    try:
        batches = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise HandvoxError(f"--batch {args.batch!r}: expected sizes like 1,8") from None
    settings = BenchSettings(
        frames=args.frames,
        refine_frames=args.refine_frames,
        batches=batches,
        device=args.device,
        threads=args.threads,
        peak=not args.no_peak,
    )
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = run_bench(args.model, args.paper_arch, settings, args.depth, args.camera, log)
    print(format_markdown(result))
    if args.json:
        print(f"wrote {write_json(result, args.json)}")


def _add_inference_commands(sub) -> None:
    p = sub.add_parser("predict", help="3D joints of depth files, folders or a dataset")
    p.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        help="depth files (NYU RGB PNG, 16-bit PNG, MSRA .bin, .npy) or folders",
    )
    p.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    p.add_argument(
        "--camera",
        default="nyu",
        help="camera of the files: preset (nyu, icvl, msra) or fx,fy,cx,cy,w,h",
    )
    p.add_argument(
        "--dataset",
        help="also every frame of a dataset, NAME:ROOT[?key=value&...] (e.g. nyu:/data/nyu, "
        "its test split; nyu:/data/nyu?kinect=2, icvl:/data/icvl?split=train)",
    )
    p.add_argument("--limit", type=int, help="at most this many dataset frames")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--format",
        default="json,csv,txt",
        help="comma-separated: json, csv, txt (community uvd; frames without a hand "
        "are written as all-zero joints)",
    )
    p.add_argument("--overlay", action="store_true", help="also OUT/overlays/*.png")
    p.add_argument("--joint-set", help="write joints in this set (default: the model's)")
    p.add_argument("--batch", type=int, default=8, help="frames per network pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--exact",
        action="store_true",
        help="fp32 networks as trained (default on CPU: faster int8/bf16 variants)",
    )
    p.add_argument(
        "--rotations",
        help="test-time rotations about the viewing axis, degrees (--rotations=-20,20), whose "
        "predictions are averaged with the plain one; 'none' turns them off (default: the "
        "model's, the shipped model's -20,20; each costs one more TSDF and network pass)",
    )
    p.add_argument(
        "--scales",
        help="test-time cube scales (--scales=0.9,1.1; > 1: the hand looks smaller), averaged "
        "likewise; 'none' turns them off (default: the model's)",
    )
    p.add_argument(
        "--skip-errors",
        action="store_true",
        help="record unreadable files as not found instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="ONNX file of the networks (TSDF in, joints - COM out)")
    p.add_argument("--model", required=True, type=Path, help="model folder")
    p.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "average",
        help="a model folder holding the mean of several models' weights (checkpoints of one run)",
    )
    p.add_argument("models", nargs="+", type=Path, help="model folders with the same networks")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.set_defaults(func=_cmd_average)

    p = sub.add_parser("bench", help="time per stage and frames/s of the estimator")
    p.add_argument("--model", type=Path, help="model folder")
    p.add_argument(
        "--paper-arch",
        action="store_true",
        help="the paper's networks with random weights (timing only)",
    )
    p.add_argument("--frames", type=int, default=50, help="frames timed per configuration")
    p.add_argument(
        "--refine-frames",
        type=int,
        default=8,
        help="frames timed per configuration that runs the refinement net",
    )
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--depth",
        type=Path,
        help="depth frame (default: the real NYU frame beside the checkout, else a rendered hand)",
    )
    p.add_argument("--camera", default="nyu", help="camera of --depth")
    p.add_argument("--no-peak", action="store_true", help="skip measuring peak FLOP/s")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_bench)


def _cmd_transfer(args: argparse.Namespace) -> None:
    from handvox.synth.job import parse_shard
    from handvox.synth.transfer import POSES_NAME, run_transfer

    try:
        shard = parse_shard(args.shard)
        config = None
        overrides = _scene_overrides(args)
        if overrides or args.camera:
            from handvox.camera import Camera
            from handvox.synth.hand import HandSynthConfig

            if args.camera:
                camera = Camera.from_string(args.camera)
            else:
                camera = Camera.preset(args.dataset) if args.dataset else None
            if camera is None:
                raise ValueError("--dataset or --camera is needed with scene options")
            config = HandSynthConfig.for_camera(camera, **overrides)
        result = run_transfer(
            args.source,
            args.out,
            args.shapes,
            args.views,
            dataset=args.dataset,
            seed=args.seed,
            shard=shard,
            frames_limit=args.frames_limit,
            subjects=args.subjects,
            ik_method=args.ik,
            bvh=args.bvh,
            config=config,
            workers=args.workers,
            chunk_size=args.chunk_size,
            compression=args.compression,
            preview=args.preview,
            progress=not args.quiet,
        )
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    print(
        f"wrote {result.frames_written} frames in {len(result.chunks_written)} chunks to "
        f"{args.out} ({result.frames_per_second:.0f} frames/s); "
        f"{len(result.chunks_skipped)} chunks were already complete; poses in "
        f"{args.out}/{POSES_NAME}"
    )
    if args.bvh:
        print(f"wrote BVH files to {args.bvh}")
    if args.preview:
        print(f"wrote {args.out}/preview.png")


def _add_job_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that write synthetic datasets."""
    p.add_argument(
        "--shard",
        default="1/1",
        help="i/N, 1-based: write only chunks c with c %% N == i-1 (run N jobs, one per i)",
    )
    p.add_argument("--chunk-size", type=int, default=256, help="frames per chunk (the unit of "
                   "sharding and resumption)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="processes generating chunks")
    p.add_argument(
        "--compression",
        choices=["zlib", "none"],
        default="zlib",
        help="depth crops: zlib level 1 (small), or none (faster for full-frame scenes)",
    )
    p.add_argument("--forearm-prob", type=float, help="chance of a forearm (default 1)")
    p.add_argument("--body-prob", type=float, help="chance of a person behind the hand "
                   "(default 0.5)")  # fmt: skip
    p.add_argument("--wall-prob", type=float, help="chance of a wall behind (default 0.5)")
    p.add_argument("--noise", choices=["nyu", "kinect", "none"], help="sensor noise preset "
                   "(default nyu for 640x480 cameras; invalid pixels are stored as 0)")  # fmt: skip
    p.add_argument(
        "--hand-shapes",
        help="comma-separated base hand shapes to draw from (default all; e.g. leave one out "
        "of training to test on it)",
    )
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handvox", description="3D hand pose from depth with volumetric 3D CNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "evaluate",
        help="score predictions as the community scorer does; write metrics, table and plots",
    )
    p.add_argument(
        "--dataset",
        required=True,
        choices=["nyu", "icvl", "msra", "synthetic"],
        help="camera and joint set; synthetic: --gt is a handvox synth folder",
    )
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
    p.add_argument("--camera", default="nyu", help="preset (nyu, icvl, msra) or fx,fy,cx,cy,w,h")
    p.add_argument(
        "--generator",
        choices=["hand", "toy"],
        default="hand",
        help="hand: the kinematic hand renderer; toy: a cheap stand-in for tests",
    )
    _add_job_options(p)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "transfer",
        help="the paper's augmentation: labelled poses by IK on K hand shapes x V views",
    )
    p.add_argument("--from", dest="source", required=True, type=Path,
                   help="label file (community uvd format) or dataset folder")  # fmt: skip
    p.add_argument("--dataset", choices=["nyu", "icvl", "msra"],
                   help="camera and joint set of the labels (default: by joint count)")  # fmt: skip
    p.add_argument("--shapes", required=True, type=int, help="K hand shapes per source frame")
    p.add_argument("--camera", help="camera rendered: preset (nyu, icvl, msra) or "
                   "fx,fy,cx,cy,w,h (default: the source dataset's)")  # fmt: skip
    p.add_argument("--views", required=True, type=int, help="V random views per shape")
    p.add_argument("--out", required=True, type=Path, help="dataset folder")
    p.add_argument("--seed", type=int, default=0, help="frames depend on (seed, i) only")
    p.add_argument("--frames-limit", type=int, help="use only the first N source frames")
    p.add_argument("--subjects", type=int, default=1, help="hands to fit (frames clustered by "
                   "hand size; NYU's test set has 3 people)")  # fmt: skip
    p.add_argument("--ik", choices=["gradient", "pso"], default="gradient",
                   help="IK solver: Levenberg-Marquardt or the paper's particle swarm")  # fmt: skip
    p.add_argument("--bvh", type=Path, help="also write the recovered poses as BVH files here")
    _add_job_options(p)
    p.set_defaults(func=_cmd_transfer)

    _add_inference_commands(sub)
    add_train_command(sub)

    p = sub.add_parser(
        "demo",
        help="the main job: a model on the held-out synthetic test set, the real NYU frame and "
        "the published methods, in one report",
        description="Render the held-out synthetic test set, run a model on it (the shipped one "
        "unless --model), score it, and with ../shared beside the checkout also run the real NYU "
        "frame and score the published NYU and ICVL predictions; OUT/report.md links it all.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="report folder")
    p.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    p.add_argument("--frames", type=int, help="test frames to render (default: the protocol's)")
    p.add_argument("--testset", type=Path, help="where the test set goes (default OUT/testset)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> None:
    # Each command loads only what it runs (here all of it: torch, numba, matplotlib).
    from handvox.cli.demo import run_demo

    run_demo(args.out, args.model, args.frames, args.testset, args.workers, not args.quiet)


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
