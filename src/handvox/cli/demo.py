"""``make demo``: handvox end to end, with a report a person can look at.

1. Renders the held-out synthetic test set (:mod:`handvox.eval.protocol`: a hand shape and a seed
   never used in training, noisy depth, forearm / body / wall scenes).
2. Runs the shipped model (or ``--model DIR``) on it, the hand centre found from depth alone (the
   model's own way: the learned locator or the depth rule), and scores it: fraction-of-frames
   curve, per-joint errors, the 20/40/50 mm table, a grid of overlays (best, median and worst
   frames), time per stage.
3. Scores it on the cross-domain suite (:data:`handvox.eval.protocol.DOMAIN_SETS`: skinned
   hands, other sensors, an egocentric hand holding an object), a matrix in the report, and
   shows the recorded leave-one-out runs beside it (:data:`LEAVE_ONE_OUT`; not rerun).
4. Draws the skinned-hand contact sheet (:func:`handvox.synth.preview.skinned_sheet`): the
   LibHand skinned mesh hand beside the capsule hand in the same 20 poses.
5. With ``../shared`` beside the checkout: runs the model on real frames (19 RealSense SR305
   frames, the NYU test frame with its labels, a HANDS 2017 frame) drawn as contact sheets, and
   scores the published methods' NYU and ICVL predictions with handvox's evaluation toolkit.

Everything lands in ``--out`` (default ``demo-output/``); ``report.md`` there links the rest.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from handvox.atomic import atomic_path, write_text
from handvox.camera import Camera
from handvox.cli.show import hand_box
from handvox.estimator.locate import hand_finder
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.files import evaluate_files
from handvox.eval.metrics import score
from handvox.eval.protocol import (
    TEST_FRAMES,
    TEST_SEED,
    TEST_SHAPES,
    failures_as_far,
    make_test_set,
    predict_dataset,
    score_domain_sets,
)
from handvox.eval.report import (
    build_metrics,
    plot_domain_matrix,
    plot_leave_one_out,
    render_markdown,
    write_report,
)
from handvox.io.depth import read_depth
from handvox.io.predictions import load_xyz
from handvox.io.sensor import sensor_for
from handvox.joints import convert_joints, get_joint_set
from handvox.synth.preview import skinned_sheet
from handvox.viz.draw import (
    Box,
    SheetFrame,
    contact_sheet,
    hand_crop_box,
    render_frame,
    save_png,
    square_box,
    tile_images,
)

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
STAGES = ("segmentation", "tsdf", "refinement", "pose")
GRID_PER_ROW = 4
# Frames a set of the cross-domain suite gets in the demo: enough to rank the sets, at about half a
# minute for all seven on two cores.
DEMO_DOMAIN_FRAMES = 100
# The leave-one-out runs as recorded (benchmarks/leave_one_out.py's metrics.json and how it ran).
LEAVE_ONE_OUT = Path(__file__).resolve().parents[1] / "data" / "leave_one_out.json"

# The name the report gives the shipped model.
DEFAULT_NAME = "handvox default"


def find_shared(start: Path | None = None) -> Path | None:
    """``../shared`` next to the working directory, if it holds the reference data."""
    candidate = (start or Path.cwd()).resolve().parent / "shared"
    return candidate.resolve() if (candidate / "data").is_dir() else None


def run_published_evaluation(shared: Path, out: Path) -> dict[str, str]:
    """Score every published method on NYU and ICVL; returns dataset -> Markdown table."""
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
            partial=True,  # DeepPrior's ICVL file covers the first 702 frames, as published
        )
        tables[dataset] = report.markdown
    return tables


# --- the synthetic test set -------------------------------------------------------------------
def overlay_grid(ds, pred: np.ndarray, errors: np.ndarray, size_px: int = 256) -> np.ndarray:
    """Best, median and worst frames (a row each) by mean joint error, ground truth solid and
    prediction dashed. ``errors``: ``(N, J)`` mm."""
    frame_err = errors.mean(1)
    order = np.argsort(frame_err, kind="stable")
    n, k = len(order), GRID_PER_ROW
    mid = max(0, n // 2 - k // 2)
    rows = [("best", order[:k]), ("median", order[mid : mid + k]), ("worst", order[-k:][::-1])]
    images = []
    for label, picks in rows:
        for i in picks:
            rec = ds[int(i)]
            cam = rec.camera
            gt_uvd = cam.xyz_to_uvd(rec.joints_xyz.astype(np.float64))
            p = pred[int(i)]
            pred_uvd = None if np.isnan(p).any() else cam.xyz_to_uvd(p)
            title = f"{label}: frame {int(i)}, {frame_err[int(i)]:.1f} mm"
            images.append(
                render_frame(rec.depth, cam, ds.joint_set, gt_uvd, pred_uvd, size_px=size_px,
                             title=title)
            )  # fmt: skip
    return tile_images(images, k)


def timing_rows(timings: dict[str, float], frames: int, wall_s: float) -> list[list[str]]:
    """Markdown rows: stage, ms a frame, share of the total."""
    total = sum(timings.get(s, 0.0) for s in STAGES)
    rows = []
    for s in STAGES:
        t = timings.get(s, 0.0)
        rows.append([s, f"{1000 * t / frames:.2f}", f"{100 * t / total:.0f} %" if total else "-"])
    rows.append(["**all stages**", f"**{1000 * total / frames:.2f}**", "100 %"])
    rows.append(["wall clock, with reading frames", f"{1000 * wall_s / frames:.2f}",
                 f"{frames / wall_s:.1f} frames/s"])  # fmt: skip
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def synthetic_section(
    est: HandPoseEstimator,
    model_name: str,
    testset: Path,
    frames: int,
    workers: int,
    progress: bool,
    out: Path,
) -> tuple[list[str], dict]:
    """Render, run, score and draw the held-out synthetic test set; the report's lines."""
    t0 = time.perf_counter()
    ds = make_test_set(testset, frames, workers, progress=progress, joint_set=est.config.joint_set)
    render_s = time.perf_counter() - t0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pred, gt, found = predict_dataset(est, ds, batch=16, progress=progress, timings=timings)
    wall_s = time.perf_counter() - t0
    js = get_joint_set(est.config.joint_set)
    result = score(failures_as_far(pred, gt), gt, model_name, None, "xyz")
    metrics = build_metrics("synthetic", js, ds.camera, testset, [result])
    metrics["frames_without_hand"] = int((~found).sum())
    metrics["timings_ms_per_frame"] = {s: 1000 * timings.get(s, 0.0) / len(ds) for s in STAGES}
    syn = out / "synthetic"
    write_report(syn, metrics, render_markdown(metrics), [result], js)
    save_png(syn / "overlays.png", overlay_grid(ds, pred, result.errors))

    m = metrics["methods"][0]
    pct = m["percent_of_frames_within_mm"]
    # What is known of the shipped model's data only: a model of the user's is held out from
    # this set only if its own data avoided the seed and the shape.
    held_out = (
        "neither used in training"
        if model_name == DEFAULT_NAME
        else "held out by the protocol (the shipped model never trained on them; whether this "
        "model did depends on its data)"
    )
    lines = [
        "## Held-out synthetic test set",
        "",
        f"{len(ds)} frames rendered by handvox (seed {TEST_SEED}, hand shape "
        f"{', '.join(TEST_SHAPES)}: {held_out}; noisy depth of a NYU-like camera; "
        f"forearm always, body and wall each in half the frames) in {render_s:.1f} s, into "
        f"`{testset}`. The hand centre comes from {hand_finder(est.config.segment)} on "
        f"the noisy depth (no labels at input); frames without a hand found count as failures "
        f"({metrics['frames_without_hand']} here). Joints: {js.name}.",
        "",
        *_table(
            ["model", "mean error (mm)", "≤20 mm", "≤40 mm", "≤50 mm"],
            [
                [
                    model_name,
                    f"{m['mean_error_mm']:.2f}",
                    *(f"{pct[t]:.1f} %" for t in ("20", "40", "50")),
                ]
            ],
        ),  # fmt: skip
        "",
        "≤D mm: share of frames whose *worst* joint is within D mm. Per-joint table: "
        "[synthetic/report.md](synthetic/report.md).",
        "",
        "![fraction of frames within D mm](synthetic/curve.png)",
        "",
        "![per-joint mean error](synthetic/per_joint.png)",
        "",
        "Best, median and worst frames (rows), by mean joint error; ground truth solid, "
        "prediction dashed:",
        "",
        "![overlays](synthetic/overlays.png)",
        "",
        f"### Time per stage ({est.device.type}, batches of 16, "
        f"{'fast' if est.fast else 'fp32'} networks)",
        "",
        _passes_note(est),
        "",
        *_table(["stage", "ms a frame", "share"], timing_rows(timings, len(ds), wall_s)),
        "",
    ]
    summary = {"mean_error_mm": m["mean_error_mm"], "percent_within_mm": pct,
               "frames": len(ds), "frames_without_hand": metrics["frames_without_hand"],
               "timings_ms_per_frame": metrics["timings_ms_per_frame"],
               "frames_per_s": len(ds) / wall_s,
               "passes_per_frame": (1 + est.recentre) * len(est.test_views())}  # fmt: skip
    return lines, summary


