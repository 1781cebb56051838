"""Natural hand poses for synthetic data: articulation and placement in a depth camera's view.

Independent uniform angles make implausible hands (fingers flexing alone, the little finger
bent while the ring finger is straight). :func:`sample_articulation` instead draws the 24 joint
angles from a mixture (weights in :class:`ArticulationConfig`):

- ``gesture``: a named gesture or grasp of :data:`GESTURES` exactly;
- ``perturbed``: a gesture plus Gaussian noise on every angle;
- ``synergy``: per chain a latent curl ``c`` in [0, 1] driving MCP, PIP and DIP together
  (PIP = 1.0-1.2 x MCP, DIP = 2/3 PIP), curls of neighbouring fingers correlated through a
  Gaussian copula (:data:`CURL_CORRELATION`), spread shrinking as fingers curl, the palm
  cupping (ring/little CMC) with the curl;
- ``transition``: a point on the way between two gestures (what a moving hand passes through);
- ``uniform``: angles uniform within the joint limits, for coverage of the rest.

Draws whose fingers pass through each other (:func:`self_overlap`, bones as capsules, on the
average adult hand) are drawn again (``ArticulationConfig.max_overlap_mm``); about a third of
the draws are, mostly a thumb curling into flexed fingers.

:func:`sample_global` places the hand in front of a depth sensor (:class:`ViewConfig`, presets
``nyu``, ``icvl``, ``generic``): a target pixel in the central part of the image and a depth,
back-projected, and an orientation around "palm to the camera, fingers up"; the hand's extent
keeps it in the image. :func:`sample_poses` combines both into ``(n, 30)`` poses in the layout
of :mod:`handvox.hand.kinematics`. Every sampler is deterministic given its ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from handvox.camera import Camera
from handvox.geometry import matrix_to_axis_angle, segment_distance
from handvox.hand.kinematics import (
    DOF_NAMES,
    HandBones,
    clamp_to_limits,
    forward_kinematics,
    random_pose,
)
from handvox.hand.shapes import base_shape
from handvox.joints import FINGERS

ARTICULATION_NAMES: tuple[str, ...] = DOF_NAMES[6:]

# --- gesture library ----------------------------------------------------------------------------
# Angles in degrees. A finger is (mcp_flex, mcp_abd, pip_flex, dip_flex[, cmc_flex]); the thumb
# is (cmc_flex, cmc_abd, mcp_flex, ip_flex). Where the thumb rests on a finger (fist, point,
# peace, horns, three, four, ok, pinch, tripod, key grip, power grasp) its angles minimise the
# distance of its pulp to the target surface without the thumb's capsules (bone radii of the
# average adult) entering the fingers', found by optimisation and rounded. A curled finger is
# _C: fingertip at the palm, its metacarpal cupped (ring, little).
_S = (0, 0, 0, 0)
_C = {"index": (85, 0, 100, 55), "middle": (88, 0, 100, 55), "ring": (88, 0, 100, 55, 10),
      "little": (90, 0, 100, 55, 20)}  # fmt: skip
_THUMB_ON_MIDDLE = (9, 60, 33, 47)


@dataclass(frozen=True)
class Gesture:
    """A named hand shape, angles in degrees (layout in the comment above :data:`GESTURES`)."""

    description: str
    thumb: tuple[float, ...] = _S
    index: tuple[float, ...] = _S
    middle: tuple[float, ...] = _S
    ring: tuple[float, ...] = _S
    little: tuple[float, ...] = _S

    def degrees(self) -> dict[str, float]:
        """Angle per articulation DOF name (degrees), in :data:`ARTICULATION_NAMES` order."""
        out = dict(zip(ARTICULATION_NAMES[:4], self.thumb, strict=True))
        for f in FINGERS[1:]:
            mcp, abd, pip, dip, *cmc = getattr(self, f)
            out |= {f"{f}_cmc_flex": cmc[0] if cmc else 0, f"{f}_mcp_flex": mcp,
                    f"{f}_mcp_abd": abd, f"{f}_pip_flex": pip, f"{f}_dip_flex": dip}  # fmt: skip
        return {n: float(out[n]) for n in ARTICULATION_NAMES}


def _g(description: str, thumb=_S, index=_S, middle=_S, ring=_S, little=_S) -> Gesture:
    return Gesture(description, thumb, index, middle, ring, little)


# fmt: off
GESTURES: dict[str, Gesture] = {
    "open": _g("flat open hand, fingers at their rest spread"),
    "fist": _g("closed fist, thumb over the middle phalanges", (-5, 60, 46, 44), **_C),
    "point": _g("index pointing, others curled", _THUMB_ON_MIDDLE,
                _S, _C["middle"], _C["ring"], _C["little"]),
    "peace": _g("V sign: index and middle straight and spread, thumb on the ring finger",
                (36, 60, -20, 79), (0, 12, 0, 0), (0, -8, 0, 0), _C["ring"], _C["little"]),
    "thumbs_up": _g("fist with the thumb straight up along it", (10, -5, 10, 0), **_C),
    "ok": _g("OK sign: thumb and index pulps touch in a ring, others straight and spread",
             (0, 37, 39, -20), (45, 0, 55, 25), (5, -4, 5, 0), (8, -8, 5, 0, 3),
             (10, -14, 5, 0, 5)),
    "pinch": _g("precision pinch: thumb and index pulps touch, others relaxed",
                (30, 36, -20, -20), (59, 2, 35, 4), (40, 0, 45, 20), (45, 0, 50, 25, 5),
                (50, 0, 50, 25, 10)),
    "three": _g("index, middle and ring straight, thumb holds the bent little finger",
                (50, 48, -14, 31), (0, 8, 0, 0), _S, (0, -8, 0, 0), (67, 10, 60, 40, 10)),
    "four": _g("four fingers straight and spread, thumb folded across the palm",
               (32, 29, 60, 28), (0, 8, 0, 0), _S, (0, -6, 0, 0), (0, -12, 0, 0)),
    "call_me": _g("Y / call-me: thumb and little straight and spread, others curled",
                  (-20, 15, -5, -5), _C["index"], _C["middle"], _C["ring"], (0, -25, 0, 0)),
    "horns": _g("rock / horns: index and little straight, thumb over middle and ring",
                (26, 57, -6, 74), (0, 8, 0, 0), _C["middle"], _C["ring"], (0, -15, 0, 0)),
    "l_shape": _g("L: index straight, thumb spread wide, others curled",
                  (-25, 10, -10, -10), _S, _C["middle"], _C["ring"], _C["little"]),
    "tripod": _g("tripod grasp: thumb, index and middle pulps meet (holding a pen)",
                 (38, 35, -16, -20), (50, -5, 35, 10), (50, 5, 45, 15), (60, 0, 70, 35, 8),
                 (65, 0, 70, 35, 15)),
    "power_grasp": _g("power grasp of a ~40 mm cylinder, thumb wrapped over it",
                      (17, 24, -1, 31), (60, 0, 75, 40), (62, 0, 78, 40), (65, 0, 78, 40, 8),
                      (70, 0, 75, 40, 15)),
    "sphere_grasp": _g("spherical grasp of a ~80 mm ball, fingers spread",
                       (15, 50, 10, 10), (35, 12, 40, 20), (35, 0, 40, 20),
                       (35, -10, 40, 20, 5), (35, -20, 40, 20, 10)),
    "spread": _g("flat hand, fingers and thumb spread wide", (-25, 5, -5, 0),
                 (0, 20, 0, 0), (0, 2, 0, 0), (0, -15, 0, 0), (0, -28, 0, 0)),
    "relaxed": _g("relaxed half-curl, more flexed towards the little finger", (10, 20, 15, 15),
                  (20, 3, 30, 15), (25, 0, 35, 20), (30, -3, 40, 20, 5), (35, -6, 40, 20, 8)),
    "claw": _g("claw: MCPs straight, PIPs and DIPs bent", (0, 20, 20, 45),
               (-5, 8, 90, 60), (-5, 0, 90, 60), (-5, -6, 90, 60), (-5, -12, 90, 60)),
    "flat_closed": _g("flat hand, fingers together, thumb against the index", (20, -12, 0, 0),
                      (0, -8, 0, 0), (0, -2, 0, 0), (0, 5, 0, 0), (0, 10, 0, 0)),
    "key_grip": _g("lateral (key) pinch: thumb pulp on the side of the curled index",
                   (-14, 34, 55, 7), (70, 0, 70, 30), _C["middle"], _C["ring"], _C["little"]),
}
# fmt: on
GESTURE_NAMES: tuple[str, ...] = tuple(GESTURES)


def gesture_articulations(
    names: tuple[str, ...] | None = None, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """``(G, 24)`` the gestures' articulation angles (radians), by default all of them."""
    names = GESTURE_NAMES if names is None else names
    deg = [list(GESTURES[n].degrees().values()) for n in names]
    return torch.deg2rad(torch.tensor(deg, dtype=torch.float64)).to(dtype=dtype, device=device)


