"""``handvox synth`` and ``handvox transfer``: synthetic datasets from the command line."""

from __future__ import annotations

import argparse

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.hand.shapes import SHAPE_NAMES
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.job import parse_shard, synthesize
from handvox.synth.preview import write_preview
from handvox.synth.transfer import POSES_NAME
from handvox.synth.transfer import run_transfer as transfer


def _scene_overrides(args: argparse.Namespace) -> dict:
    """HandSynthConfig fields given on the command line."""
    names = ("forearm_prob", "body_prob", "wall_prob", "noise", "sensor_camera", "view",
             "mesh_prob", "object_prob", "near_object_prob", "second_hand_prob",
             "no_hand_prob")  # fmt: skip
    out = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if getattr(args, "hide_held_object", False):
        out["held_object_shown"] = False
    if getattr(args, "sensor", None):
        picked = tuple(s.strip() for s in args.sensor.split(",") if s.strip())
        out["sensor"] = picked[0] if len(picked) == 1 else picked  # "all" is a name, not a family
    if getattr(args, "hand_shapes", None):
        picked = tuple(n.strip() for n in args.hand_shapes.split(",") if n.strip())
        unknown = [n for n in picked if n not in SHAPE_NAMES]
        if unknown or not picked:
            raise ValueError(
                f"--hand-shapes {args.hand_shapes!r}: choose among {', '.join(SHAPE_NAMES)}"
            )
        out["shapes"] = picked
    return out


def run(args: argparse.Namespace) -> None:
    """``handvox synth``."""
    try:
        camera = Camera.from_string(args.camera)
        shard = parse_shard(args.shard)
        config = None
        if args.generator == "hand":
            config = HandSynthConfig.for_camera(camera, **_scene_overrides(args))
        generator, info = make_generator(args.generator, camera, config)
        if min(args.frames, args.chunk_size, args.workers) < 1:
            raise ValueError(
                f"--frames, --chunk-size and --workers must be at least 1, got {args.frames}, "
                f"{args.chunk_size} and {args.workers}"
            )
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
        + (
            f", {len(result.chunks_damaged)} damaged ones rewritten"
            if result.chunks_damaged
            else ""
        )
    )
    if args.preview:
        print(f"wrote {write_preview(args.out)}")


def run_transfer(args: argparse.Namespace) -> None:
    """``handvox transfer``."""
    try:
        shard = parse_shard(args.shard)
        config = None
        overrides = _scene_overrides(args)
        if overrides.get("object_prob"):
            raise ValueError(
                "--object-prob: transfer keeps each source frame's labelled articulation, which "
                "closing the fingers on an object would replace"
            )
        if overrides or args.camera:
            if args.camera:
                camera = Camera.from_string(args.camera)
            else:
                camera = Camera.preset(args.dataset) if args.dataset else None
            if camera is None:
                raise ValueError("--dataset or --camera is needed with scene options")
            config = HandSynthConfig.for_camera(camera, **overrides)
        result = transfer(
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