def domain_section(
    est: HandPoseEstimator, model_name: str, out: Path, frames: int, workers: int, progress: bool
) -> tuple[list[str], dict]:
    """The cross-domain suite (:data:`handvox.eval.protocol.DOMAIN_SETS`): the report's lines
    and the scores per set."""
    results = score_domain_sets(est, out / "domains", frames, workers, progress)
    fig = plot_domain_matrix(results, f"{model_name} on the cross-domain suite")
    with atomic_path(out / "domains" / "matrix.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    rows = [[name, r["description"], f"{r['mean_error_mm']:.2f}",
             *(f"{r['percent_within_mm'][k]:.1f} %" for k in ("20", "40", "50")),
             str(r["frames_without_hand"])] for name, r in results.items()]  # fmt: skip
    lines = [
        "## Cross-domain suite",
        "",
        f"Held-out sets of {frames} frames, each changing what the training data showed: the "
        "hand's surface (capsules, or the LibHand skinned mesh), the sensor (structured light, "
        "time of flight, active stereo) and the scene (an egocentric hand holding an object, "
        "seen by a coded-light camera); the held-out hand shape, a seed of its own each "
        "(`handvox.eval.protocol.DOMAIN_SETS`). Generalisation, not in-domain fit, is what "
        "these measure.",
        "",
        *_table(
            ["set", "what", "mean error (mm)", "≤20 mm", "≤40 mm", "≤50 mm", "no hand"], rows
        ),  # fmt: skip
        "",
        "![cross-domain matrix](domains/matrix.png)",
        "",
        *leave_one_out_lines(out),
    ]
    return lines, results


