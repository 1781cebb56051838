"""Exact depth rendering: analytic checks, brute-force references, backend agreement."""

from __future__ import annotations

import functools
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.synth.render import (
    BACKGROUND,
    BODY,
    INDEX,
    PALM,
    ROUND_CONE,
    SLAB,
    SPHERE,
    Primitives,
    available_backends,
    hand_primitives,
    part_map,
    render_depth,
    scene_primitives,
)

NYU = Camera.preset("nyu")
SMALL = Camera(150.0, 150.0, 32.0, 24.0, 64, 48)
BACKENDS = available_backends()


def open_hand(wrist=(0.0, 40.0, 500.0)) -> np.ndarray:
    """A flat open hand in canonical-21 order: fingers up (-y), palm towards the camera."""
    w = np.asarray(wrist, float)
    j = np.zeros((21, 3))
    j[0] = w
    j[1:5] = w + [[22, -22, 3], [42, -45, -2], [56, -68, -6], [66, -90, -9]]
    mcp = {1: (24, -88), 2: (4, -93), 3: (-15, -89), 4: (-32, -80)}
    lengths = {1: (42, 25, 22), 2: (46, 29, 23), 3: (43, 28, 22), 4: (34, 21, 20)}
    spread = {1: 0.12, 2: 0.03, 3: -0.06, 4: -0.16}
    for f in range(1, 5):
        d = np.array([np.sin(spread[f]), -np.cos(spread[f]), -0.05])
        p = w + [*mcp[f], 0.0]
        j[1 + 4 * f] = p
        for k, length in enumerate(lengths[f]):
            p = p + d / np.linalg.norm(d) * length
            j[2 + 4 * f + k] = p
    return j


def _rays(cam: Camera) -> np.ndarray:
    """``(H, W, 3)`` unit ray directions through pixel centres."""
    v, u = np.mgrid[: cam.height, : cam.width].astype(float)
    d = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _sphere_trace(dist, cam: Camera, t_max: float = 450.0, steps: int = 300) -> np.ndarray:
    """Reference z-depth (inf = miss) by sphere tracing ``dist(points (N, 3)) -> (N,)``, a
    distance bound that is exact outside the solid."""
    rays = _rays(cam).reshape(-1, 3)
    t = np.zeros(len(rays))
    done = np.zeros(len(rays), bool)
    active = np.ones(len(rays), bool)
    for _ in range(steps):
        idx = np.nonzero(active)[0]
        if len(idx) == 0:
            break
        d = dist(t[idx, None] * rays[idx])
        t[idx] += d
        hit = d < 1e-5
        done[idx[hit]] = True
        active[idx[hit | (t[idx] > t_max)]] = False
    return np.where(done, t * rays[:, 2], np.inf).reshape(cam.height, cam.width)


