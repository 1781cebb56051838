"""``handvox live``'s loop timed and its smoothing measured, on rendered sequences.

    python benchmarks/live_loop.py --frames 300 --seeds 11,12,13,14,15 --out /tmp/live

Per seed, two sequences of one hand (:func:`handvox.synth.sequence.render_sequence`, NYU camera,
640x480, 30 frames/s): ``still`` (only the sensor's noise changes) and ``wave`` (swept 60 mm side
to side every 2 s, up to 188 mm/s). Each is written as a RealSense recording (``.db3`` through
pyrealsense2's software device, 0.125 mm units as an SR305 stores them) and played back through
the loop ``handvox live --headless`` runs (:func:`handvox.estimator.temporal.track`): read,
segment, TSDF, check, network, smoothing, no drawing. Reported:

- speed: frames/s of the whole loop (read included) and latency per frame (median, 95th
  percentile), per stage ms a frame, with the shipped model's test-time rotations and without
  (``--rotations none``), and without its re-centring pass too (``--recentre 0``, the fastest
  loop), after a warm-up of 10 frames;
- smoothing (the defaults, :class:`handvox.estimator.temporal.OneEuroConfig`): jitter of the still
  hand (RMS frame-to-frame joint motion) raw and smoothed, their ratio; lag of the smoothed waving
  hand behind the raw one (frames); mean joint error raw and smoothed against the rendered truth.

- prior (``--parts prior``): desk scenes with a second hand and objects near the hand, the hand
  waving; per frame, the learned locator's centre with and without the last frame's centre as its
  prior (:func:`handvox.estimator.locate.find_hand`'s ``near_xyz``; with it, read on a window about
  it, :data:`~handvox.estimator.locate.TRACK_MARGIN_MM`, or on the whole frame), against the true
  centre (the joints' mean): share of frames more than 40 mm off, mean distance.

- carry (``--parts carry``): the learned locator's network reading every K-th frame while the
  hand is tracked (``--every``; :class:`handvox.estimator.locate.HandTrack`, the frames between
  carry the hand it found): per sequence (still, wave, and a desk wave with a second hand and
  objects near the hand, as ``prior``'s), the raw joints' mean error against the truth, frames
  whose worst joint is over 40 mm off, and finding the hand's time a frame (median, mean; time it
  on a quiet machine). The shipped setting (:data:`handvox.estimator.temporal.LOCATOR_EVERY`)
  was chosen on seeds 1-3.

The speed and smoothing parts run ``no rotations`` also with the locator reading the whole frame
(``whole frame``: :data:`~handvox.estimator.locate.TRACK_MAX_AREA` 0), the loop before tracking
windows; the smoothing part reports its joint error against the truth. The speed part also runs
it with the locator's network reading every frame (``locator every frame``), and it runs the
waving hand's frames from an ``.npy`` stack in memory (``frames from memory``): the recording's
player decodes frames on a thread of its own, which shares the two cores with the loop.

Seeds 1-3 chose the filter's defaults; report others.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from handvox.camera import Camera
from handvox.estimator import locate
from handvox.estimator.locate import find_hand
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.segment import SegmentConfig
from handvox.estimator.temporal import LOCATOR_EVERY, OneEuroConfig, track
from handvox.eval.metrics import jitter_mm, lag_frames
from handvox.io.stream import StreamFrame, open_stream, write_realsense_recording
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.sequence import render_sequence

FPS = 30.0


@contextmanager
def _whole_frame(on: bool):
    """The locator reading the whole frame even with a prior (as before tracking windows)."""
    with mock.patch.object(locate, "TRACK_MAX_AREA", 0.0) if on else _nothing():
        yield


@contextmanager
def _nothing():
    yield


def _open(path: Path):
    """A recording (``.db3``), or an ``.npy`` stack of the same frames in mm (NYU camera)."""
    if path.suffix == ".npy":
        return open_stream(f"npy:{path}", camera=Camera.preset("nyu"), unit_mm=1.0, fps=FPS)
    return open_stream(f"bag:{path}")


def _run(
    path: Path,
    est: HandPoseEstimator,
    smoothing,
    warmup: int = 10,
    whole: bool = False,
    every: int = LOCATOR_EVERY,
):
    out = {"joints": [], "latency": [], "stages": {}}
    with _open(path) as stream, _whole_frame(whole):
        t_read = time.perf_counter()
        for k, tr in enumerate(
            track(stream, est, smoothing=smoothing, timed=True, locator_every=every)
        ):
            now = time.perf_counter()
            if k >= warmup:
                # the read: from the end of the last frame's work to this frame's arrival
                read_ms = (now - t_read) * 1000.0 - tr.latency_ms
                out["stages"].setdefault("read", []).append(read_ms)
                for s, v in tr.timings.items():
                    out["stages"].setdefault(s, []).append(v * 1000.0)
                out["latency"].append(tr.latency_ms)
                out["loop"] = out.get("loop", 0.0) + (now - t_read)
            n = tr.prediction.joints_xyz.shape[1]
            out["joints"].append(tr.joints if tr.joints is not None else np.full((n, 3), np.nan))
            t_read = time.perf_counter()
    out["joints"] = np.stack(out["joints"])
    return out


def _prior_rows(seeds: list[int], frames: int) -> list[dict]:
    cfg = HandSynthConfig(view="desk", second_hand_prob=1.0, near_object_prob=0.5, mesh_prob=0.5)
    seg = SegmentConfig(method="learned")
    rows = []
    for seed in seeds:
        seq = render_sequence(frames, FPS, "wave", seed=seed, config=cfg, amplitude_mm=80.0)
        truth = seq.joints.mean(axis=1)
        off = {"without": [], "with": [], "with, whole frame": []}
        last = {"with": None, "with, whole frame": None}
        for d, t in zip(seq.depth, truth, strict=True):
            got = {"without": find_hand(d, seq.camera, seg)}
            for k in last:
                with _whole_frame(k != "with"):
                    got[k] = find_hand(d, seq.camera, seg, near_xyz=last[k])
                last[k] = got[k].com_xyz if got[k].found else None
            for k, g in got.items():
                off[k].append(np.linalg.norm(g.com_xyz - t) if g.found else np.inf)
        row = {"seed": seed, **{k: float(np.mean(np.asarray(v) > 40.0)) for k, v in off.items()},
               **{f"{k} mean mm": float(np.mean(v)) for k, v in off.items()}}  # fmt: skip
        rows.append(row)
        print(json.dumps(row))
    return rows


def _carry_rows(seeds: list[int], frames: int, everys: list[int], est) -> list[dict]:
    desk = HandSynthConfig(view="desk", second_hand_prob=1.0, near_object_prob=0.5, mesh_prob=0.5)
    rows = []
    for seed in seeds:
        seqs = {
            "still": render_sequence(frames, FPS, "still", seed=seed),
            "wave": render_sequence(frames, FPS, "wave", seed=seed),
            "desk wave": render_sequence(
                frames, FPS, "wave", seed=seed, config=desk, amplitude_mm=80.0
            ),
        }
        for name, seq in seqs.items():
            stream = [StreamFrame(k, d.astype(np.float32), k / FPS, str(k))
                      for k, d in enumerate(seq.depth)]  # fmt: skip
            for every in everys:
                joints, seg = [], []
                for tr in track(stream, est, seq.camera, timed=True, locator_every=every):
                    n = tr.prediction.joints_xyz.shape[1]
                    joints.append(tr.joints if tr.joints is not None else np.full((n, 3), np.nan))
                    seg.append(tr.timings.get("segmentation", np.nan) * 1000.0)
                err = np.linalg.norm(np.stack(joints) - seq.joints, axis=-1)
                seg = np.asarray(seg[10:])  # after a warm-up, as the speed part
                row = {"seed": seed, "sequence": name, "every": every,
                       "error_mm": float(np.nanmean(err)),
                       "over_40mm": int((np.nan_to_num(err, nan=np.inf).max(1) > 40.0).sum()),
                       "frames": len(err), "segmentation_median_ms": float(np.median(seg)),
                       "segmentation_mean_ms": float(np.mean(seg))}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def _carry_table(rows: list[dict]) -> None:
    everys = sorted({r["every"] for r in rows})
    keys = sorted({(r["seed"], r["sequence"]) for r in rows})
    print("\n| seed, sequence | " + " | ".join(f"every {k}" for k in everys) + " |")
    for key in keys:
        got = {r["every"]: r for r in rows if (r["seed"], r["sequence"]) == key}
        cells = [f"{got[k]['error_mm']:.2f} ({got[k]['over_40mm']})" for k in everys]
        print(f"| {key[0]}, {key[1]} | " + " | ".join(cells) + " |")
    mean = {k: np.mean([r["error_mm"] for r in rows if r["every"] == k]) for k in everys}
    print("| **mean** (frames over 40 mm) | " + " | ".join(
        f"**{mean[k]:.2f}** ({sum(r['over_40mm'] for r in rows if r['every'] == k)})"
        for k in everys) + " |")  # fmt: skip
    for stat in ("median", "mean"):
        print(f"| finding the hand, {stat} ms | " + " | ".join(
            f"{np.median([r[f'segmentation_{stat}_ms'] for r in rows if r['every'] == k]):.2f}"
            for k in everys) + " |")  # fmt: skip


def _error(joints: np.ndarray, truth: np.ndarray) -> float:
    return float(np.nanmean(np.linalg.norm(joints - truth, axis=-1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seeds", default="11,12,13,14,15")
    ap.add_argument("--model", type=Path, help="default: the shipped model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parts", default="speed,smoothing",
                    help="speed (time it on a quiet machine), smoothing, prior, carry")  # fmt: skip
    ap.add_argument("--every", default="1,2,3,4,5,6", help="carry: frames per network read")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = set(args.parts.split(","))
    if args.model is None:
        make = HandPoseEstimator.default
    else:

        def make(**k):
            return HandPoseEstimator.from_folder(args.model, **k)

    settings = {"model's rotations": make(), "no rotations": make(test_rotations_deg=()),
                "no rotations, no re-centring": make(test_rotations_deg=(), recentre=0),
                "no rotations, whole frame": make(test_rotations_deg=()),
                "no rotations, locator every frame": make(test_rotations_deg=()),
                "no rotations, frames from memory": make(test_rotations_deg=()),
                "no rotations, one locator phase": make(test_rotations_deg=(),
                                                        locator_phases=1)}  # fmt: skip
    results = {"seeds": seeds, "frames": args.frames, "speed": {}, "smoothing": []}
    speed: dict[str, dict[str, list]] = {
        k: {"latency": [], "fps": [], "stages": {}} for k in settings
    }
    if "carry" in parts:
        everys = [int(k) for k in args.every.split(",")]
        results["carry"] = _carry_rows(seeds, args.frames, everys, settings["no rotations"])
        _carry_table(results["carry"])
    if "prior" in parts:
        results["prior"] = _prior_rows(seeds, args.frames)
        keys = ("without", "with", "with, whole frame")
        print("\n| seed | frames > 40 mm off (mean mm): without prior | with, window | with, "
              "whole frame |")  # fmt: skip
        for r in results["prior"]:
            print(f"| {r['seed']} | " + " | ".join(
                f"{100 * r[k]:.1f} % ({r[k + ' mean mm']:.1f})" for k in keys) + " |")  # fmt: skip
    for seed in seeds if parts & {"speed", "smoothing"} else ():
        paths = {}
        truth = {}
        for motion in ("still", "wave"):
            seq = render_sequence(args.frames, FPS, motion, seed=seed)
            paths[motion] = write_realsense_recording(
                args.out / f"{motion}-{seed}.db3", seq.depth, seq.camera, 0.125, FPS
            )
            truth[motion] = seq.joints
            if motion == "wave":  # the same frames without a reader's thread beside the loop
                np.save(args.out / f"wave-{seed}.npy", seq.depth.astype(np.float32))
        # speed: the waving hand, both settings, raw joints and the default smoothing alike
        for name, est in settings.items() if "speed" in parts else ():
            path = paths["wave"]
            if "memory" in name:
                path = args.out / f"wave-{seed}.npy"
            every = 1 if "locator every frame" in name else LOCATOR_EVERY
            r = _run(path, est, OneEuroConfig(), whole="whole" in name, every=every)
            speed[name]["latency"] += r["latency"]
            speed[name]["fps"].append(len(r["latency"]) / r["loop"])
            for s, v in r["stages"].items():
                speed[name]["stages"].setdefault(s, []).extend(v)
        if "smoothing" not in parts:
            continue
        est = settings["model's rotations"]
        row = {"seed": seed}
        for motion in ("still", "wave"):
            raw = _run(paths[motion], est, None)["joints"]
            smooth = _run(paths[motion], est, OneEuroConfig())["joints"]
            whole = _run(paths[motion], est, None, whole=True)["joints"]
            row[motion] = {
                "raw_error": _error(raw, truth[motion]),
                "smoothed_error": _error(smooth, truth[motion]),
                "whole_frame_raw_error": _error(whole, truth[motion]),
            }
            if motion == "still":
                row[motion].update(jitter_raw=jitter_mm(raw), jitter_smoothed=jitter_mm(smooth),
                                   ratio=jitter_mm(raw) / jitter_mm(smooth))  # fmt: skip
            else:
                row[motion]["lag_frames"] = lag_frames(smooth, raw)
        results["smoothing"].append(row)
        print(json.dumps(row))
    if "speed" in parts:
        _speed_table(speed, results)
    if "smoothing" in parts:
        _smoothing_table(results)
    (args.out / "live_loop.json").write_text(json.dumps(results, indent=1))


def _speed_table(speed: dict, results: dict) -> None:
    print("\n| setting | frames/s (loop) | latency median / p95 ms | " + " | ".join(
        f"{s} ms" for s in speed["no rotations"]["stages"]) + " |")  # fmt: skip
    for name, s in speed.items():
        lat = np.asarray(s["latency"])
        st = {k: float(np.median(v)) for k, v in s["stages"].items()}
        results["speed"][name] = {
            "fps": float(np.median(s["fps"])),
            "latency_median": float(np.median(lat)),
            "latency_p95": float(np.percentile(lat, 95)),
            "stages": st,
        }
        print(f"| {name} | {np.median(s['fps']):.1f} | {np.median(lat):.1f} / "
              f"{np.percentile(lat, 95):.1f} | " + " | ".join(f"{v:.2f}" for v in st.values())
              + " |")  # fmt: skip


def _smoothing_table(results: dict) -> None:
    print("\n| seed | still: jitter raw / smoothed mm (ratio) | wave: lag frames | "
          "error raw / smoothed mm (still; wave) | raw, whole frame (still; wave) |")  # fmt: skip
    for r in results["smoothing"]:
        s, w = r["still"], r["wave"]
        errors = (f"{s['raw_error']:.1f} / {s['smoothed_error']:.1f}; "
                  f"{w['raw_error']:.1f} / {w['smoothed_error']:.1f}")  # fmt: skip
        whole = f"{s['whole_frame_raw_error']:.1f}; {w['whole_frame_raw_error']:.1f}"
        print(f"| {r['seed']} | {s['jitter_raw']:.2f} / {s['jitter_smoothed']:.2f} "
              f"({s['ratio']:.1f}x) | {w['lag_frames']:.2f} | {errors} | {whole} |")  # fmt: skip


if __name__ == "__main__":
    main()
