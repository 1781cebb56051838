"""``handvox`` command line: every command's arguments, and the dispatch to the module that runs
it (``handvox.cli.<module>.run...``, a thin layer over the library).

A command's module is imported only when that command runs, so ``handvox --help`` and argument
errors answer without loading torch, numba and matplotlib, which take seconds.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from handvox import __version__
from handvox.errors import HandvoxError


def _locator_phases(p: argparse.ArgumentParser, help: str) -> None:
    """``--locator-phases`` (``SegmentConfig.locator_phases``; two would never change an answer)."""
    p.add_argument("--locator-phases", type=int, choices=[1, 4], help=help)


def _other_min_heat(p: argparse.ArgumentParser) -> None:
    """``--other-min-heat`` (``SegmentConfig.other_min_heat``)."""
    p.add_argument(
        "--other-min-heat",
        type=float,
        metavar="SHARE",
        help="with the learned locator: a second candidate holding at least this share of its "
        "heat (e.g. 0.001) is weighed against the first by the left-or-right classifier, and the "
        "hand --hand names is kept (another person's hand, or your other one, in view); 0: "
        "never; not with --hand auto (default: the model's)",
    )


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
        help="camera of the files: preset (nyu, icvl, msra, sr305, hands17) or "
        "fx,fy,cx,cy,w,h; without it, a camera.json beside the frames (or in the folder "
        "above); neither is an error",
    )
    p.add_argument(
        "--hand",
        choices=["right", "left", "auto"],
        help="the hand the frames show (default right, said in the output and recorded per "
        "frame): a left hand's frames are mirrored in and its joints mirrored back; auto: a "
        "left-or-right classifier decides per frame (said, with how well it was measured)",
    )
    p.add_argument(
        "--depth-unit",
        help="unit of the files' depth values: mm, m, cm, 0.125mm (RealSense SR300/SR305), "
        "0.25mm (L515), ... (default: the camera.json's depth_unit_mm, else mm; values that "
        "look like another unit are an error)",
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
        "model's: the shipped model runs one view; each costs one more TSDF and network pass)",
    )
    p.add_argument(
        "--scales",
        help="test-time cube scales (--scales=0.9,1.1; > 1: the hand looks smaller), averaged "
        "likewise; 'none' turns them off (default: the model's)",
    )
    p.add_argument(
        "--upright",
        help="a hand pointing further than this from up in the image (degrees) is estimated "
        "again on a cube turned to hold it upright; 'none': never (default: the model's)",
    )
    p.add_argument(
        "--recentre",
        type=int,
        help="passes more with the cube re-centred on the joints just estimated (0: none; "
        "default: the model's: the shipped model runs one; each costs one more TSDF and "
        "network pass)",
    )
    p.add_argument(
        "--segment",
        choices=["depth", "learned"],
        help="how the hand is found: depth (the nearest object's end) or learned (the shipped "
        "hand locator: objects in or near the hand, arms from the border, tables, two hands); "
        "default: the model's",
    )
    _locator_phases(
        p,
        "with the learned locator: the grid sampling phases each frame is read at; 4 outvotes "
        "a near tie that one phase decides (a head beside a raised hand) at several times a "
        "read's cost; 1 is the fastest (default: the model's; the shipped model's is 4)",
    )
    _other_min_heat(p)
    p.add_argument(
        "--no-hand-check",
        action="store_true",
        help="estimate every frame segmentation finds: no 'not a hand' from the shipped hand "
        "check, no p_hand (the confidences are then the pose net's certainty alone)",
    )
    p.add_argument(
        "--skip-errors",
        action="store_true",
        help="record unreadable files as not found instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run="handvox.cli.predict:run")

    p = sub.add_parser(
        "live",
        help="joints of a depth camera, recording or frame sequence, frame by frame, smoothed",
        description="Estimate every frame of a stream (handvox.io.stream): a RealSense "
        "(realsense[:SERIAL]), a RealSense recording (bag:FILE), an OpenNI2 device "
        "(openni2[:URI]), an Azure Kinect (k4a[:INDEX]) or its recording (k4a:FILE), a folder of "
        "depth files or an (N, H, W) .npy stack. One JSON line a frame; Ctrl-C ends the run and "
        "completes the outputs.",
    )
    p.add_argument("--source", required=True, help="where the frames come from (above)")
    p.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    p.add_argument(
        "--camera",
        help="camera of a file sequence (preset or fx,fy,cx,cy,w,h; default its camera.json); "
        "devices and recordings report their own",
    )
    p.add_argument(
        "--depth-unit",
        help="unit of a file sequence's values (mm, m, 0.125mm, ...; default its camera.json's, "
        "else mm); devices and recordings report their own",
    )
    p.add_argument(
        "--fps",
        type=float,
        help="frame rate of a file sequence (its time stamps, for the smoothing and --bvh); a "
        "camera's requested rate",
    )
    p.add_argument(
        "--hand",
        choices=["right", "left", "auto"],
        help="the hand the frames show (default right, said on standard error and in every "
        "JSON line)",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no window; JSON lines to standard output unless --jsonl says where",
    )
    p.add_argument(
        "--viewer",
        choices=["opencv", "rerun", "none"],
        default="opencv",
        help="without --headless: OpenCV window (default) or rerun's 3D viewer",
    )
    p.add_argument("--jsonl", help="write the JSON lines to this file ('-': standard output)")
    p.add_argument(
        "--record",
        type=Path,
        help="also record the stream and its lines as a file sequence in this folder",
    )
    p.add_argument(
        "--bvh",
        type=Path,
        help="at the end, the sequence solved to joint angles as a BVH animation (a right "
        "hand's: not with --hand left or auto)",
    )
    p.add_argument("--frames", type=int, help="stop after this many frames")
    p.add_argument("--no-smooth", action="store_true", help="the joints as estimated, unfiltered")
    p.add_argument(
        "--min-cutoff",
        type=float,
        default=1.0,
        help="One Euro filter: cut-off of a still joint, Hz (default 1; lower: smoother)",
    )
    p.add_argument(
        "--beta",
        type=float,
        default=0.02,
        help="One Euro filter: cut-off added per mm/s of speed (default 0.02; higher: "
        "less lag in motion)",
    )
    p.add_argument(
        "--rotations",
        help="test-time rotations, degrees (default: the model's; 'none' for the fastest loop)",
    )
    p.add_argument(
        "--upright",
        help="re-estimate hands pointing further than this from up, degrees, on a turned cube "
        "(default: the model's; 'none': never)",
    )
    p.add_argument(
        "--recentre",
        type=int,
        help="passes more on a cube re-centred on the joints just estimated (default: the "
        "model's; 0 for the fastest loop)",
    )
    p.add_argument("--segment", choices=["depth", "learned"], help="default: the model's")
    _locator_phases(
        p,
        "grid sampling phases of a frame read without a prior (the first, or one whose last "
        "hand is too old to steer it); tracked frames read once (default: the model's)",
    )
    _other_min_heat(p)
    p.add_argument(
        "--locator-every",
        type=int,
        help="while a hand is tracked, the learned locator's network reads every this many "
        "frames and the frames between carry the hand it found (default: handvox's, printed "
        "at the start; 1: every frame)",
    )
    p.add_argument("--no-hand-check", action="store_true", help="no 'not a hand' check")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--exact", action="store_true", help="fp32 networks as trained")
    p.set_defaults(run="handvox.cli.live:run")

    p = sub.add_parser("export", help="ONNX file of the networks (TSDF in, joints - COM out)")
    p.add_argument("--model", required=True, type=Path, help="model folder")
    p.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    p.set_defaults(run="handvox.cli.models:run_export")

    p = sub.add_parser(
        "average",
        help="a model folder holding the mean of several models' weights (checkpoints of one run)",
    )
    p.add_argument("models", nargs="+", type=Path, help="model folders with the same networks")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument(
        "--bn-run",
        type=Path,
        help="run folder whose training data recompute the batch-norm statistics (default: "
        "the run folder above the first model)",
    )
    p.add_argument(
        "--bn-batches",
        type=int,
        default=100,
        help="training batches for the batch-norm statistics (0: keep the averaged ones)",
    )
    p.set_defaults(run="handvox.cli.models:run_average")

    p = sub.add_parser(
        "calibrate",
        help="set a dense-head model's per-joint confidence from validation frames",
        description="From the heatmap spreads and joint errors on hand frames of the --data "
        "folders (validation frames: never the test set), the spread at which each joint's "
        "confidence halves (EstimatorConfig.joint_spread_mm; handvox.train.confidence); "
        "rewrites MODEL/config.json.",
    )
    p.add_argument("--model", required=True, type=Path, help="model folder (dense head)")
    p.add_argument("--data", action="append", required=True, type=Path,
                   help="synthetic validation folder (repeat)")  # fmt: skip
    p.add_argument("--frames", type=int, default=600, help="hand frames in all (default 600)")
    p.set_defaults(run="handvox.cli.models:run_calibrate")

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
    _locator_phases(p, "grid sampling phases of the segmentation column's reads (no prior)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run="handvox.cli.bench:run")


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
        "--sensor",
        help="sensor families drawn per frame instead of --noise: structured_light, "
        "time_of_flight, active_stereo, coded_light (comma-separated) or all",
    )
    p.add_argument(
        "--sensor-camera",
        action="store_true",
        default=None,
        help="with --sensor: measure at each drawn device's own resolution and field of view",
    )
    p.add_argument(
        "--hand-shapes",
        help="comma-separated base hand shapes to draw from (default all; e.g. leave one out "
        "of training to test on it)",
    )
    p.add_argument(
        "--view",
        choices=["nyu", "icvl", "generic", "egocentric", "desk", "wave"],
        help="where hands are seen from: third person (nyu, icvl, generic), a head-mounted "
        "camera (egocentric: hands may leave the image, the arm enters from below), a camera "
        "above a table (desk) or a person waving at the sensor (wave: the hand raised, the arm "
        "down out of the image) (default: by camera)",
    )
    p.add_argument("--mesh-prob", type=float, help="chance a frame's hand is the LibHand mesh "
                   "instead of the capsule hand (default 0)")  # fmt: skip
    p.add_argument("--object-prob", type=float, help="chance the hand holds an object, fingers "
                   "closed onto it (default 0; synth only)")  # fmt: skip
    p.add_argument("--hide-held-object", action="store_true", help="draw the grasp that "
                   "--object-prob asks for but leave the object out of the picture")  # fmt: skip
    p.add_argument("--near-object-prob", type=float, help="chance of an object near the hand, "
                   "not in it (default 0)")  # fmt: skip
    p.add_argument("--second-hand-prob", type=float, help="chance of a second, unlabelled hand "
                   "(default 0)")  # fmt: skip
    p.add_argument("--no-hand-prob", type=float, help="chance that a frame's hand is left out "
                   "(its arm, object and scene stay): frames that are not of a hand, for the hand "
                   "check (default 0)")  # fmt: skip
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handvox", description="3D hand pose from depth with volumetric 3D CNNs."
    )
    parser.add_argument("--version", action="version", version=f"handvox {__version__}")
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
    p.add_argument(
        "--partial",
        action="store_true",
        help="score files with fewer frames than the labels on the first frames they cover "
        "(published files that stop early); without it they are refused",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(run="handvox.cli.evaluate:run")

    p = sub.add_parser("show", help="draw a depth frame with its skeleton(s) to PNG")
    p.add_argument("depth", type=Path, help="depth file: NYU RGB PNG, 16-bit PNG, MSRA .bin, .npy")
    p.add_argument(
        "--camera",
        help="preset (nyu, icvl, msra, sr305, hands17) or fx,fy,cx,cy,w,h; without it, a "
        "camera.json beside the file; neither is an error",
    )
    p.add_argument("--depth-unit", help="unit of the file's values: mm, m, 0.125mm, ...")
    p.add_argument("--gt", type=Path, help="ground-truth label file (community format)")
    p.add_argument("--pred", type=Path, help="prediction label file (community format or xyz)")
    p.add_argument("--frame", type=int, default=0, help="0-based line of the label files to draw")
    p.add_argument("--joint-set", default=None, help="joint set of the labels (default: by count)")
    p.add_argument("--no-crop", action="store_true", help="draw the whole image")
    p.add_argument("--out", required=True, type=Path, help="output PNG")
    p.set_defaults(run="handvox.cli.show:run")

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
    p.set_defaults(run="handvox.cli.synth:run")

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
    p.set_defaults(run="handvox.cli.synth:run_transfer")

    _add_inference_commands(sub)
    _add_train_command(sub)

    p = sub.add_parser(
        "demo",
        help="the main job: a model on the held-out synthetic test set, the cross-domain suite, "
        "real frames and the published methods, in one report",
        description="Render the held-out synthetic test set, run a model on it (the shipped one "
        "unless --model), score it and the cross-domain suite, and with ../shared beside the "
        "checkout also run the real frames (19 RealSense SR305 frames, the NYU test frame, a "
        "HANDS 2017 frame) and score the published NYU and ICVL predictions; OUT/report.md "
        "links it all.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="report folder")
    p.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    p.add_argument("--frames", type=int, help="test frames to render (default: the protocol's)")
    p.add_argument("--testset", type=Path, help="where the test set goes (default OUT/testset)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument(
        "--domain-frames",
        type=int,
        help="frames a set of the cross-domain suite (default 100; 0: skip it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run="handvox.cli.demo:run")
    return parser


# What a user can do about an operating-system error while writing (or reading) a file.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "over the disk quota: free space or write elsewhere",
    errno.EFBIG: "larger than this process may write (ulimit -f) or the file system allows",
    errno.EROFS: "a read-only file system: write elsewhere",
    errno.EACCES: "no permission: write elsewhere or change the folder's permissions",
    errno.EPERM: "not permitted: write elsewhere or change the folder's permissions",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "this is a folder, not a file",
    errno.EEXIST: "a file of this name is in the way",
    errno.ENAMETOOLONG: "the name is too long for the file system",
}


def _os_error(e: OSError) -> str:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    text = e.strerror or str(e)
    hint = _OS_HINTS.get(e.errno)
    return f"{where + ': ' if where else ''}{text}" + (f" ({hint})" if hint else "")


# OpenMP's waiting. The command line owns its process, so it, not the library, sets it, and before
# the command's module imports torch (OpenMP reads it once, when torch loads). Passive waiting
# for the jobs that share the cores with other processes (rendering and data workers, IK
# solves): busy-waiting threads made small batched IK solves several times slower on a loaded
# 2-core machine. Inference in one process (live, predict, bench) runs a batch-1 frame as many
# small parallel regions, and passive waiting halved its frames/s on a quiet machine; OpenMP's
# own default spin (300,000 rounds) is as fast there but on a loaded one stalls frames for
# hundreds of ms. A short spin keeps nearly all of the speed and most of the robustness
# (libgomp's GOMP_SPINCOUNT, as PyTorch's Linux wheels use; docs/benchmarks.md, "OpenMP's wait
# policy"). Either variable set by the user wins.
_INFERENCE_COMMANDS = ("live", "predict", "bench")
INFERENCE_SPINCOUNT = 30000


def openmp_env(command: str) -> dict[str, str]:
    """The OpenMP settings the command line gives ``command`` where the environment has none."""
    if command in _INFERENCE_COMMANDS:
        return {"GOMP_SPINCOUNT": str(INFERENCE_SPINCOUNT)}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def main(argv: list[str] | None = None) -> int:
    # A path that is not valid UTF-8 (bytes from the file system, escaped by Python) is printed
    # escaped, never a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        os.environ.update(openmp_env(args.command))
    module, _, name = args.run.partition(":")
    try:
        code = getattr(importlib.import_module(module), name)(args)  # see the module docstring
    except HandvoxError as e:
        print(f"handvox {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only, a file where a folder should be: no traceback
        print(f"handvox {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"handvox {args.command}: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def _add_train_command(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the estimator (resumable; multi-GPU/multi-node with torchrun)",
        description="Train the volumetric estimator; defaults are the paper's (30 epochs, "
        "batch 6, Adam lr 1e-4, L2 loss, 60^3 x 5 mm volume). Rerunning with the same --out "
        "resumes. Multi-process: torchrun --nproc_per_node N -m handvox.cli train ...",
    )
    p.add_argument(
        "--data",
        action="append",
        help="training data KIND:ROOT[?key=value&...][@WEIGHT], KIND one of synthetic, nyu, "
        "icvl, msra (repeat to mix; weights share each epoch); nyu/icvl read the train split",
    )
    p.add_argument("--val-data", action="append", help="explicit validation data (same form)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--config",
        type=Path,
        help="TrainConfig file: TOML over a base (e.g. configs/default_model.toml) or JSON "
        "(e.g. a run's train_config.json); flags override it",
    )
    p.add_argument("--joint-set", help="joint set to train (default canonical21)")
    p.add_argument("--mode", choices=["pose", "refine", "finetune", "joint"])
    p.add_argument("--init", type=Path, help="model folder to start from (finetune: required)")
    p.add_argument("--refine-weight", type=float, help="TSDF loss weight (finetune/joint)")
    p.add_argument("--epochs", type=int, help="default 30")
    p.add_argument("--batch-size", type=int, help="per process; default 6")
    p.add_argument("--lr", type=float, help="Adam learning rate; default 1e-4")
    p.add_argument("--volume-size", type=int, help="voxels per axis of the 300 mm cube")
    p.add_argument("--small", action="store_true", help="CPU-sized networks, 32^3 volume")
    p.add_argument("--val-fraction", type=float, help="default 0.1 (without --val-data)")
    p.add_argument("--no-augment", action="store_true", help="no rotation/scale/COM jitter")
    p.add_argument("--workers", type=int, help="DataLoader worker processes; default 2")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (500)")
    p.add_argument("--val-every", type=int, help="steps between extra validations (0)")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the model at every validation in OUT/checkpoints/ (for handvox average)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (resumable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run="handvox.cli.train:run")

    p = sub.add_parser(
        "train-locator",
        help="train the hand locator (handvox.estimator.locate) on rendered scenes (resumable)",
        description="Render the locator's frames (handvox.train.locator.LOCATOR_SCENES) into "
        "OUT/data once, then train; OUT/best is a locator folder (the shipped one is "
        "src/handvox/data/locator). Rerunning with the same --out resumes.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", type=int, default=16000, help="training frames to render")
    p.add_argument("--val-frames", type=int, default=1000, help="validation frames to render")
    p.add_argument("--steps", type=int, help="training steps (default 6000)")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--val-every", type=int, help="steps between validations (default 500)")
    p.add_argument("--width", type=int, help="channels of the network's first level (default 16)")
    p.add_argument("--init", type=Path, help="a locator folder to start from (a fine-tune; "
                   "default: random weights)")  # fmt: skip
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    p.add_argument("--warmup-steps", type=int, help="steps of linear warm-up (default 200)")
    p.add_argument("--keep", type=float, help="weight of --teacher's outputs (default: "
                   "--init's) as a second target on frames of the scenes it was trained on "
                   "(learning without forgetting, distillation; default 0: off)")  # fmt: skip
    p.add_argument("--teacher", type=Path, help="the locator folder whose outputs --keep "
                   "weighs (default: --init; one of another width may teach)")  # fmt: skip
    p.add_argument("--flip-prob", type=float, help="share of training frames mirrored (default "
                   "0.5: left hands look like this, so the locator is handedness-free; 0: it "
                   "learns the labelled right hand; a left one is found by mirroring)")  # fmt: skip
    p.add_argument("--grid-width", type=int, help="grid cells across the image that the "
                   "locator reads (default 160; fewer: faster, coarser)")  # fmt: skip
    p.add_argument("--scenes", choices=["shipped", "wave"],
                   help="the scenes rendered (handvox.train.locator.SCENE_SETS; default "
                   "shipped: the shipped locator's; wave: those and people waving, not "
                   "shipped)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training")
    p.set_defaults(run="handvox.cli.train:run_locator")

    p = sub.add_parser(
        "train-check",
        help="train the hand check (is the cube on a hand; left or right) on synthetic folders",
        description="Segment every frame of the --data and --val folders (handvox synth with "
        "--no-hand-prob), build the check's cubes once (cached in OUT), then train; OUT is a "
        "hand check folder (the shipped one is src/handvox/data/hand_check).",
    )
    p.add_argument("--data", action="append", required=True, type=Path,
                   help="synthetic folder to train on (repeat)")  # fmt: skip
    p.add_argument(
        "--val",
        action="append",
        required=True,
        type=Path,
        help="synthetic folder to validate on: other seeds and hand shapes (repeat)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--model",
        type=Path,
        help="pose model whose segmentation finds the cube (default: the shipped one)",
    )
    p.add_argument("--steps", type=int, help="training steps (default 3000)")
    p.add_argument("--val-every", type=int, help="steps between validations (default 250)")
    p.add_argument(
        "--keep",
        type=float,
        default=0.995,
        help="share of the validation hands the threshold keeps (default 0.995)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run="handvox.cli.train:run_check")
