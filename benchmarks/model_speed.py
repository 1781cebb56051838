"""Forward speed of the pose net and the refinement net on CPU, with inference remedies.

    .venv/bin/python benchmarks/model_speed.py [--threads 2] [--repeats 10] [--skip-refine]

For each net and batch size (1, 8): frames/s, ms a batch and achieved GFLOP/s (FLOPs = 2 x MACs
of conv and linear layers, from handvox.estimator.networks.count_flops). For the pose net, whose
first FC layer holds 27000 x 2048 = 55M weights (221 MB in fp32, read once per forward:
memory-bound at batch 1), it also times remedies and prints each one's largest deviation from fp32:

* fp32: eager, ``torch.inference_mode``
* channels_last_3d: conv weights (hence activations) NDHWC
* bf16: weights and input in bfloat16 (half the bytes; native on AVX512-BF16 / AMX CPUs)
* int8-linear: ``torch.ao.quantization.quantize_dynamic`` of the Linear layers (a quarter of the
  bytes; convs stay fp32)
* and combinations; all built by :func:`handvox.estimator.cpu.for_cpu_inference`.

The refinement net is timed in fp32, channels_last_3d and bf16+channels_last.

Times are the best and median of ``--repeats`` runs after a warm-up (the machine may be shared).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from handvox.estimator.cpu import for_cpu_inference
from handvox.estimator.networks import PoseNet, RefineNet, count_flops, layer_table

POSE_VARIANTS = [
    "fp32",
    "channels_last_3d",
    "bf16",
    "bf16+channels_last",
    "int8-linear",
    "int8-linear+channels_last",
]
REFINE_VARIANTS = ["fp32", "channels_last_3d", "bf16+channels_last"]


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def variants(net: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    options = {
        "fp32": None,
        "channels_last_3d": {},
        "bf16": {"channels_last": False, "bf16": True},
        "bf16+channels_last": {"bf16": True},
        "int8-linear": {"channels_last": False, "int8_linear": True},
        "int8-linear+channels_last": {"int8_linear": True},
    }
    return {k: net if options[k] is None else for_cpu_inference(net, **options[k]) for k in names}


def report(name: str, batch: int, flops: int, best: float, med: float) -> None:
    print(
        f"  {name:26s} batch {batch}: {batch / best:7.1f} frames/s best, "
        f"{batch / med:7.1f} median ({med * 1e3:8.1f} ms a batch), "
        f"{flops * batch / best / 1e9:6.1f} GFLOP/s"
    )


def pose_bench(shape: tuple[int, ...], repeats: int) -> None:
    pose = PoseNet().eval()
    pose_flops = count_flops(pose, shape)
    fc1 = next(r for r in layer_table(pose, shape) if r.kind == "Linear")
    print(
        f"pose net: {sum(p.numel() for p in pose.parameters()):,} parameters, "
        f"{pose_flops / 1e9:.3f} GFLOP a frame; first FC {fc1.params:,} parameters"
    )
    pose_models = variants(pose, POSE_VARIANTS)
    with torch.inference_mode():
        for batch in (1, 8):
            x = torch.rand(batch, *shape[1:]) * 2 - 1
            ref = pose(x)
            for name, model in pose_models.items():
                err = (model(x) - ref).abs().max().item()
                best, med = timed(lambda m=model, x=x: m(x), repeats)
                report(name, batch, pose_flops, best, med)
                print(f"  {'':26s} max |out - fp32| = {err:.2e}")
            feats = pose.features(x)
            best, med = timed(lambda x=x: pose.features(x), repeats)
            print(f"  {'(fp32 convs only)':26s} batch {batch}: {med * 1e3:8.1f} ms median")
            best, med = timed(lambda f=feats: pose.head(f), repeats)
            print(f"  {'(fp32 FC head only)':26s} batch {batch}: {med * 1e3:8.1f} ms median")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-refine", action="store_true")
    ap.add_argument("--skip-pose", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (1, 1, 60, 60, 60)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    if not args.skip_pose:
        pose_bench(shape, args.repeats)
    if args.skip_refine:
        return
    refine = RefineNet().eval()
    refine_flops = count_flops(refine, shape)
    print(
        f"refinement net: {sum(p.numel() for p in refine.parameters()):,} parameters, "
        f"{refine_flops / 1e9:.1f} GFLOP a frame"
    )
    refine_models = variants(refine, REFINE_VARIANTS)
    with torch.inference_mode():
        for batch in (1, 8):
            x = torch.rand(batch, *shape[1:]) * 2 - 1
            ref = refine(x)
            for name, model in refine_models.items():
                err = (model(x) - ref).abs().max().item()
                best, med = timed(lambda m=model, x=x: m(x), max(2, args.repeats // 4))
                report(name, batch, refine_flops, best, med)
                print(f"  {'':26s} max |out - fp32| = {err:.2e}")


if __name__ == "__main__":
    main()