def leave_one_out_lines(out: Path) -> list[str]:
    """The recorded leave-one-out runs (:data:`LEAVE_ONE_OUT`, written by
    ``benchmarks/leave_one_out.py``: four models trained for 17 minutes each, more than a demo
    can spend) as a table and ``domains/leave-one-out.png``; the report's lines."""
    if not LEAVE_ONE_OUT.is_file():
        return []
    doc = json.loads(LEAVE_ONE_OUT.read_text(encoding="utf-8"))
    scores, ratios = doc["scores"], doc["ratios"]
    held = {name: r["sets"] for name, r in ratios.items()}
    fig = plot_leave_one_out(scores, held, "Leave-one-out runs")
    with atomic_path(out / "domains" / "leave-one-out.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    sets = list(scores["all"])
    rows = [[name, *(f"{s[k]['mean_error_mm']:.1f}" for k in sets)] for name, s in scores.items()]
    rec = doc["recorded"]
    return [
        "### Leave-one-out (recorded, not rerun by the demo)",
        "",
        f"{rec['what']} Recorded {rec['date']} on {rec['machine']} by `{rec['command']}`; "
        "mean joint error (mm) per set, framed in the picture where a run was trained without "
        "what the set holds.",
        "",
        *_table(["run", *sets], rows),
        "",
        *(
            f"- without {n.removeprefix('no-')}: {r['without_mm']:.1f} mm against "
            f"{r['all_mm']:.1f} with it on {', '.join(r['sets'])} (x{r['ratio']:.2f})"
            for n, r in ratios.items()
        ),  # fmt: skip
        "",
        "![leave-one-out](domains/leave-one-out.png)",
        "",
    ]


def skinned_section(out: Path) -> tuple[list[str], float]:
    """The skinned-hand contact sheet (:func:`handvox.synth.preview.skinned_sheet`) as
    ``out/skinned/sheet.png``; the report's lines and the seconds it took."""
    t0 = time.perf_counter()
    save_png(out / "skinned" / "sheet.png", skinned_sheet())
    seconds = time.perf_counter() - t0
    lines = [
        "## The skinned hand",
        "",
        "The LibHand hand (libhand.org, Marin Saric, CC BY 3.0), a realistic mesh bound to "
        "handvox's kinematic hand and skinned by linear blend skinning (LBS), as the "
        "cross-domain suite's skinned sets render it (left of each pair), beside the capsule "
        "hand of the training data (right), in the same 20 gestures with the same bones and "
        "root, seen by the NYU camera; the ground-truth joints of forward kinematics drawn on "
        f"both ({seconds:.1f} s to draw).",
        "",
        "![the skinned-hand contact sheet](skinned/sheet.png)",
        "",
    ]
    return lines, seconds


def read_sr305(folder: Path) -> tuple[list[tuple[str, np.ndarray]], Camera]:
    """The SR305 frames of ``../shared/data/sr305`` as (``sequence/frame``, ``(H, W)`` mm), in
    recording order, and their camera (``camera.json``)."""
    # Its camera.json: the intrinsics and the 1/8 mm depth unit, read as predict reads them.
    sensor = sensor_for(folder, None, "", None)
    paths = sorted(folder.glob("*/*.png"), key=lambda q: (q.parent.name, int(q.stem)))
    frames = [(f"{q.parent.name}/{q.stem}", sensor.read(q)) for q in paths]
    return frames, sensor.camera


def _sheet_box(est: HandPoseEstimator, depth: np.ndarray, cam: Camera, *skeletons) -> Box:
    """A square around the hand found from depth (:func:`handvox.cli.show.hand_box`) and the
    skeletons drawn, so that a skeleton off the hand shows as such."""
    boxes = [hand_box(depth, cam, config=est.segment_config)]
    pts = [s for s in skeletons if s is not None and np.isfinite(s).all()]
    if pts:
        boxes.append(hand_crop_box(depth, cam, np.concatenate(pts)))
    b = np.asarray(boxes, dtype=np.float64)
    lo, hi = b[:, :2].min(0), b[:, 2:].max(0)
    centre = 0.5 * (lo + hi)
    return square_box(centre[0], centre[1], float((hi - lo).max()), cam.width, cam.height)


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _frame_note(pred, i: int) -> str:
    """A contact-sheet caption: the frame's confidence, or why it has no skeleton."""
    if pred.found[i]:
        c = pred.confidence[i]
        return f"confidence {c:.2f}" if np.isfinite(c) else ""
    return "not a hand (hand check)" if pred.reason[i].startswith("not a hand") else "no hand found"


def real_frames_section(est: HandPoseEstimator, shared: Path, out: Path) -> tuple[list[str], dict]:
    """The model on real sensors' frames: the 19 SR305 frames (unlabelled), the NYU test frame 1
    (labelled: an approximate error on NYU's 14 joints) and the HANDS 2017 frame (unlabelled),
    drawn as contact sheets ``real/sr305.png`` and ``real/others.png``; the report's lines."""
    t0 = time.perf_counter()
    data = shared / "data"
    js = est.config.joint_set
    sr_frames, sr_cam = read_sr305(data / "sr305")
    sr_pred = est(np.stack([d for _, d in sr_frames]), sr_cam)
    sheet = []
    for i, (name, depth) in enumerate(sr_frames):
        uvd = sr_pred.joints_uvd[i] if sr_pred.found[i] else None
        sheet.append(SheetFrame(name, depth, sr_cam, uvd, box=_sheet_box(est, depth, sr_cam, uvd),
                                note=_frame_note(sr_pred, i)))  # fmt: skip
    fig = contact_sheet(sheet, js, cols=5, title=f"Intel RealSense SR305: {len(sheet)} frames")
    _save_figure(fig, out / "real" / "sr305.png")

    # NYU test frame 1, with its labels; scored as before on NYU's 14 joints.
    nyu = data / "nyu"
    nyu_cam = Camera.preset("nyu")
    nyu_depth = read_depth(nyu / "depth_1_0000001.png")
    gt14 = load_xyz(nyu / "nyu_test_groundtruth_label.txt", nyu_cam, get_joint_set("nyu14"),
                    "uvd")[0][0]  # fmt: skip
    gt_uvd = nyu_cam.xyz_to_uvd(gt14)
    pred = est(nyu_depth, nyu_cam)
    nyu_summary: dict = {"found": bool(pred.found[0])}
    if pred.found[0]:
        xyz = pred.joints_xyz[0]
        as14 = convert_joints(xyz, js, "nyu14")
        err = float(np.linalg.norm(as14 - gt14, axis=-1).mean())
        com_err = float(np.linalg.norm(pred.com_xyz[0] - gt14.mean(0)))
        nyu_summary |= {"mean_error_nyu14_mm": err, "com_to_label_mean_mm": com_err}
        nyu_uvd, note = pred.joints_uvd[0], f"mean error {err:.1f} mm on NYU's 14 joints"
        nyu_text = (
            f"Its joints mapped to NYU's 14 (an approximate anatomical mapping: NYU's palm and "
            f"wrist points are not the canonical joints) lie **{err:.1f} mm** on average from "
            f"the labels; the final cube centre is {com_err:.1f} mm from the labels' mean."
        )
    else:
        nyu_uvd, note = None, "no hand found"
        nyu_text = f"No hand found: {pred.reason[0]}."
    h17_cam = Camera.preset("hands17")
    h17_depth = read_depth(data / "hands17" / "image_D00000030.png")
    h17 = est(h17_depth, h17_cam)
    h17_uvd = h17.joints_uvd[0] if h17.found[0] else None
    others = [
        SheetFrame("NYU test frame 1", nyu_depth, nyu_cam, nyu_uvd, gt_uvd, "nyu14",
                   _sheet_box(est, nyu_depth, nyu_cam, nyu_uvd, gt_uvd), note),
        SheetFrame("HANDS 2017 image_D00000030", h17_depth, h17_cam, h17_uvd,
                   box=_sheet_box(est, h17_depth, h17_cam, h17_uvd),
                   note="unlabelled" if h17_uvd is not None else "no hand found"),
    ]  # fmt: skip
    fig = contact_sheet(others, js, cols=2, panel_in=4.0, label_label="NYU label (14 joints)")
    _save_figure(fig, out / "real" / "others.png")
    seconds = time.perf_counter() - t0
    missed = [name for (name, _), f in zip(sr_frames, sr_pred.found, strict=True) if not f]
    rejected = [n for (n, _), r in zip(sr_frames, sr_pred.reason, strict=True)
                if r.startswith("not a hand")]  # fmt: skip
    lines = [
        "## Real frames",
        "",
        f"The model (trained on synthetic frames only) on real sensors' frames it never saw, "
        f"its {get_joint_set(js).name} joints dashed; {seconds:.1f} s for all "
        f"{len(sr_frames) + 2}, drawing included. Crops hold the hand found from depth and "
        "the skeletons drawn.",
        "",
        f"{len(sr_frames)} frames of one right hand from an Intel RealSense SR305 (coded light, "
        "0.125 mm depth steps, the recording's own intrinsics from `camera.json`), two sequences "
        "(an open palm turned in the image plane; fingers apart, not stretched), from "
        "L. Ondris's hand-recognition dataset under the MIT licence; it has gesture labels but "
        "no joint labels, so judge these by eye"
        + (f" (no hand found in {', '.join(missed)}" if missed else "")
        + (f"; the hand check's 'not a hand': {', '.join(rejected)}" if rejected else "")
        + (")" if missed else "")
        + ". Under each frame its confidence (the hand check's p(hand) times how sure the pose "
        "net is of the joints: its heatmaps' spread, or the test-time cubes' agreement; it ranks "
        "estimates by their error, docs/benchmarks.md, 'Confidence from one view'):",
        "",
        "![SR305 frames](real/sr305.png)",
        "",
        "Left: NYU hand pose test frame 1 (Kinect v1 structured light, CC BY 4.0), labelled: "
        f"its 14 label joints solid. {nyu_text} Right: one HANDS 2017 frame (a RealSense "
        "SR300-class camera, that release's published intrinsics; background removed by its "
        "makers; no licence stated with the frame, its origin not verified), unlabelled. One "
        "frame each: anecdotes, not scores.",
        "",
        "![NYU and HANDS 2017 frames](real/others.png)",
        "",
    ]
    summary = {
        "seconds": seconds,
        "sr305_frames": len(sr_frames),
        "sr305_without_hand": missed,
        "hands17_found": bool(h17.found[0]),
    }
    return lines, {"nyu_frame": nyu_summary, "real_frames": summary}


def _passes_note(est: HandPoseEstimator) -> str:
    """How many TSDF and network passes a frame takes, and why."""
    rot, scales = est.config.test_rotations_deg, est.config.test_scales
    n = (1 + est.recentre) * len(est.test_views())
    why = []
    if est.recentre:
        why.append(f"{est.recentre} re-centring pass(es)")
    if rot:
        angles = ", ".join(f"{a:g}°" for a in rot)
        why.append(f"test-time rotations of {angles} averaged with the plain cube")
    if scales:
        factors = ", ".join(f"{s:g}" for s in scales)
        why.append(f"test-time scales of {factors} averaged with the plain cube")
    up = est.config.upright_beyond_deg
    again = "" if up is None else (
        f" Hands pointing more than {up:g}° from up in the image are estimated once more on a "
        "cube turned to hold them upright."
    )  # fmt: skip
    if not why:
        return "One TSDF and network pass a frame." + again
    return f"{n} TSDF and network passes a frame ({'; '.join(why)})." + again


def run_demo(
    out: Path,
    model: Path | None = None,
    frames: int | None = None,
    testset: Path | None = None,
    workers: int = 2,
    progress: bool = True,
    domain_frames: int = DEMO_DOMAIN_FRAMES,
) -> dict:
    """``handvox demo``: the held-out synthetic test set through ``model`` (default: the
    shipped one), the cross-domain suite (``domain_frames`` a set; 0 skips it), the
    skinned-hand contact sheet, then, with ``../shared``, the real frames (SR305, NYU, HANDS
    2017) and the published methods; ``out/report.md`` and ``out/summary.json``. ``frames``:
    the protocol's test set size (:data:`handvox.eval.protocol.TEST_FRAMES`) unless given.
    Returns the summary.

    Raises:
        HandvoxError: a model folder that cannot be loaded.
    """
    out.mkdir(parents=True, exist_ok=True)
    frames = TEST_FRAMES if frames is None else frames
    testset = testset or out / "testset"
    start = time.perf_counter()
    if model:
        est = HandPoseEstimator.from_folder(model)
        model_name = model.name
    else:
        est = HandPoseEstimator.default()
        model_name = DEFAULT_NAME
    cfg = est.config
    lines = [
        "# handvox demo",
        "",
        f"Model: {model_name} ({cfg.joint_set}, {cfg.volume.size}^3 voxels of "
        f"{cfg.volume.voxel_mm:g} mm, {'with' if cfg.refine else 'no'} TSDF refinement, "
        f"{sum(p.numel() for p in est.pose_net.parameters()):,} pose-net parameters). "
        "What it is and how it was trained: docs/model-card.md.",
        "",
    ]
    print(f"handvox demo: held-out synthetic test set ({frames} frames)")
    syn_lines, summary = synthetic_section(est, model_name, testset, frames, workers, progress, out)
    lines += syn_lines
    m = summary
    print(f"  mean joint error {m['mean_error_mm']:.2f} mm; frames with every joint within "
          f"20/40/50 mm: {m['percent_within_mm']['20']:.1f} / {m['percent_within_mm']['40']:.1f}"
          f" / {m['percent_within_mm']['50']:.1f} %; {m['frames_per_s']:.0f} frames/s")  # fmt: skip

    if domain_frames:
        print(f"handvox demo: the cross-domain suite ({domain_frames} frames a set)")
        dom_lines, summary["domains"] = domain_section(est, model_name, out, domain_frames,
                                                       workers, progress)  # fmt: skip
        lines += dom_lines

    print("handvox demo: the skinned-hand contact sheet")
    skin_lines, summary["skinned_sheet_seconds"] = skinned_section(out)
    lines += skin_lines
    print(f"  {summary['skinned_sheet_seconds']:.1f} s")

    shared = find_shared()
    if shared is None:
        msg = ("../shared/data not found beside this checkout: the real frames (SR305, NYU, "
               "HANDS 2017) and the published results need it, so they are skipped.")  # fmt: skip
        print(f"handvox demo: {msg}")
        lines += [f"_{msg}_", ""]
    else:
        print("handvox demo: the real frames (SR305, NYU, HANDS 2017)")
        frame_lines, frame_summary = real_frames_section(est, shared, out)
        lines += frame_lines
        summary |= frame_summary
        print(f"  {frame_summary['real_frames']['seconds']:.1f} s")
        print(f"handvox demo: scoring published methods with the data in {shared}")
        tables = run_published_evaluation(shared, out)
        lines += [
            "## Published methods on NYU and ICVL",
            "",
            "Their published predictions, scored by handvox's evaluation toolkit as the community "
            "scorer does (full reports: [nyu/report.md](nyu/report.md), "
            "[icvl/report.md](icvl/report.md)). To score your own model on these datasets, see "
            "docs/reproduce.md.",
            "",
        ]
        for dataset, table in tables.items():
            body = table.split("\n## Per-joint")[0].split("\n", 2)[2].strip()
            lines += [f"### {dataset.upper()}", "", body, "", f"![{dataset}]({dataset}/curve.png)",
                      ""]  # fmt: skip
    total = time.perf_counter() - start
    summary["demo_seconds"] = total
    lines += [f"_Demo ran in {total:.0f} s on this machine._", ""]
    write_text(out / "report.md", "\n".join(lines))
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"handvox demo: wrote {out / 'report.md'} ({total:.0f} s)")
    return summary


def run(args: argparse.Namespace) -> None:
    """``handvox demo``."""
    domains = {} if args.domain_frames is None else {"domain_frames": args.domain_frames}
    run_demo(args.out, args.model, args.frames, args.testset, args.workers, not args.quiet,
             **domains)  # fmt: skip