def articulation_to_pose(art: Tensor, root: Tensor | None = None) -> Tensor:
    """``(n, 24)`` articulation and ``(n, 6)`` root (zero if None) -> ``(n, 30)`` pose."""
    if root is None:
        root = art.new_zeros(art.shape[0], 6)
    return torch.cat([root.to(art), art], 1)


# --- articulation sampler -----------------------------------------------------------------------
# Correlation (Gaussian copula) of the latent curls of thumb, index, middle, ring, little.
# Neighbours move together through shared flexor muscle bellies and the juncturae tendinum:
# ring-little most, middle-ring next, index the most independent finger, the thumb mostly
# independent (Häger-Ross & Schieber 2000, "Quantifying the independence of human finger
# movements"; Santello et al. 1998 for grasp synergies).
CURL_CORRELATION = (
    (1.00, 0.35, 0.25, 0.20, 0.20),
    (0.35, 1.00, 0.65, 0.45, 0.35),
    (0.25, 0.65, 1.00, 0.80, 0.65),
    (0.20, 0.45, 0.80, 1.00, 0.85),
    (0.20, 0.35, 0.65, 0.85, 1.00),
)
# Per-finger abduction (degrees) at the widest natural spread of a straight hand.
_SPREAD_DEG = (18.0, 3.0, -12.0, -22.0)
# Largest cupping (CMC flexion, degrees) of index..little in a full curl.
_ARCH_DEG = (1.0, 1.0, 10.0, 18.0)


