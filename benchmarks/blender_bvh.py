"""Does Blender load handvox's BVH as handvox means it? Run with Blender's Python module:

    pip install bpy==4.2.0 bvhio   # in a scratch environment: bpy is ~500 MB, Python 3.11 only
    python benchmarks/blender_bvh.py FILE.bvh

Imports FILE with Blender's own BVH importer (``import_anim.bvh``, axes kept as written: handvox
writes millimetres in the OpenCV camera frame) and, frame by frame, compares the world positions
of the armature's bone heads with those of an independent parser (bvhio). Prints a JSON line:
Blender's version, bones, frames, frame rate, and the largest distance (mm) between the two.
Not part of the test suite: bpy is too large for CI (docs/benchmarks.md, "Live").
"""

from __future__ import annotations

import json
import sys

import bpy
import bvhio
import numpy as np


def main(path: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=path, global_scale=1.0, axis_forward="Y", axis_up="Z",
                            update_scene_fps=True, update_scene_duration=True)  # fmt: skip
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    scene = bpy.context.scene
    # the keyed frames of the imported action (the scene's own range may be longer)
    first, last = (int(round(f)) for f in arm.animation_data.action.frame_range)
    root = bvhio.readAsHierarchy(path)
    names = [j.Name for j, _, _ in root.layout()]
    worst = 0.0
    for k, f in enumerate(range(first, last + 1)):
        scene.frame_set(f)
        root.loadPose(k)
        want = {j.Name: np.array(list(j.PositionWorld)) for j, _, _ in root.layout()}
        for name in names:
            got = np.array(arm.matrix_world @ arm.pose.bones[name].head)
            worst = max(worst, float(np.linalg.norm(got - want[name])))
    print(json.dumps({
        "blender": bpy.app.version_string, "file": path, "bones": len(arm.pose.bones),
        "bvh_joints": len(names), "frames": last - first + 1,
        "fps": scene.render.fps / scene.render.fps_base, "max_head_distance_mm": worst,
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
