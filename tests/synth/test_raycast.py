"""Exact depth rendering by ray casting: analytic checks, brute-force references, the numpy twin."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.synth.primitives import (
    INDEX,
    PALM,
    SLAB,
    Primitives,
    hand_primitives,
    scene_primitives,
)
from handvox.synth.raycast import occlude, part_map, render_depth
from tests.synth import oracles
from tests.synth.scenes import open_hand

NYU = Camera.preset("nyu")
SMALL = Camera(150.0, 150.0, 32.0, 24.0, 64, 48)


def test_sphere_on_axis_depth_and_silhouette():
    z, r = 600.0, 40.0
    prims = Primitives.spheres([[0.0, 0.0, z]], [r])
    out = render_depth(prims, NYU, return_ids=True, return_normals=True)
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


def test_occlude_pastes_what_is_nearer_and_where_nothing_was_read():
    """A sphere (centre 600 mm, radius 40) over a wall at 590 mm, with a hole of no reading
    (0) and a strip nearer than the sphere (500 mm): the sphere replaces the wall where it is
    nearer, fills the hole, and stays behind the strip; noise needs an rng."""
    ball = Primitives.spheres([[0.0, 0.0, 600.0]], [40.0])
    alone = render_depth(ball, SMALL, background=np.inf)
    wall = np.full((SMALL.height, SMALL.width), 590.0, np.float32)
    wall[20:28, 28:36] = 0.0  # no reading around the axis
    wall[:, :30] = 500.0  # nearer than the sphere
    out, covered = occlude(wall, SMALL, ball)
    expect = np.isfinite(alone) & (alone < np.where(wall > 0, wall, np.inf))
    assert np.array_equal(covered, expect) and covered.sum() > 20
    np.testing.assert_array_equal(out[covered], alone[covered])
    np.testing.assert_array_equal(out[~covered], wall[~covered])
    assert out[24, 32] == pytest.approx(560.0, abs=0.5) and covered[24, 32]  # the hole, filled
    assert not covered[:, :30].any()  # behind the nearer strip
    assert (alone[:, 30:] < 590.0).sum() > 0 and out.dtype == np.float32
    assert wall[24, 32] == 0.0  # the input is left as it was
    noisy, _ = occlude(wall, SMALL, ball, 1.5, np.random.default_rng(0))
    assert 1.0 < (noisy - out)[covered].std() < 2.0
    with pytest.raises(ValueError, match="needs an rng"):
        occlude(wall, SMALL, ball, 1.5)


def test_sphere_off_axis_depth():
    # Centre on the ray of pixel (u=100, v=70): the hit is |c| - r along that ray.
    u, v, z, r = 100, 70, 450.0, 25.0
    c = np.array([(u - NYU.cx) / NYU.fx * z, (v - NYU.cy) / NYU.fy * z, z])
    depth = render_depth(Primitives.spheres(c, r), NYU)
    norm = np.linalg.norm(c)
    assert depth[v, u] == pytest.approx((norm - r) * z / norm, abs=1e-4)


def _cone(flip: bool):
    a, b, ra, rb = np.array([-24.0, 12.0, 300.0]), np.array([27.0, -15.0, 270.0]), 15.0, 7.5
    if flip:  # the thick end nearer the camera
        a[2], b[2] = b[2], a[2]
    return a, b, ra, rb


def _cone_reference(flip: bool) -> np.ndarray:
    a, b, ra, rb = _cone(flip)
    s = np.linspace(0.0, 1.0, 1501)[:, None]
    dist = oracles.union_of_balls_dist(a + s * (b - a), ra + s[:, 0] * (rb - ra))
    return oracles.sphere_trace(dist, SMALL)


@pytest.mark.parametrize("flip", [False, True])
def test_round_cone_matches_sphere_tracing(flip):
    got = render_depth(Primitives.round_cones(*_cone(flip)), SMALL, np.inf)
    ref = _cone_reference(flip)
    both = np.isfinite(got) & np.isfinite(ref)
    assert np.isfinite(got).sum() > 300
    assert (np.isfinite(got) != np.isfinite(ref)).sum() <= 3  # grazing rays at the silhouette
    np.testing.assert_allclose(got[both], ref[both], atol=0.01)


TRIANGLE = np.array([[-30.0, 18.0, 300.0], [24.0, 21.0, 285.0], [6.0, -27.0, 315.0]])
TRIANGLE_RADII = np.array([12.0, 6.0, 9.0])


def _triangle_reference() -> np.ndarray:
    # Balls on a triangular grid (0.9 mm apart) plus dense rims: a slightly dented inner
    # approximation, so the reference lies behind the surface by up to ~0.03 mm / cos(incidence).
    c, r = TRIANGLE, TRIANGLE_RADII
    lam = np.array([(i, j) for i in range(61) for j in range(61 - i)]) / 60.0
    s = np.linspace(0.0, 1.0, 1001)
    lam = np.concatenate([lam, np.column_stack([s, 0 * s]), np.column_stack([0 * s, s])])
    lam = np.concatenate([lam, np.column_stack([s, 1 - s])])
    w = np.column_stack([1 - lam.sum(1), lam])
    return oracles.sphere_trace(oracles.union_of_balls_dist(w @ c, w @ r), SMALL)


@pytest.mark.slow
def test_round_triangle_matches_sphere_tracing():
    prims = Primitives.round_triangles(*TRIANGLE[:, None], TRIANGLE_RADII)
    assert (prims.kind == SLAB).sum() == 1
    out = render_depth(prims, SMALL, np.inf, return_normals=True)
    got, ref = out.depth, _triangle_reference()
    both = np.isfinite(got) & np.isfinite(ref)
    assert np.isfinite(got).sum() > 600
    assert (np.isfinite(got) != np.isfinite(ref)).sum() <= 3
    cos = -(out.normals * oracles.rays(SMALL)).sum(-1)[both]
    err = ref[both] - got[both]
    assert np.all(err > -0.005)
    assert np.all(err < 0.005 + 0.03 / np.maximum(cos, 0.01))
    assert np.median(np.abs(err)) < 0.01


def test_near_sphere_occludes_far_sphere():
    prims = Primitives.spheres([[0.0, 0.0, 800.0], [10.0, 0.0, 500.0]], [100.0, 20.0])
    out = render_depth(prims, NYU, return_ids=True)
    near = out.ids == 1
    assert near.sum() > 500 and (out.ids == 0).sum() > 5 * near.sum()
    assert out.depth[near].max() < 520.0 < out.depth[out.ids == 0].min()
    # The near sphere wins even though it is listed second and its box lies inside the other's.
    u = int(round(NYU.cx + NYU.fx * 10 / 500))
    assert out.ids[int(NYU.cy), u] == 1
    assert out.depth[int(NYU.cy), u] == pytest.approx(480.0, abs=0.05)


def test_ellipsoid_and_planes():
    # Ellipsoid on the axis, its z semi-axis along the axis after a rotation.
    rot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # columns: axes
    ell = Primitives.ellipsoids([[0.0, 0.0, 700.0]], [[30.0, 50.0, 80.0]], rot)
    wall = Primitives.planes([[0.0, 0.0, 1500.0]], [[0.0, 0.0, 1.0]])
    slope = Primitives.planes([[0.0, 0.0, 1200.0]], [[0.0, 1.0, -1.0]])  # z = 1200 + y
    out = render_depth(ell + wall, NYU, return_ids=True, return_normals=True)
    cy, cx = int(NYU.cy), int(NYU.cx)
    assert out.depth[cy, cx] == pytest.approx(700.0 - 30.0, abs=1e-4)
    assert out.ids[0, 0] == 1 and np.all(out.depth[out.ids == 1] == 1500.0)
    np.testing.assert_allclose(out.normals[0, 0], [0, 0, -1])  # the wall faces the camera
    # x extent of the silhouette: the 80 mm axis now lies along x.
    half = NYU.fx * 80.0 / np.sqrt(700.0**2 - 80.0**2)
    assert out.ids[cy, cx + int(half)] == 0 and out.ids[cy, cx + int(half) + 1] == 1
    tilted = render_depth(slope, NYU)
    v = np.arange(NYU.height)
    np.testing.assert_allclose(tilted[:, 5], 1200.0 / (1.0 - (v - NYU.cy) / NYU.fy), rtol=1e-6)


def test_kernels_match_the_numpy_twin():
    j = open_hand()
    for forearm in (False, True):
        prims = hand_primitives(j, forearm=forearm) + scene_primitives(j.mean(0))
        a = render_depth(prims, NYU, return_ids=True, return_normals=True)
        b = oracles.render_depth(prims, NYU, return_normals=True)
        hit_a, hit_b = a.ids >= 0, b.ids >= 0
        assert (hit_a != hit_b).sum() <= 3
        both = hit_a & hit_b
        assert np.abs(a.depth[both] - b.depth[both]).max() < 1e-3
        assert (a.ids != b.ids).sum() <= 3
        same = a.ids == b.ids
        assert np.abs(a.normals[same] - b.normals[same]).max() < 1e-5
        assert {0, 1, 2, 3, 4} <= set(prims.kind[a.ids[a.ids >= 0]].tolist())  # every kind seen
        for threads in (1, 2):
            again = render_depth(prims, NYU, threads=threads)
            assert np.array_equal(again, a.depth)


@pytest.mark.parametrize("background", [0.0, 2001.0])
def test_hand_image_is_clean(background):
    j = open_hand()
    prims = hand_primitives(j, forearm=True)
    d, ids, n = render_depth(prims, NYU, background, return_ids=True, return_normals=True)
    assert d.dtype == np.float32 and d.shape == (NYU.height, NYU.width)
    assert np.isfinite(d).all() and np.isfinite(n).all()
    hit = ids >= 0
    assert np.all(d[~hit] == background) and np.all(n[~hit] == 0)
    # The hand lies 500 mm away, no thicker than 60 mm, and is one blob of ~20-40k pixels.
    assert 440 < d[hit].min() and d[hit].max() < 520
    assert 20_000 < hit.sum() < 45_000
    np.testing.assert_allclose(np.linalg.norm(n[hit], axis=-1), 1.0, atol=1e-5)
    # Visible surfaces face the camera.
    assert np.all((n * oracles.rays(NYU)).sum(-1)[hit] < 1e-3)
    # Part labels: the palm's centre is palm, the index fingertip is index.
    part = part_map(prims, ids)
    assert np.all((part >= 0) == hit)
    palm_uv = NYU.project((j[0] + j[9]) / 2).round().astype(int)
    tip_uv = NYU.project(j[7]).round().astype(int)
    assert part[palm_uv[1], palm_uv[0]] == PALM
    assert part[tip_uv[1], tip_uv[0]] == INDEX


def test_other_cameras():
    j = open_hand(wrist=(0.0, 40.0, 300.0))
    for cam in (Camera.preset("icvl"), Camera.preset("msra"), Camera(400, 400, 100, 80, 200, 160)):
        d = render_depth(hand_primitives(j), cam)
        assert d.shape == (cam.height, cam.width)
        assert 5_000 < (d > 0).sum() and d[d > 0].min() > 250


def test_render_into_batch_slice():
    prims = hand_primitives(open_hand())
    batch = np.full((2, NYU.height, NYU.width), 7.0, np.float32)
    got = render_depth(prims, NYU, 1.0, out=batch[1])
    assert got is batch[1] or np.shares_memory(got, batch)
    assert np.array_equal(batch[1], render_depth(prims, NYU, 1.0))
    assert np.all(batch[0] == 7.0)
    with pytest.raises(ValueError, match="out"):
        render_depth(prims, NYU, out=np.zeros((NYU.height, NYU.width)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX")
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