@dataclass(frozen=True)
class ArticulationConfig:
    """Mixture of :func:`sample_articulation` (weights are normalised) and its noise levels.

    Attributes:
        gesture / perturbed / synergy / transition / uniform: component weights.
        gestures: names of the gestures used (default all of :data:`GESTURES`).
        flex_sigma_deg / abd_sigma_deg / thumb_sigma_deg / arch_sigma_deg: standard deviations
            of the perturbation noise on flexions, abductions, thumb angles and CMC cupping.
        curl_max_deg: MCP flexion of a synergy curl of 1.
        pip_ratio: range of PIP / MCP flexion in synergy poses.
        dip_ratio: DIP / PIP flexion in synergy poses.
        synergy_sigma_deg: per-joint noise added to synergy poses.
        transition_sigma_deg: per-joint noise added to transitions.
        max_overlap_mm: poses whose fingers interpenetrate deeper than this on the average
            adult hand (:func:`self_overlap`) are drawn again, up to ``reject_rounds`` times;
            None keeps every draw. Weights are those of the draws, before rejection. Skin
            gives a few mm where fingers press on each other, hence not 0.
    """

    gesture: float = 0.05
    perturbed: float = 0.40
    synergy: float = 0.30
    transition: float = 0.20
    uniform: float = 0.05
    gestures: tuple[str, ...] | None = None
    flex_sigma_deg: float = 8.0
    abd_sigma_deg: float = 4.0
    thumb_sigma_deg: float = 6.0
    arch_sigma_deg: float = 2.0
    curl_max_deg: float = 88.0
    pip_ratio: tuple[float, float] = (1.0, 1.2)
    dip_ratio: float = 2.0 / 3.0
    synergy_sigma_deg: float = 4.0
    transition_sigma_deg: float = 3.0
    max_overlap_mm: float | None = 4.0
    reject_rounds: int = 8

    def weights(self) -> Tensor:
        w = torch.tensor([self.gesture, self.perturbed, self.synergy, self.transition,
                          self.uniform], dtype=torch.float64)  # fmt: skip
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {w.tolist()}")
        return w / w.sum()


