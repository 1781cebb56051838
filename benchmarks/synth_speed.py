"""Speed of the synthetic hand generator: per stage, and frames/s written to disk end to end.

Scenes: ``hand``: hand and forearm only; ``body+wall``: with a person behind the hand and a wall
(at the default 1.3-2.8 m, so part of the time beyond the NYU preset's 2 m range, as in NYU's
own frames); ``near wall``: body and a wall at 1.2-1.8 m (every pixel of the frame measured, the
noise model's worst case); ``default``: the defaults of
:class:`handvox.synth.hand_config.HandSynthConfig`.
The scene content options, each on the default scene mix: ``mesh`` (every hand the LibHand mesh),
``objects`` (every hand holding an object), ``mesh+objects``, ``near object``, ``second hand``;
and the views ``egocentric`` (hands holding objects, half of them meshes: the contact sheet's
command) and ``desk``. The first frame of a mesh job also builds the LibHand hand (~2 s a
process), part of the end-to-end start-up.

Stages (CPU ms a frame, measured in one process with one thread, as a worker runs):
pose+FK (shape and pose sampling, kinematics, markers, the in-view check), render (primitives,
ray casting, wall, part image), noise (:func:`handvox.synth.noise.add_sensor_noise`), write
(encoding the frame: crop, uint16, zlib; then the chunk's files). End to end: ``synthesize`` with
``--workers`` processes, as ``handvox synth`` runs it, timed wall-clock and by the CPU time of
all its processes. CPU time is the robust figure on a shared machine: "idle cores f/s" is what
that many otherwise idle cores give at the measured CPU cost a frame. The write stage deflates
with isal when it is installed; ``--stdlib-zlib`` times Python's zlib for the stage times (the
end-to-end job's workers use whatever is installed).

    .venv/bin/python benchmarks/synth_speed.py [--frames 1000] [--workers 2] [--scenes hand,...]
"""

from __future__ import annotations

import os

# As `handvox synth` runs (handvox.cli sets it before torch loads): OpenMP threads sleep
# instead of spinning. The job's workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from handvox.io import synthformat  # noqa: E402
from handvox.synth.frame import frame_rng  # noqa: E402
from handvox.synth.generators import make_generator  # noqa: E402
from handvox.synth.hand import hand_frame_generator, make_frame  # noqa: E402
from handvox.synth.hand_config import HandSynthConfig  # noqa: E402
from handvox.synth.job import _keep_freed_memory, _schema, _write_chunk, encode_frame, synthesize  # noqa: E402
from handvox.synth.scene import add_noise, render_hand_scene  # noqa: E402

SCENES = {
    "hand": dict(body_prob=0.0, wall_prob=0.0, forearm_prob=1.0),
    "body+wall": dict(body_prob=1.0, wall_prob=1.0, forearm_prob=1.0),
    "near wall": dict(
        body_prob=1.0, wall_prob=1.0, forearm_prob=1.0, wall_depth_mm=(1200.0, 1800.0)
    ),
    "default": {},
    "mesh": dict(mesh_prob=1.0),
    "objects": dict(object_prob=1.0),
    "mesh+objects": dict(mesh_prob=1.0, object_prob=1.0),
    "near object": dict(near_object_prob=1.0),
    "second hand": dict(second_hand_prob=1.0),
    "egocentric": dict(view="egocentric", object_prob=1.0, mesh_prob=0.5),
    "desk": dict(view="desk"),
}


def stage_times(config: HandSynthConfig, frames: int) -> dict[str, float]:
    """CPU ms a frame of each stage, in this process on one thread."""
    gen = hand_frame_generator(config)
    schema = _schema(gen(0, frame_rng(0, 0)), config.camera)  # also compiles the kernels
    acc = dict.fromkeys(("pose+FK", "render", "noise", "write"), 0.0)
    encoded = []
    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:
        for i in range(frames):
            rng = frame_rng(1, i)
            t0 = time.process_time()
            hand = gen.sample_hand(i, rng)
            t1 = time.process_time()
            scene = render_hand_scene(hand.joints["canonical21"], hand.bones, rng, config,
                                      pose=hand.pose, held=hand.held)  # fmt: skip
            t2 = time.process_time()
            raw = add_noise(scene, rng, config)
            t3 = time.process_time()
            encoded.append(encode_frame(make_frame(hand, scene, raw), i, schema, config.camera,
                                        "zlib"))  # fmt: skip
            t4 = time.process_time()
            for k, dt in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                acc[k] += dt
        t0 = time.process_time()
        (tmp / "chunks").mkdir()
        _write_chunk(tmp / "chunks", 0, 0, encoded)
        acc["write"] += time.process_time() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {k: v / frames * 1e3 for k, v in acc.items()}
    out["total"] = sum(out.values())
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _job(config: HandSynthConfig, frames: int, workers: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (this process and its workers) and bytes of one job."""
    gen, info = make_generator("hand", config.camera, config)
    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        synthesize(tmp, gen, config.camera, frames, seed=0, chunk_size=32, workers=workers,
                   generator_info=info, progress=False)  # fmt: skip
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return wall, cpu, size


def end_to_end(config: HandSynthConfig, frames: int, workers: int) -> dict[str, float]:
    """``synthesize`` into fresh folders: a job of ``frames`` frames and one of 2 chunks a
    worker, whose difference removes the start-up (spawning workers, imports, loading numba's
    cache, frame 0 for the schema). Returns frames/s (wall, whole job and after start-up), CPU
    ms a frame after start-up, what ``workers`` idle cores would give at that CPU cost, start-up
    seconds and MB a frame on disk."""
    small = 2 * workers * 32
    w0, c0, _ = _job(config, small, workers)
    w1, c1, size = _job(config, frames, workers)
    cpu_ms = (c1 - c0) / (frames - small) * 1e3
    return {"fps": frames / w1, "fps_steady": (frames - small) / max(w1 - w0, 1e-9),
            "cpu_ms": cpu_ms, "idle_fps": workers * 1e3 / cpu_ms, "start_s": w0,
            "mb": size / frames / 1e6}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000, help="frames of the end-to-end job")
    parser.add_argument("--stage-frames", type=int, default=200, help="frames for stage times")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scenes", default="hand,body+wall,near wall,default",
                        help=f"comma-separated, of: {', '.join(SCENES)}")  # fmt: skip
    parser.add_argument("--no-end-to-end", action="store_true", help="stage times only")
    parser.add_argument("--stdlib-zlib", action="store_true", help="stage times: not isal")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _keep_freed_memory()  # as synthesize does
    if args.stdlib_zlib:
        synthformat._deflater = zlib
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; 640x480 NYU camera; "
          f"deflate: {synthformat._deflater.__name__}")  # fmt: skip
    print("| scene | pose+FK | render | noise | write | total | 1 core f/s | job CPU ms/frame "
          f"| {args.workers} idle cores f/s | measured f/s (after start-up) "
          "| MB/frame |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.scenes.split(","):
        cfg = replace(HandSynthConfig(), **SCENES[name])
        st = stage_times(cfg, args.stage_frames)
        cells = " | ".join(f"{st[k]:.2f}" for k in ("pose+FK", "render", "noise", "write", "total"))
        row = f"| {name} | {cells} | {1e3 / st['total']:.0f} |"
        if args.no_end_to_end:
            print(row, flush=True)
            continue
        e = end_to_end(cfg, args.frames, args.workers)
        print(f"{row} {e['cpu_ms']:.2f} | {e['idle_fps']:.0f} | {e['fps']:.0f} "
              f"({e['fps_steady']:.0f}) | {e['mb']:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