def _union_of_balls_dist(centers: np.ndarray, radii: np.ndarray):
    """Distance to a dense union of balls: a round cone or round triangle, by sampling."""

    c2 = (centers**2).sum(1)

    def dist(p):
        d2 = (p**2).sum(1)[:, None] - 2.0 * p @ centers.T + c2[None]
        return (np.sqrt(np.maximum(d2, 0.0)) - radii[None]).min(axis=1)

    return dist


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_on_axis_depth_and_silhouette(backend):
    z, r = 600.0, 40.0
    prims = Primitives.spheres([[0.0, 0.0, z]], [r])
    out = render_depth(prims, NYU, return_ids=True, return_normals=True, backend=backend)
    cy, cx = int(NYU.cy), int(NYU.cx)
    assert out.depth[cy, cx] == pytest.approx(z - r, abs=1e-4)
    np.testing.assert_allclose(out.normals[cy, cx], [0, 0, -1], atol=1e-6)
    # The silhouette of a sphere on the axis: an ellipse with semi-axes f r / sqrt(z^2 - r^2).
    ru, rv = (f * r / np.sqrt(z * z - r * r) for f in (NYU.fx, NYU.fy))
    v, u = np.mgrid[: NYU.height, : NYU.width]
    rho = ((u - NYU.cx) / ru) ** 2 + ((v - NYU.cy) / rv) ** 2
    hit = out.ids >= 0
    clear = np.abs(rho - 1.0) > 1e-6
    assert np.array_equal(hit[clear], (rho <= 1.0)[clear])
    assert hit[cy, cx + int(ru)] and not hit[cy, cx + int(ru) + 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_off_axis_depth(backend):
    # Centre on the ray of pixel (u=100, v=70): the hit is |c| - r along that ray.
    u, v, z, r = 100, 70, 450.0, 25.0
    c = np.array([(u - NYU.cx) / NYU.fx * z, (v - NYU.cy) / NYU.fy * z, z])
    depth = render_depth(Primitives.spheres(c, r), NYU, backend=backend)
    norm = np.linalg.norm(c)
    assert depth[v, u] == pytest.approx((norm - r) * z / norm, abs=1e-4)


def _cone(flip: bool):
    a, b, ra, rb = np.array([-24.0, 12.0, 300.0]), np.array([27.0, -15.0, 270.0]), 15.0, 7.5
    if flip:  # the thick end nearer the camera
        a[2], b[2] = b[2], a[2]
    return a, b, ra, rb


@functools.cache
def _cone_reference(flip: bool) -> np.ndarray:
    a, b, ra, rb = _cone(flip)
    s = np.linspace(0.0, 1.0, 1501)[:, None]
    return _sphere_trace(_union_of_balls_dist(a + s * (b - a), ra + s[:, 0] * (rb - ra)), SMALL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flip", [False, True])
def test_round_cone_matches_sphere_tracing(backend, flip):
    got = render_depth(Primitives.round_cones(*_cone(flip)), SMALL, np.inf, backend=backend)
    ref = _cone_reference(flip)
    both = np.isfinite(got) & np.isfinite(ref)
    assert np.isfinite(got).sum() > 300
    assert (np.isfinite(got) != np.isfinite(ref)).sum() <= 3  # grazing rays at the silhouette
    np.testing.assert_allclose(got[both], ref[both], atol=0.01)


TRIANGLE = np.array([[-30.0, 18.0, 300.0], [24.0, 21.0, 285.0], [6.0, -27.0, 315.0]])
TRIANGLE_RADII = np.array([12.0, 6.0, 9.0])


@functools.cache
def _triangle_reference() -> np.ndarray:
    # Balls on a triangular grid (0.9 mm apart) plus dense rims: a slightly dented inner
    # approximation, so the reference lies behind the surface by up to ~0.03 mm / cos(incidence).
    c, r = TRIANGLE, TRIANGLE_RADII
    lam = np.array([(i, j) for i in range(61) for j in range(61 - i)]) / 60.0
    s = np.linspace(0.0, 1.0, 1001)
    lam = np.concatenate([lam, np.column_stack([s, 0 * s]), np.column_stack([0 * s, s])])
    lam = np.concatenate([lam, np.column_stack([s, 1 - s])])
    w = np.column_stack([1 - lam.sum(1), lam])
    return _sphere_trace(_union_of_balls_dist(w @ c, w @ r), SMALL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_triangle_matches_sphere_tracing(backend):
    prims = Primitives.round_triangles(*TRIANGLE[:, None], TRIANGLE_RADII)
    assert (prims.kind == SLAB).sum() == 1
    out = render_depth(prims, SMALL, np.inf, return_normals=True, backend=backend)
    got, ref = out.depth, _triangle_reference()
    both = np.isfinite(got) & np.isfinite(ref)
    assert np.isfinite(got).sum() > 600
    assert (np.isfinite(got) != np.isfinite(ref)).sum() <= 3
    cos = -(out.normals * _rays(SMALL)).sum(-1)[both]
    err = ref[both] - got[both]
    assert np.all(err > -0.005)
    assert np.all(err < 0.005 + 0.03 / np.maximum(cos, 0.01))
    assert np.median(np.abs(err)) < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_sphere_occludes_far_sphere(backend):
    prims = Primitives.spheres([[0.0, 0.0, 800.0], [10.0, 0.0, 500.0]], [100.0, 20.0])
    out = render_depth(prims, NYU, return_ids=True, backend=backend)
    near = out.ids == 1
    assert near.sum() > 500 and (out.ids == 0).sum() > 5 * near.sum()
    assert out.depth[near].max() < 520.0 < out.depth[out.ids == 0].min()
    # The near sphere wins even though it is listed second and its box lies inside the other's.
    u = int(round(NYU.cx + NYU.fx * 10 / 500))
    assert out.ids[int(NYU.cy), u] == 1
    assert out.depth[int(NYU.cy), u] == pytest.approx(480.0, abs=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ellipsoid_and_planes(backend):
    # Ellipsoid on the axis, its z semi-axis along the axis after a rotation.
    rot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # columns: axes
    ell = Primitives.ellipsoids([[0.0, 0.0, 700.0]], [[30.0, 50.0, 80.0]], rot)
    wall = Primitives.planes([[0.0, 0.0, 1500.0]], [[0.0, 0.0, 1.0]])
    slope = Primitives.planes([[0.0, 0.0, 1200.0]], [[0.0, 1.0, -1.0]])  # z = 1200 + y
    out = render_depth(ell + wall, NYU, return_ids=True, return_normals=True, backend=backend)
    cy, cx = int(NYU.cy), int(NYU.cx)
    assert out.depth[cy, cx] == pytest.approx(700.0 - 30.0, abs=1e-4)
    assert out.ids[0, 0] == 1 and np.all(out.depth[out.ids == 1] == 1500.0)
    np.testing.assert_allclose(out.normals[0, 0], [0, 0, -1])  # the wall faces the camera
    # x extent of the silhouette: the 80 mm axis now lies along x.
    half = NYU.fx * 80.0 / np.sqrt(700.0**2 - 80.0**2)
    assert out.ids[cy, cx + int(half)] == 0 and out.ids[cy, cx + int(half) + 1] == 1
    tilted = render_depth(slope, NYU, backend=backend)
    v = np.arange(NYU.height)
    np.testing.assert_allclose(tilted[:, 5], 1200.0 / (1.0 - (v - NYU.cy) / NYU.fy), rtol=1e-6)


def test_hand_backends_agree():
    if "numba" not in BACKENDS:
        pytest.skip("numba not installed")
    j = open_hand()
    for forearm in (False, True):
        prims = hand_primitives(j, forearm=forearm) + scene_primitives(j.mean(0))
        a = render_depth(prims, NYU, return_ids=True, return_normals=True, backend="numba")
        b = render_depth(prims, NYU, return_ids=True, return_normals=True, backend="numpy")
        hit_a, hit_b = a.ids >= 0, b.ids >= 0
        assert (hit_a != hit_b).sum() <= 3
        both = hit_a & hit_b
        assert np.abs(a.depth[both] - b.depth[both]).max() < 1e-3
        assert (a.ids != b.ids).sum() <= 3
        same = a.ids == b.ids
        assert np.abs(a.normals[same] - b.normals[same]).max() < 1e-5
        assert {0, 1, 2, 3, 4} <= set(prims.kind[a.ids[a.ids >= 0]].tolist())  # every kind seen
        for threads in (1, 2):
            again = render_depth(prims, NYU, backend="numba", threads=threads)
            assert np.array_equal(again, a.depth)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("background", [0.0, 2001.0])
def test_hand_image_is_clean(backend, background):
    j = open_hand()
    prims = hand_primitives(j, forearm=True)
    out = render_depth(
        prims, NYU, background, return_ids=True, return_normals=True, backend=backend
    )
    d, ids, n = out
    assert d.dtype == np.float32 and d.shape == (NYU.height, NYU.width)
    assert np.isfinite(d).all() and np.isfinite(n).all()
    hit = ids >= 0
    assert np.all(d[~hit] == background) and np.all(n[~hit] == 0)
    # The hand lies 500 mm away, no thicker than 60 mm, and is one blob of ~20-40k pixels.
    assert 440 < d[hit].min() and d[hit].max() < 520
    assert 20_000 < hit.sum() < 45_000
    np.testing.assert_allclose(np.linalg.norm(n[hit], axis=-1), 1.0, atol=1e-5)
    # Visible surfaces face the camera.
    assert np.all((n * _rays(NYU)).sum(-1)[hit] < 1e-3)
    # Part labels: the palm's centre is palm, the index fingertip is index.
    part = part_map(prims, ids)
    assert np.all((part >= 0) == hit)
    palm_uv = NYU.project((j[0] + j[9]) / 2).round().astype(int)
    tip_uv = NYU.project(j[7]).round().astype(int)
    assert part[palm_uv[1], palm_uv[0]] == PALM
    assert part[tip_uv[1], tip_uv[0]] == INDEX


def test_palm_is_solid_and_thick():
    j = open_hand()
    out = render_depth(hand_primitives(j), NYU, return_ids=True)
    # No holes: every pixel inside the quadrilateral wrist, index MCP, little MCP is palm-hit.
    corners = NYU.project(j[[0, 5, 17]])
    v, u = np.mgrid[: NYU.height, : NYU.width]
    inside = np.ones_like(u, bool)
    for k in range(3):
        (u0, v0), (u1, v1) = corners[k], corners[(k + 1) % 3]
        inside &= (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0) >= 0
    if not inside.any():  # the other winding
        inside = np.ones_like(u, bool)
        for k in range(3):
            (u0, v0), (u1, v1) = corners[k], corners[(k + 1) % 3]
            inside &= (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0) <= 0
    assert inside.sum() > 2000 and np.all(out.ids[inside] >= 0)
    # Thickness: the palm tapers from 28 mm at the heel to 24 mm at the knuckles.
    centre = (j[0] + j[9]) / 2
    uv = NYU.project(centre).round().astype(int)
    assert centre[2] - 14.0 < out.depth[uv[1], uv[0]] < centre[2] - 12.0


def test_other_cameras():
    j = open_hand(wrist=(0.0, 40.0, 300.0))
    for cam in (Camera.preset("icvl"), Camera.preset("msra"), Camera(400, 400, 100, 80, 200, 160)):
        d = render_depth(hand_primitives(j), cam)
        assert d.shape == (cam.height, cam.width)
        assert 5_000 < (d > 0).sum() and d[d > 0].min() > 250


def test_builders():
    # A round cone whose big sphere swallows the small one becomes that sphere.
    p = Primitives.round_cones([[0, 0, 100], [0, 0, 100]], [[1, 0, 100], [0, 30, 100]], 5, [1, 2])
    assert sorted(p.kind.tolist()) == sorted([ROUND_CONE, SPHERE])
    assert len(Primitives.concat([])) == 0
    scene = scene_primitives(np.zeros(3) + [0, 0, 500])
    assert {BODY, BACKGROUND} == set(scene.part.tolist())
    with pytest.raises(ValueError, match="joints21"):
        hand_primitives(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="joints21"):
        hand_primitives(np.full((21, 3), np.nan))
    with pytest.raises(ValueError, match="backend"):
        render_depth(p, NYU, backend="cuda")
    with pytest.raises(ValueError, match="radii"):
        Primitives.spheres([0, 0, 100], 0.0)
    with pytest.raises(ValueError, match="out"):
        render_depth(p, NYU, out=np.zeros((NYU.height, NYU.width)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_render_into_batch_slice(backend):
    prims = hand_primitives(open_hand())
    batch = np.full((2, NYU.height, NYU.width), 7.0, np.float32)
    got = render_depth(prims, NYU, 1.0, backend=backend, out=batch[1])
    assert got is batch[1] or np.shares_memory(got, batch)
    assert np.array_equal(batch[1], render_depth(prims, NYU, 1.0, backend=backend))
    assert np.all(batch[0] == 7.0)


def test_hand_from_nyu_labels_overlaps_real_frame(shared):
    """A hand built from NYU frame 1's labels covers the real hand and matches its depth."""
    rgb = np.asarray(Image.open(shared / "data/nyu/depth_1_0000001.png")).astype(np.int32)
    real = ((rgb[..., 1] << 8) | rgb[..., 2]).astype(np.float32)
    lines = (shared / "data/nyu/nyu_test_groundtruth_label.txt").open().readline()
    lab = np.array(lines.split(), float).reshape(14, 3)
    xyz = NYU.uvd_to_xyz(lab)
    j = np.zeros((21, 3))
    j[0] = (xyz[11] + xyz[12]) / 2
    for f, tip in ((1, 6), (2, 4), (3, 2), (4, 0)):  # NYU14 tip slots; the root follows
        root = xyz[tip + 1]
        j[1 + 4 * f : 5 + 4 * f] = root + np.outer([0, 0.5, 0.78, 1.0], xyz[tip] - root)
    j[1:5] = [xyz[10], xyz[9], (xyz[9] + xyz[8]) / 2, xyz[8]]
    syn = render_depth(hand_primitives(j, tip_inset=0.0), NYU)
    lo, hi = lab[:, :2].min(0) - 30, lab[:, :2].max(0) + 30
    v, u = np.mgrid[: NYU.height, : NYU.width]
    box = (u >= lo[0]) & (u <= hi[0]) & (v >= lo[1]) & (v <= hi[1])
    real_hand = box & (np.abs(real - lab[:, 2].mean()) < 60)
    both = real_hand & (syn > 0)
    assert both.sum() / (real_hand | (syn > 0)).sum() > 0.65
    assert np.median(np.abs(real[both] - syn[both])) < 12.0


@pytest.mark.skipif(not hasattr(os, "fork") or "numba" not in BACKENDS, reason="POSIX + numba")
def test_threads_survive_fork():
    """A forked data-loader worker must not wait forever on its parent's (threadless) pool."""
    prims = hand_primitives(open_hand())
    parent = render_depth(prims, NYU, threads=2)
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the render completes and matches
        ok = np.array_equal(render_depth(prims, NYU, threads=2), parent)
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("render in a forked child hung")