COMPONENTS = ("gesture", "perturbed", "synergy", "transition", "uniform")


def _noise_sigma(cfg: ArticulationConfig) -> Tensor:
    """``(24,)`` perturbation standard deviation per DOF, radians."""
    by_kind = {"cmc_flex": cfg.arch_sigma_deg, "mcp_abd": cfg.abd_sigma_deg}
    kind = [n.split("_", 1) for n in ARTICULATION_NAMES]
    sig = [cfg.thumb_sigma_deg if chain == "thumb" else by_kind.get(dof, cfg.flex_sigma_deg)
           for chain, dof in kind]  # fmt: skip
    return torch.deg2rad(torch.tensor(sig, dtype=torch.float64))


def _randn(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _rand(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=generator, dtype=torch.float64)


def _synergy(generator: torch.Generator, n: int, cfg: ArticulationConfig) -> Tensor:
    """``(n, 24)`` synergy poses (radians), see the module docstring."""
    chol = torch.linalg.cholesky(torch.tensor(CURL_CORRELATION, dtype=torch.float64))
    z = _randn(generator, n, 5) @ chol.T
    curl = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))  # uniform marginals, correlated
    spread = -0.3 + 1.3 * _rand(generator, n, 1)  # shared: hands spread or close all fingers
    ratio = cfg.pip_ratio[0] + (cfg.pip_ratio[1] - cfg.pip_ratio[0]) * _rand(generator, n, 4)
    noise = _randn(generator, n, 24) * cfg.synergy_sigma_deg
    c = curl[:, 1:]
    mcp = c * cfg.curl_max_deg
    pip = mcp * ratio
    dip = pip * cfg.dip_ratio
    abd = spread * torch.tensor(_SPREAD_DEG, dtype=torch.float64) * (1.0 - c)
    arch = c * torch.tensor(_ARCH_DEG, dtype=torch.float64)
    fingers = torch.stack([arch, mcp, abd, pip, dip], -1).reshape(n, 20)
    # Thumb: its curl closes it across the palm; opposition (palmar abduction) varies on its own
    # but grows with the curl so a closing thumb passes in front of the fingers, not into them.
    ct, opp = curl[:, :1], _rand(generator, n, 1)
    thumb = torch.cat([-15.0 + 50.0 * ct, 5.0 + 25.0 * ct + 25.0 * opp, -5.0 + 45.0 * ct,
                       -5.0 + 55.0 * ct], 1)  # fmt: skip
    return torch.deg2rad(torch.cat([thumb, fingers], 1) + noise)


def _draw(generator: torch.Generator, n: int, cfg: ArticulationConfig) -> tuple[Tensor, Tensor]:
    """``(n, 24)`` float64 articulations of the mixture, clamped, and their components."""
    names = cfg.gestures or GESTURE_NAMES
    lib = gesture_articulations(names, torch.float64)
    comp = torch.multinomial(cfg.weights(), n, replacement=True, generator=generator)
    # Every component is drawn for every pose and one is kept: the random stream, hence the
    # result, does not depend on how many poses each component got.
    g1 = torch.randint(len(names), (n,), generator=generator)
    g2 = torch.randint(len(names), (n,), generator=generator)
    t = _rand(generator, n, 1)
    sigma = _noise_sigma(cfg)
    candidates = torch.stack([
        lib[g1],
        lib[g1] + _randn(generator, n, 24) * sigma,
        _synergy(generator, n, cfg),
        torch.lerp(lib[g1], lib[g2], t)
        + _randn(generator, n, 24) * math.radians(cfg.transition_sigma_deg),
        random_pose(n, generator, torch.float64)[:, 6:],
    ], 1)  # fmt: skip
    art = candidates[torch.arange(n), comp]
    return clamp_to_limits(articulation_to_pose(art))[:, 6:], comp


