"""``handvox bench``: time per stage and frames/s of the whole estimator.

Stages, per frame, on one depth frame repeated to fill a batch:

* ``segmentation``: :func:`handvox.estimator.segment.segment_hand` less its COM step (validity,
  nearest object, hand region, back-projection, mask);
* ``com``: the centre of mass inside it (``handvox.estimator.segment._centre``: mean shift and
  wrist cut), timed by wrapping that function while ``segment_hand`` runs;
* ``tracking``: finding the hand again with its centre just found as the last frame's (a hand
  held still in a sequence: what ``handvox live`` pays a frame; the learned locator then reads a
  window about it, :data:`handvox.estimator.locate.TRACK_MARGIN_MM`; the depth rule ignores it);
* ``carried``: finding it again between two reads of the locator's network (a sequence's
  :class:`~handvox.estimator.locate.HandTrack`: ``handvox live`` reads one frame in
  :data:`~handvox.estimator.temporal.LOCATOR_EVERY` and carries the hand on the others; the depth
  rule ignores it);
* ``tsdf``: :func:`handvox.estimator.pipeline.hand_volumes` (masked projective TSDF);
* ``refinement`` and ``pose``: the two networks.

End to end (``HandPoseEstimator.__call__``) is timed with and without refinement (the latter is
the "pose path"), each for the exact fp32 networks and for ``fast`` (the CPU variants of
:mod:`handvox.estimator.cpu`). Every figure is the best and the median of several timed runs
after a warm-up: the machine may be shared, so the best is the least disturbed one.

Peak arithmetic, for the refinement's efficiency: a vector FMA loop (and on CPUs with AVX512-BF16
a ``vdpbf16ps`` loop) compiled at run time with the system C compiler and run on ``threads``
threads, i.e. what the vector units can do at the clock they actually run; also a large matmul
(``torch.mm``) and a large 3x3x3 convolution (oneDNN, as the networks use) for reference.
FLOPs are 2 x multiply-accumulates (:func:`handvox.estimator.networks.count_flops`).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import handvox.estimator.segment as _segment
from handvox.camera import Camera, as_camera
from handvox.errors import HandvoxError
from handvox.estimator.cpu import for_cpu_inference
from handvox.estimator.locate import HandTrack
from handvox.estimator.networks import count_flops
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.presets import paper_estimator
from handvox.estimator.temporal import LOCATOR_EVERY
from handvox.estimator.weights import Estimator, build_networks, load_model
from handvox.io.depth import read_depth
from handvox.synth.frame import frame_rng
from handvox.synth.generators import make_generator

STAGES = ("segmentation", "com", "tracking", "carried", "tsdf", "check", "refinement", "pose")
NYU_FRAME = Path(__file__).resolve().parents[3].parent / "shared/data/nyu/depth_1_0000001.png"


def synthetic_frame(camera: Camera) -> np.ndarray:
    """A rendered hand (handvox's synthetic generator, frame 0 of seed 0), ``(H, W)`` mm."""
    generator, _ = make_generator("hand", camera)
    return generator(0, frame_rng(0, 0)).raw


# --- timing -------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> list[float]:
    """Seconds of ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    out = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def _stats(seconds: list[float], per: int) -> dict[str, float]:
    """Best and median ms per frame of batches of ``per`` frames."""
    return {
        "best_ms": 1e3 * min(seconds) / per,
        "median_ms": 1e3 * statistics.median(seconds) / per,
    }


def _fps(seconds: list[float], per: int) -> dict[str, float]:
    return {"best_fps": per / min(seconds), "median_fps": per / statistics.median(seconds)}


@contextmanager
def _com_clock(acc: list[float]):
    """Adds the time spent in ``handvox.estimator.segment._centre`` to ``acc[0]`` while active."""
    original = _segment._centre

    def timed_centre(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t0

    _segment._centre = timed_centre
    try:
        yield
    finally:
        _segment._centre = original


def _front_stages(
    est: HandPoseEstimator, depth: np.ndarray, cam: Camera, repeats: int
) -> tuple[dict[str, dict], list, torch.Tensor]:
    """Segmentation, COM and TSDF times; the segmentations and volumes of the batch."""
    b = len(depth)
    total, com = [], []
    segs = est.segment(depth, cam)  # warm-up
    for _ in range(max(1, repeats)):
        acc = [0.0]
        with _com_clock(acc):
            t0 = time.perf_counter()
            segs = est.segment(depth, cam)
            total.append(time.perf_counter() - t0)
        com.append(acc[0])
    if not all(s.found for s in segs):
        raise RuntimeError(f"no hand found in the benchmark frame: {segs[0].reason}")
    seg = [t - c for t, c in zip(total, com, strict=True)]
    last = np.stack([g.com_xyz for g in segs])
    tracking = _timed(lambda: est.segment(depth, cam, last), repeats, est.device)
    hold = HandTrack(every=2**31)  # read once, then carried for as long as the hand holds
    est.segment(depth[:1], cam, last[:1], hold)
    carried = _timed(lambda: est.segment(depth, cam, last, hold), repeats, est.device)
    tsdf_s = _timed(lambda: est.volumes(depth, segs, cam), repeats, est.device)
    tsdf = est.volumes(depth, segs, cam)
    stages = {
        "segmentation": _stats(seg, b),
        "com": _stats(com, b),
        "tracking": _stats(tracking, b),
        "carried": _stats(carried, b),
        "tsdf": _stats(tsdf_s, b),
    }
    return stages, segs, tsdf


# --- peak arithmetic ----------------------------------------------------------------------------
_FMA_SOURCE = r"""
#include <stdint.h>
/* K independent accumulator chains: more than latency x pipes of any current x86 FMA unit,
   within the 32 (AVX-512) or 16 (AVX2) vector registers. */
#ifdef __AVX512F__
typedef float vec __attribute__((vector_size(64)));
#define K 24
#else
typedef float vec __attribute__((vector_size(32)));
#define K 12
#endif
int chains(void) { return K; }
int lanes(void) { return sizeof(vec) / sizeof(float); }
double fma_f32(int64_t iters) {
    vec a[K], b, c;
    for (int k = 0; k < K; k++) { for (int l = 0; l < lanes(); l++) a[k][l] = (float)k; }
    for (int l = 0; l < lanes(); l++) { b[l] = 0.999999f; c[l] = 1e-7f; }
    for (int64_t i = 0; i < iters; i++) {
        #pragma GCC unroll 24
        for (int k = 0; k < K; k++) a[k] = a[k] * b + c;  /* contracted to one FMA */
    }
    double s = 0; for (int k = 0; k < K; k++) for (int l = 0; l < lanes(); l++) s += a[k][l];
    return s;
}
#ifdef __AVX512BF16__
#include <immintrin.h>
double dp_bf16(int64_t iters) {
    __m512 a[K];
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0);
    for (int k = 0; k < K; k++) a[k] = _mm512_set1_ps((float)k);
    for (int64_t i = 0; i < iters; i++) {
        #pragma GCC unroll 24
        for (int k = 0; k < K; k++) a[k] = _mm512_dpbf16_ps(a[k], x, y);
    }
    __m512 s = a[0]; for (int k = 1; k < K; k++) s = _mm512_add_ps(s, a[k]);
    return (double)_mm512_reduce_add_ps(s);
}
int has_bf16(void) { return 1; }
#else
double dp_bf16(int64_t iters) { return -1.0; }
int has_bf16(void) { return 0; }
#endif
"""


def _fma_library() -> ctypes.CDLL | None:
    """The FMA loops above compiled for this CPU, or None without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="handvox-peak-"))
    src, lib = folder / "peak.c", folder / "peak.so"
    src.write_text(_FMA_SOURCE)
    cmd = [cc, "-O2", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC", str(src)]
    try:
        subprocess.run([*cmd, "-o", str(lib)], check=True, capture_output=True, timeout=60)
        dll = ctypes.CDLL(str(lib))
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the loaded library stays mapped
    for name in ("fma_f32", "dp_bf16"):
        getattr(dll, name).restype = ctypes.c_double
        getattr(dll, name).argtypes = [ctypes.c_int64]
    return dll


def _loop_gflops(fn: Callable[[int], float], flop_per_iter: int, threads: int) -> float:
    """Best GFLOP/s of ``threads`` threads running ``fn`` at once (ctypes releases the GIL)."""
    fn(1000)
    # Many short runs: on a shared machine the best one is the least disturbed.
    iters, best = 2_000_000, 0.0
    for _ in range(10):
        workers = [threading.Thread(target=fn, args=(iters,)) for _ in range(threads)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, threads * iters * flop_per_iter / (time.perf_counter() - t0) / 1e9)
    return best


def _mm_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    seconds = _timed(lambda: torch.mm(a, b), 6, torch.device("cpu"))
    return 2 * n**3 / min(seconds) / 1e9


def _conv_gflops(bf16: bool) -> float:
    """A 64 -> 64 channel 3x3x3 convolution on 32^3 (the refinement's kind of work, at a size
    where oneDNN does best), as the networks run it (channels_last, optionally bf16)."""
    conv = for_cpu_inference(torch.nn.Conv3d(64, 64, 3, padding=1), bf16=bf16)
    x = torch.randn(1, 64, 32, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    flops = count_flops(torch.nn.Conv3d(64, 64, 3, padding=1), tuple(x.shape))
    with torch.inference_mode():
        seconds = _timed(lambda: conv(x), 6, torch.device("cpu"))
    return flops / min(seconds) / 1e9


def measure_peak(threads: int) -> dict[str, Any]:
    """Achievable FLOP/s of this CPU on ``threads`` threads (GFLOP/s; None where unavailable)."""
    peak: dict[str, Any] = {"fma_fp32": None, "fma_bf16": None, "fma_lanes": None}
    dll = _fma_library()
    if dll is not None:
        dll.lanes.restype = dll.chains.restype = ctypes.c_int
        lanes, chains = dll.lanes(), dll.chains()
        peak["fma_lanes"] = lanes
        peak["fma_fp32"] = _loop_gflops(dll.fma_f32, chains * lanes * 2, threads)
        if dll.has_bf16():
            # vdpbf16ps: 16 lanes x 2 bf16 products each, accumulated in fp32
            peak["fma_bf16"] = _loop_gflops(dll.dp_bf16, chains * 32 * 2, threads)
    with torch.inference_mode():
        peak["matmul_fp32"] = _mm_gflops(torch.float32)
        peak["matmul_bf16"] = _mm_gflops(torch.bfloat16)
        peak["conv3d_fp32"] = _conv_gflops(False)
        peak["conv3d_bf16"] = _conv_gflops(True)
    return peak


# --- the benchmark ------------------------------------------------------------------------------
@dataclass
class BenchSettings:
    frames: int = 50  # frames timed per configuration of the pose path (rounded up to batches)
    refine_frames: int = 8  # the same, for anything that runs the refinement net
    batches: tuple[int, ...] = (1, 8)
    device: str = "cpu"
    threads: int = 2
    peak: bool = True
    locator_phases: int | None = None  # SegmentConfig.locator_phases; None: the model's


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "device": str(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load(model: str | Path | None, paper_arch: bool) -> tuple[Estimator, str]:
    if model is not None:
        return load_model(model), str(model)
    if not paper_arch:
        raise ValueError("give a model folder or paper_arch=True")
    torch.manual_seed(0)
    cfg = paper_estimator("nyu14", refine=True)  # the paper's estimator for NYU
    pose, refine = build_networks(cfg)
    return Estimator(cfg, pose.eval(), None if refine is None else refine.eval()), "paper-arch"


def run_bench(
    model: str | Path | None = None,
    paper_arch: bool = False,
    settings: BenchSettings | None = None,
    depth_path: str | Path | None = None,
    camera: Camera | str = "nyu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time every stage and the whole estimator; returns a JSON-able dict (see module doc).

    Args:
        model: a model folder; or ``paper_arch``: the paper's networks with random weights.
        depth_path: the frame to use; default the real NYU frame beside the checkout when present,
            else a rendered synthetic hand (``camera`` must fit the frame either way).
    """
    s = settings or BenchSettings()
    threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        return _run(model, paper_arch, s, depth_path, camera, log or (lambda _msg: None))
    finally:
        torch.set_num_threads(threads)


def _run(
    model: str | Path | None,
    paper_arch: bool,
    s: BenchSettings,
    depth_path: str | Path | None,
    camera: Camera | str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    device = torch.device(s.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HandvoxError(f"device {device}: CUDA is not available to this torch build")
    estimator, source = _load(model, paper_arch)
    cam = as_camera(camera)
    if depth_path is None and NYU_FRAME.is_file() and (cam.width, cam.height) == (640, 480):
        depth_path = NYU_FRAME
    frame = read_depth(depth_path) if depth_path is not None else synthetic_frame(cam)
    d = estimator.config.volume.size
    pose_flops = count_flops(estimator.pose_net, (1, 1, d, d, d))
    refine_flops = None
    if estimator.refine_net is not None:
        refine_flops = count_flops(estimator.refine_net, (1, 1, d, d, d))
    result: dict[str, Any] = {
        "machine": machine_info(device, s.threads),
        "model": {
            "source": source,
            "volume": d,
            "joints": estimator.config.pose.num_joints,
            "pose_gflop_per_frame": pose_flops / 1e9,
            "refine_gflop_per_frame": None if refine_flops is None else refine_flops / 1e9,
            "pose_params": sum(p.numel() for p in estimator.pose_net.parameters()),
        },
        "input": str(depth_path)
        if depth_path is not None
        else "synthetic (handvox.synth.job hand)",
        "settings": {k: v for k, v in vars(s).items()},
        "runs": [],
    }
    if s.peak and device.type == "cpu":
        log("measuring peak FLOP/s ...")
        result["peak_gflops"] = measure_peak(s.threads)
    result["machine"]["load_average_before"] = _load_average()
    phases = s.locator_phases
    variants = {
        "fp32": HandPoseEstimator(estimator, device=device, fast=False, locator_phases=phases),
        "fast": HandPoseEstimator(estimator, device=device, fast=True, locator_phases=phases),
    }
    seg = variants["fp32"].config.segment
    result["model"]["hand_finding"] = (
        f"the learned locator, a frame without a prior read at {seg.locator_phases} grid "
        "phase(s) (--locator-phases)"
        if seg.method == "learned"
        else "the depth rule"
    )
    if device.type != "cpu":
        del variants["fast"]  # the same networks: fast only changes CPU inference
    reference = None
    for batch in s.batches:
        depth = np.repeat(frame[None], batch, axis=0)
        reps = math.ceil(s.frames / batch)
        reps_refine = math.ceil(s.refine_frames / batch)
        front = None
        for name, est in variants.items():
            log(f"batch {batch}, {name} ({est.variants}) ...")
            if front is None:
                front = _front_stages(est, depth, cam, reps)
            stages, segs, tsdf = front
            stages = dict(stages)
            stages["check"] = None  # the hand check on the plain cube (none: no check)
            if est.check is not None:
                args = (tsdf, depth, segs, cam, np.stack([g.com_xyz for g in segs]))
                timed = _timed(lambda e=est, a=args: e.hand_check(*a), reps, device)
                stages["check"] = _stats(timed, batch)
            refined = tsdf
            if est.refine_net is not None:
                stages["refinement"] = _stats(
                    _timed(lambda e=est, t=tsdf: e.refine(t), reps_refine, device), batch
                )
                refined = est.refine(tsdf)
            else:
                stages["refinement"] = None
            stages["pose"] = _stats(_timed(lambda e=est, r=refined: e.pose(r), reps, device), batch)
            pose_only = est.without_refinement()
            pose_path = _timed(lambda p=pose_only, x=depth: p(x, cam), reps, device)
            run: dict[str, Any] = {
                "variant": name,
                "networks": est.variants,
                "batch": batch,
                "stages": stages,
                "pose_path": _fps(pose_path, batch),
            }
            if est.refine_net is not None:
                run["end_to_end"] = _fps(
                    _timed(lambda e=est, x=depth: e(x, cam), reps_refine, device), batch
                )
                achieved = refine_flops / (stages["refinement"]["best_ms"] / 1e3) / 1e9
                run["refine_gflops"] = achieved
            else:
                run["end_to_end"] = run["pose_path"]
            joints = est(frame, cam).joints_xyz[0]
            if reference is None:
                reference = variants["fp32"](frame, cam).joints_xyz[0]
            run["max_joint_diff_vs_fp32_mm"] = float(np.abs(joints - reference).max())
            result["runs"].append(run)
    result["machine"]["load_average_after"] = _load_average()
    if s.peak and device.type == "cpu":
        # Again, keeping the higher figure: a busy moment only ever lowers a peak.
        log("measuring peak FLOP/s again ...")
        again = measure_peak(s.threads)
        peak = result["peak_gflops"]
        for k, v in again.items():
            if v is not None and k != "fma_lanes":
                peak[k] = max(peak[k] or 0.0, v)
    _efficiency(result)
    return result


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on a shared machine), where known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _efficiency(result: dict[str, Any]) -> None:
    """Refinement's achieved GFLOP/s as a fraction of the matching peak (bf16 networks against
    the bf16 peak)."""
    peak = result.get("peak_gflops")
    if not peak:
        return
    for run in result["runs"]:
        if "refine_gflops" not in run:
            continue
        bf16 = "bf16" in run["networks"].get("refine", "")
        ref = peak["fma_bf16" if bf16 else "fma_fp32"]
        if ref is None:
            ref = peak["matmul_bf16" if bf16 else "matmul_fp32"]
        run["refine_peak_gflops"] = ref
        run["refine_fraction_of_peak"] = run["refine_gflops"] / ref


def _ms(x: dict | None) -> str:
    return "-" if x is None else f"{x['best_ms']:.2f} ({x['median_ms']:.2f})"


def _f(x: dict) -> str:
    return f"{x['best_fps']:.1f} ({x['median_fps']:.1f})"


def format_markdown(result: dict[str, Any]) -> str:
    """The tables ``handvox bench`` prints."""
    m, mod = result["machine"], result["model"]
    lines = [
        f"handvox bench, {m['date']}: {m['cpu']}, {m['logical_cpus']} logical CPUs, "
        f"{m['threads']} torch threads, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f"; load average before {m.get('load_average_before')}, "
        f"after {m.get('load_average_after')}",
        f"model: {mod['source']} (volume {mod['volume']}^3, {mod['joints']} joints, pose net "
        f"{mod['pose_gflop_per_frame']:.2f} GFLOP/frame"
        + (
            f", refinement {mod['refine_gflop_per_frame']:.1f} GFLOP/frame)"
            if mod["refine_gflop_per_frame"]
            else ")"
        ),
        f"input: {result['input']}",
        f"hand finding: {mod.get('hand_finding', '?')}",
        "",
        "ms per frame, best (median); frames/s best (median)",
        "",
        "| variant | batch | segmentation | COM | tracking | carried | TSDF | hand check "
        "| refinement | pose | pose path fps | end-to-end fps | joints vs fp32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        st = r["stages"]
        nets = ", ".join(f"{k}: {v}" for k, v in r["networks"].items())
        lines.append(
            f"| {r['variant']} ({nets}) | {r['batch']} | {_ms(st['segmentation'])} | "
            f"{_ms(st['com'])} | {_ms(st.get('tracking'))} | {_ms(st.get('carried'))} | "
            f"{_ms(st['tsdf'])} | "
            f"{_ms(st.get('check'))} | "
            f"{_ms(st['refinement'])} | "
            f"{_ms(st['pose'])} | {_f(r['pose_path'])} | {_f(r['end_to_end'])} | "
            f"{r['max_joint_diff_vs_fp32_mm']:.3f} mm |"
        )
    for r in result["runs"][:1]:
        st, k = r["stages"], LOCATOR_EVERY
        mean = {m: (st["tracking"][m] + (k - 1) * st["carried"][m]) / k for m in st["carried"]}
        lines += ["", f"a tracked stream (handvox live: the locator's network one frame in {k}) "
                      f"finds the hand in {_ms(mean)} ms a frame on average"]  # fmt: skip
    peak = result.get("peak_gflops")
    if peak:
        lines += ["", "peak GFLOP/s on these threads (best of two measurements):", ""]
        lines.append("| FMA loop fp32 | FMA loop bf16 | matmul fp32 | matmul bf16 | "
                     "conv3d fp32 | conv3d bf16 |")  # fmt: skip
        lines.append("| --- | --- | --- | --- | --- | --- |")
        cells = [
            "-" if peak[k] is None else f"{peak[k]:.0f}"
            for k in ("fma_fp32", "fma_bf16", "matmul_fp32", "matmul_bf16", "conv3d_fp32",
                      "conv3d_bf16")
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    eff = [r for r in result["runs"] if "refine_fraction_of_peak" in r]
    if eff:
        lines += ["", "refinement efficiency:", ""]
        for r in eff:
            lines.append(
                f"- {r['variant']} ({r['networks']['refine']}), batch {r['batch']}: "
                f"{r['refine_gflops']:.0f} GFLOP/s = {100 * r['refine_fraction_of_peak']:.0f} % "
                f"of {r['refine_peak_gflops']:.0f} GFLOP/s peak "
                f"({1 / r['refine_fraction_of_peak']:.2f}x from it)"
            )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def run(args: argparse.Namespace) -> None:
    """``handvox bench``."""
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
        locator_phases=args.locator_phases,
    )
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = run_bench(args.model, args.paper_arch, settings, args.depth, args.camera, log)
    print(format_markdown(result))
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