def sample_articulation(
    generator: torch.Generator,
    n: int,
    config: ArticulationConfig | None = None,
    return_component: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Natural joint angles, the 24 non-root DOFs of :mod:`handvox.hand.kinematics`.

    Args:
        generator: CPU torch generator; the result depends only on it, ``n`` and ``config``.
        n: number of poses.
        config: mixture weights, noise levels, rejection (default :class:`ArticulationConfig`).
        return_component: also return which mixture component made each pose.
    Returns:
        ``(n, 24)`` float32 angles in radians, within the joint limits; with
        ``return_component`` also ``(n,)`` int64 indices into :data:`COMPONENTS`.
    """
    cfg = config or ArticulationConfig()
    art, comp = _draw(generator, n, cfg)
    if cfg.max_overlap_mm is not None:
        for _ in range(cfg.reject_rounds):
            bad = self_overlap(art) > cfg.max_overlap_mm
            if not bad.any():
                break
            art[bad], comp[bad] = _draw(generator, int(bad.sum()), cfg)
    art = art.float()
    return (art, comp) if return_component else art


# --- self-collision -----------------------------------------------------------------------------


def _capsule_pairs() -> tuple[Tensor, Tensor]:
    """Capsule pairs :func:`self_overlap` checks, as indices ``4 * chain + k`` into each chain's
    bones in ``HandBones.radius`` order: a stub (thumb; skipped) or the metacarpal (fingers),
    then three. Pairs within a chain and among palm bones (metacarpals and the thumb's first
    bone, which the palm's flesh joins) are left out."""
    palm = {1, 4, 8, 12, 16}
    pairs = [(a, b) for a in range(1, 20) for b in range(a + 1, 20)
             if a // 4 != b // 4 and not (a in palm and b in palm)]  # fmt: skip
    i, j = zip(*pairs, strict=True)
    return torch.tensor(i), torch.tensor(j)


_PAIRS = _capsule_pairs()


def self_overlap(art: Tensor, bones: HandBones | None = None) -> Tensor:
    """Deepest interpenetration of two fingers' bones, a self-collision measure.

    Bones are capsules of the :class:`HandBones` radii (finger metacarpals from their CMC
    joint); see :func:`_capsule_pairs` for the pairs.

    Args:
        art: ``(n, 24)`` articulations (radians).
        bones: one hand (batch 1) or one per articulation; default the average adult.
    Returns:
        ``(n,)`` float64 mm: largest sum of radii minus axis distance; <= 0 when nothing touches.
    """
    bones = (
        base_shape("average_adult", torch.float64)
        if bones is None
        else bones.to(dtype=torch.float64)
    )
    fk = forward_kinematics(articulation_to_pose(art.double()), bones)
    chains = fk.joints[:, 1:].unflatten(1, (5, 4))  # thumb CMC..tip, fingers MCP..tip
    first = torch.cat([chains[:, :1, 0], fk.metacarpal_origins[:, 1:]], 1)
    points = torch.cat([first[:, :, None], chains], 2).flatten(1, 2)  # (n, 25, 3)
    ends = torch.arange(20) + torch.arange(20) // 4 + 1  # each bone's end among the 5 x 5
    a, b = _PAIRS
    dist = segment_distance(points[:, ends[a] - 1], points[:, ends[a]],
                             points[:, ends[b] - 1], points[:, ends[b]])  # fmt: skip
    radius = bones.radius.flatten(1)  # (1 or n, 20)
    return (radius[:, a] + radius[:, b] - dist).amax(1)


# --- global placement ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewConfig:
    """Where hands sit in front of a depth sensor and how they face it.

    Ranges of people gesturing at a sensor, from the public test labels (hand centroid depth,
    5th-95th percentile / extremes): NYU (Kinect, 640x480) 700-1036 / 616-1118 mm; ICVL
    (SoftKinetic, 320x240) 266-398 / 234-429 mm. Their centroids stay within the central ~40 %
    of the image width; the sampler spreads hands over more of it (``frame_fraction``) for
    variety, as long as the whole hand stays inside.

    Orientation: ``R = Rz(roll) @ B @ Rx(pitch) @ Ry(yaw)``, applied to the hand frame of
    :mod:`handvox.hand.kinematics`, where ``B`` is the base orientation ``facing`` names:

    * ``camera`` (third person, a person gesturing at a sensor): ``B = I``, the palm to the
      camera, fingers up, thumb on the image's right;
    * ``away`` (egocentric, a head-mounted camera): the back of the hand to the camera, seen
      from behind and above, fingers pointing forward and ``ego_elevation_deg`` up, the forearm
      towards the camera and the image's lower edge;
    * ``down`` (desk, a camera above a table): the back of the hand up to the camera, fingers up
      the image.

    ``roll`` turns the hand in the image plane, ``pitch`` tips the fingers towards / away from
    the camera (about the hand's x axis), ``yaw`` turns it about its long axis (side and back
    views; a back view of an egocentric hand shows the palm).

    Attributes:
        camera: the sensor (a :class:`Camera` or preset name).
        depth_mm: range of the hand centre's depth, sampled uniformly.
        frame_fraction: the hand centre's pixel lies in this central fraction of width/height.
        fit_margin: factor on the hand's projected radius kept inside the image.
        roll_deg: uniform range of the in-plane rotation.
        pitch_sigma_deg / yaw_sigma_deg: normal spreads of the tilts, clipped at
            ``tilt_limit_deg``.
        side_prob: probability of a side view (yaw ``±side_yaw_deg``, uniform).
        back_prob: probability of a back view (yaw 180 plus the usual tilt).
        facing: base orientation: ``camera``, ``away`` or ``down`` (above).
        ego_elevation_deg: for ``away``, how far the fingers point up from the optical axis.
        target_region: ``(u0, u1, v0, v1)``, fractions of the image width and height where the
            hand centre's pixel is drawn; None: the central ``frame_fraction``.
        near_mm: nothing of the hand nearer than this: the centre's depth is drawn from
            ``near_mm`` plus the hand's radius at least (0: no such bound).
    """

    camera: Camera | str = "nyu"
    depth_mm: tuple[float, float] = (600.0, 1100.0)
    frame_fraction: float = 0.7
    fit_margin: float = 1.1
    roll_deg: tuple[float, float] = (-90.0, 90.0)
    pitch_sigma_deg: float = 25.0
    yaw_sigma_deg: float = 25.0
    tilt_limit_deg: float = 60.0
    side_prob: float = 0.12
    side_yaw_deg: tuple[float, float] = (60.0, 100.0)
    back_prob: float = 0.05
    facing: str = "camera"
    ego_elevation_deg: float = 30.0
    target_region: tuple[float, float, float, float] | None = None
    near_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.facing not in FACINGS:
            raise ValueError(f"facing {self.facing!r}: choose one of {FACINGS}")
        r = self.target_region
        if r is not None and not (0 <= r[0] < r[1] <= 1 and 0 <= r[2] < r[3] <= 1):
            raise ValueError(f"target_region {r}: need 0 <= u0 < u1 <= 1 and 0 <= v0 < v1 <= 1")

    @classmethod
    def preset(cls, name: str) -> ViewConfig:
        """Third person: ``nyu`` (Kinect, 600-1100 mm), ``icvl`` (close range, 240-430 mm),
        ``generic`` (NYU camera, 350-1000 mm); ``egocentric`` (a head-mounted camera: the hand
        200-600 mm away, seen from behind and above, in the lower part of the image and allowed
        to leave it partly, the forearm entering from the lower edge) and ``desk`` (a camera
        above a table: the hand 350-700 mm below it, palm down, turned any way in the image) and
        ``wave`` (a person facing the sensor with the hand raised, 400-1000 mm, fingers up the
        image, the arm running down out of it)."""
        presets = {
            "nyu": cls(),
            "icvl": cls(camera="icvl", depth_mm=(240.0, 430.0)),
            "generic": cls(depth_mm=(350.0, 1000.0)),
            # Head-mounted cameras look down the arm: the head tilts (roll +-30), the wrist
            # flexes and the forearm turns; now and then one looks at one's own palm (back_prob);
            # a fit_margin below 1 lets fingers leave the image, as they do at arm's length.
            "egocentric": cls(
                depth_mm=(200.0, 600.0),
                roll_deg=(-30.0, 30.0),
                pitch_sigma_deg=20.0,
                yaw_sigma_deg=30.0,
                side_prob=0.1,
                back_prob=0.15,
                facing="away",
                fit_margin=0.8,
                target_region=(0.15, 0.85, 0.3, 0.95),
                # Head-mounted sensors measure nothing nearer than ~200 mm (SR300/SR305: 0.2 m):
                # a hand drawn nearer came out unmeasured, a frame with no hand to learn or test.
                near_mm=200.0,
            ),  # fmt: skip
            # A person waving or saying hello to a sensor: the hand raised, fingers up the
            # image (roll +-40), anywhere but the image's bottom (the arm runs down to it).
            "wave": cls(
                depth_mm=(400.0, 1000.0),
                roll_deg=(-40.0, 40.0),
                back_prob=0.1,
                target_region=(0.1, 0.9, 0.1, 0.7),
            ),
            "desk": cls(
                depth_mm=(350.0, 700.0),
                roll_deg=(-180.0, 180.0),
                pitch_sigma_deg=15.0,
                yaw_sigma_deg=20.0,
                side_prob=0.05,
                back_prob=0.1,
                facing="down",
            ),
        }
        try:
            return presets[name.lower()]
        except KeyError:
            known = sorted(presets)
            raise ValueError(f"unknown view preset {name!r}; choose one of {known}") from None

    @property
    def cam(self) -> Camera:
        return self.camera if isinstance(self.camera, Camera) else Camera.preset(self.camera)


FACINGS = ("camera", "away", "down")


def facing_rotation(facing: str, elevation_deg: float = 30.0) -> Tensor:
    """The base orientation ``B`` of :class:`ViewConfig` ``facing``: a float64 ``(3, 3)`` whose
    columns are the hand frame's x (radial), y (proximal) and z (dorsal) axes in the camera
    frame."""
    if facing == "camera":
        return torch.eye(3, dtype=torch.float64)
    if facing == "away":
        s, c = math.sin(math.radians(elevation_deg)), math.cos(math.radians(elevation_deg))
        # fingers (-y) forward and up, the back of the hand (+z) up and towards the camera
        cols = [(-1.0, 0.0, 0.0), (0.0, s, -c), (0.0, -c, -s)]
    elif facing == "down":
        cols = [(-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)]
    else:
        raise ValueError(f"facing {facing!r}: choose one of {FACINGS}")
    return torch.tensor(cols, dtype=torch.float64).T


# Default hand-frame point placed at the target pixel and the radius around it kept in view: the
# mean bounding-box centre and the largest extent of the gesture library on the average adult
# hand (:func:`hand_extent`; the mean extent is 89 mm).
DEFAULT_CENTRE_MM = (5.0, -76.0, -30.0)
DEFAULT_RADIUS_MM = 117.0


def _truncnormal(generator: torch.Generator, n: int, sigma: float, limit: float) -> Tensor:
    return (_randn(generator, n) * sigma).clamp(-limit, limit)


def sample_orientation(generator: torch.Generator, n: int, config: ViewConfig) -> Tensor:
    """``(n, 3, 3)`` float64 hand-to-camera rotations, see :class:`ViewConfig`."""
    lim = config.tilt_limit_deg
    roll = config.roll_deg[0] + (config.roll_deg[1] - config.roll_deg[0]) * _rand(generator, n)
    pitch = _truncnormal(generator, n, config.pitch_sigma_deg, lim)
    yaw = _truncnormal(generator, n, config.yaw_sigma_deg, lim)
    lo, hi = config.side_yaw_deg
    side = (lo + (hi - lo) * _rand(generator, n)) * torch.where(_rand(generator, n) < 0.5, -1, 1)
    view = _rand(generator, n)
    yaw = torch.where(view < config.side_prob, side, yaw)
    back = (view >= config.side_prob) & (view < config.side_prob + config.back_prob)
    yaw = torch.where(back, yaw + 180.0, yaw)
    euler = torch.stack([roll, pitch, yaw], 1).numpy()
    if config.facing == "camera":  # B = I: the one product, as frames were always drawn
        return torch.from_numpy(Rotation.from_euler("ZXY", euler, degrees=True).as_matrix())
    rz = torch.from_numpy(Rotation.from_euler("Z", euler[:, :1], degrees=True).as_matrix())
    tilt = torch.from_numpy(Rotation.from_euler("XY", euler[:, 1:], degrees=True).as_matrix())
    return rz @ facing_rotation(config.facing, config.ego_elevation_deg) @ tilt


def sample_global(
    generator: torch.Generator,
    n: int,
    config: ViewConfig | None = None,
    centre: Tensor | None = None,
    radius: Tensor | float | None = None,
) -> Tensor:
    """Root translation and rotation of hands placed in a depth camera's view.

    A target pixel is drawn uniformly in the central ``frame_fraction`` of the image (narrowed
    so the hand's projected radius stays inside) and a depth uniformly in ``depth_mm``; the
    hand-frame point ``centre`` is put there, the hand turned by :func:`sample_orientation`.

    Args:
        generator: CPU torch generator.
        n: number of poses.
        config: :class:`ViewConfig` (default: the ``nyu`` preset).
        centre: ``(n, 3)`` or ``(3,)`` hand-frame point placed at the target (mm); default
            :data:`DEFAULT_CENTRE_MM`.
        radius: ``(n,)`` or a number: the hand's extent around ``centre`` (mm) to keep in view.
    Returns:
        ``(n, 6)`` float32 ``root_tx, ty, tz`` (mm) and ``root_rx, ry, rz`` (axis-angle, rad).
    """
    cfg = config or ViewConfig()
    cam = cfg.cam
    if centre is None:
        centre = torch.tensor(DEFAULT_CENTRE_MM)
    centre = torch.as_tensor(centre, dtype=torch.float64).expand(n, 3)
    radius = DEFAULT_RADIUS_MM if radius is None else radius
    radius = torch.as_tensor(radius, dtype=torch.float64).expand(n)
    rot = sample_orientation(generator, n, cfg)
    near, far = cfg.depth_mm
    u = _rand(generator, n)
    if cfg.near_mm > 0:
        # Drawn over the range left, not clamped: no pile of hands at the bound.
        near = torch.clamp(cfg.near_mm + radius, min=near, max=far)
    depth = near + (far - near) * u
    uv = []
    region = cfg.target_region
    for axis, (size, c, f) in enumerate(
        ((cam.width, cam.cx, cam.fx), (cam.height, cam.cy, cam.fy))
    ):
        r_px = cfg.fit_margin * radius * f / depth
        if region is None:
            half = 0.5 * cfg.frame_fraction * size
            first, last = 0.5 * size - half, 0.5 * size + half
        else:
            first, last = region[2 * axis] * size, region[2 * axis + 1] * size
        lo = torch.clamp(r_px, min=first)
        hi = torch.clamp(size - r_px, max=last)
        # A hand too big for the image at this depth is centred rather than pushed out.
        mid = torch.full_like(lo, c)
        lo, hi = torch.where(lo > hi, mid, lo), torch.where(lo > hi, mid, hi)
        uv.append(lo + (hi - lo) * _rand(generator, n))
    target = cam.uvd_to_xyz(torch.stack([uv[0], uv[1], depth], 1))
    trans = target - (rot @ centre[..., None])[..., 0]
    return torch.cat([trans, matrix_to_axis_angle(rot)], 1).float()


# --- full poses ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoseSamplerConfig:
    """Configuration of :func:`sample_poses`: articulation mixture and view."""

    articulation: ArticulationConfig = field(default_factory=ArticulationConfig)
    view: ViewConfig = field(default_factory=ViewConfig)


def hand_extent(art: Tensor) -> tuple[Tensor, Tensor]:
    """Centre ``(n, 3)`` (hand frame, mm) and radius ``(n,)`` of the joints' bounding box of
    each articulation on the average adult hand."""
    bones = base_shape("average_adult", torch.float64)
    joints = forward_kinematics(articulation_to_pose(art.double()), bones).joints
    lo, hi = joints.amin(1), joints.amax(1)
    centre = 0.5 * (lo + hi)
    return centre, (joints - centre[:, None]).norm(dim=-1).amax(1)


def sample_poses(
    generator: torch.Generator, n: int, config: PoseSamplerConfig | None = None
) -> Tensor:
    """``(n, 30)`` float32 natural poses in front of a depth camera (mm, radians).

    The articulation comes from :func:`sample_articulation`; each hand's own extent (measured
    on the average adult hand) is centred on the target pixel and kept inside the image by
    :func:`sample_global`. Deterministic given ``generator``.
    """
    cfg = config or PoseSamplerConfig()
    art = sample_articulation(generator, n, cfg.articulation)
    centre, radius = hand_extent(art)
    root = sample_global(generator, n, cfg.view, centre, radius)
    return articulation_to_pose(art, root)
