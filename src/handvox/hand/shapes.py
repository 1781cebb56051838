"""Hand shapes: bone lengths and thicknesses of a few base hands, and random hands around them.

All base shapes derive from one anatomically laid-out average adult right hand
(:data:`AVERAGE_ADULT`, mm, in the hand frame of :mod:`handvox.hand.kinematics`), rescaled to
published overall hand dimensions:

- hand length: distal wrist crease to the middle fingertip, hand straight; here the distance
  wrist joint -> middle tip at the zero pose;
- hand breadth: across the palm at the metacarpal heads (index MCP to little MCP, skin to skin);
  here the index-little MCP distance across the hand plus both metacarpals' radii.

A shape is ``(hand length, hand breadth, finger ratio, thickness ratio)``: palm lengths and
finger lengths scale to reach the hand length (fingers by ``finger ratio`` more), the palm's
width to reach the breadth, thicknesses with size times ``thickness ratio``. Run
``python -m handvox.hand.shapes`` to print the table of the base shapes' measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from handvox.hand.kinematics import HandBones, forward_kinematics, zero_pose

# Average adult right hand (mm). Positions in the hand frame (x radial, y proximal, z dorsal).
# Phalanx link lengths (joint centre to joint centre, the last to the end of the pad) follow the
# proximal : middle : distal proportions of Buryanov & Kotiuk 2010 ("Proportions of hand
# segments", Int. J. Morphol. 28(3)) scaled so the middle finger, MCP to tip, is ~96 mm and the
# hand length ~187 mm; the finger-length order (middle > ring > index > little, little ~0.75 of
# middle) matches hand anthropometry surveys. MCP heads form the distal transverse arch (middle
# most dorsal, little ~8 mm palmar) and a proximal-opening arc (little ~13 mm proximal of
# middle); CMC pivots sit ~22-27 mm distal of the wrist (carpal height). Radii: finger
# half-widths at the joints (middle ~20 mm wide at the PIP, ~16 mm at the pad), half palm
# thickness for the metacarpals, thenar bulk for the thumb's first two segments.
AVERAGE_ADULT = {
    # chain: base (thumb CMC / finger MCP), lengths, radii (wrist->base + 3 bones), finger CMC
    "thumb": ((22.0, -22.0, -12.0), (44.0, 31.0, 25.0), (14.0, 12.0, 10.5, 9.5), None),
    "index": ((26.0, -86.0, -3.0), (41.0, 24.0, 21.0), (12.0, 9.5, 8.5, 7.7), (12.0, -22.0, 0.0)),
    "middle": ((3.0, -90.0, 0.0), (45.0, 28.0, 23.0), (12.0, 9.8, 8.8, 8.0), (2.0, -25.0, 0.0)),
    "ring": ((-16.0, -86.0, -3.0), (42.0, 27.0, 23.0), (11.5, 9.0, 8.2, 7.4), (-8.0, -27.0, -1.0)),
    "little": ((-35.0, -77.0, -8.0), (33.0, 20.0, 20.0), (12.0, 8.0, 7.2, 6.6),
               (-17.0, -24.0, -3.0)),
}  # fmt: skip


@dataclass(frozen=True)
class ShapeSpec:
    """Target overall dimensions of a base shape (mm) and its proportions."""

    hand_length: float
    hand_breadth: float
    finger_ratio: float = 1.0  # finger lengths relative to palm length, vs the average adult
    thickness_ratio: float = 1.0  # radii relative to size, vs the average adult
    source: str = ""


# Hand length / breadth targets. Adults: Pheasant & Haslegrave, "Bodyspace" (3rd ed. 2006),
# British adults 19-65: men 5th/50th/95th percentile ~173/189/205 mm long, ~78/87/95 mm broad;
# women ~159/174/189 and ~69/76/83 (ANSUR II, Gordon et al. 2014, gives similar US Army values).
# Child: Snyder et al. 1977 (US children), about 13 cm long and 6 cm broad at age 7.
BASE_SHAPES: dict[str, ShapeSpec] = {
    "child_7y": ShapeSpec(130.0, 61.0, source="~50th percentile 7-year-old (Snyder et al. 1977)"),
    "small_female": ShapeSpec(160.0, 70.0, source="~5th percentile adult woman (Bodyspace)"),
    "average_adult": ShapeSpec(187.0, 85.0, source="~50th percentile adult man / mean adult"),
    "large_male": ShapeSpec(205.0, 95.0, source="~95th percentile adult man (Bodyspace)"),
    "slender": ShapeSpec(
        195.0, 78.0, finger_ratio=1.12, thickness_ratio=0.85,
        source="long slender fingers, narrow palm (~70th percentile length, ~25th breadth)",
    ),
    "broad": ShapeSpec(
        178.0, 92.0, finger_ratio=0.9, thickness_ratio=1.12,
        source="short fingers, broad thick palm (~35th percentile length, ~85th breadth)",
    ),
}  # fmt: skip
SHAPE_NAMES: tuple[str, ...] = tuple(BASE_SHAPES)


def _template(dtype=torch.float32, device=None) -> HandBones:
    chains = [AVERAGE_ADULT[f] for f in ("thumb", "index", "middle", "ring", "little")]

    def t(values):
        return torch.tensor(values, dtype=dtype, device=device)[None]

    return HandBones(
        base=t([c[0] for c in chains]),
        length=t([c[1] for c in chains]),
        radius=t([c[2] for c in chains]),
        cmc=t([c[3] for c in chains[1:]]),
    )


def hand_length(bones: HandBones) -> Tensor:
    """``(B,)`` wrist to middle fingertip at the zero pose, mm."""
    fk = forward_kinematics(zero_pose(bones.batch_size, bones.dtype, bones.device), bones)
    return fk.joints[:, 12].norm(dim=-1)  # canonical 12 = middle_tip, wrist at the origin


def hand_breadth(bones: HandBones) -> Tensor:
    """``(B,)`` across the MCP heads, index to little, skin to skin (mm)."""
    span = bones.base[:, 1, 0] - bones.base[:, 4, 0]
    return span + bones.radius[:, 1, 0] + bones.radius[:, 4, 0]


def measure(bones: HandBones) -> dict[str, Tensor]:
    """Overall dimensions of each hand, each ``(B,)`` mm.

    Keys: ``hand_length``, ``hand_breadth``, ``palm_length`` (wrist to middle MCP),
    ``middle_finger`` (MCP to tip) and ``thumb`` (CMC to tip, straight).
    """
    return {
        "hand_length": hand_length(bones),
        "hand_breadth": hand_breadth(bones),
        "palm_length": bones.palm_length(),
        "middle_finger": bones.length[:, 2].sum(-1),
        "thumb": bones.length[:, 0].sum(-1),
    }


def _apply(tpl: HandBones, s_len: float, s_x: float, s_t: float, finger_ratio: float) -> HandBones:
    """Palm lengths (y, z) times ``s_len``, palm width (x) times ``s_x``, fingers times
    ``s_len * finger_ratio``, radii times ``s_t``."""
    xyz = torch.tensor([s_x, s_len, s_len], dtype=tpl.dtype)
    return HandBones(
        base=tpl.base * xyz,
        length=tpl.length * (s_len * finger_ratio),
        radius=tpl.radius * s_t,
        cmc=tpl.cmc * xyz,
    )


def _fit(spec: ShapeSpec) -> HandBones:
    """The template rescaled to ``spec`` (float64, batch 1)."""
    tpl = _template(torch.float64)
    span0 = float(tpl.base[0, 1, 0] - tpl.base[0, 4, 0])
    rad0 = float(tpl.radius[0, 1, 0] + tpl.radius[0, 4, 0])
    s_len = 1.0
    for _ in range(50):  # length is nearly proportional to s_len: converges in a few steps
        s_t = s_len * spec.thickness_ratio
        s_x = (spec.hand_breadth - rad0 * s_t) / span0
        bones = _apply(tpl, s_len, s_x, s_t, spec.finger_ratio)
        ratio = spec.hand_length / float(hand_length(bones))
        if abs(ratio - 1.0) < 1e-9:
            break
        s_len *= ratio
    return bones


_BASE_CACHE: dict[str, HandBones] = {}


def base_shape(name: str, dtype: torch.dtype = torch.float32, device=None) -> HandBones:
    """One base shape as :class:`HandBones` of batch 1 (names: :data:`SHAPE_NAMES`)."""
    if name not in BASE_SHAPES:
        raise ValueError(f"unknown hand shape {name!r}; choose one of {list(SHAPE_NAMES)}")
    if name not in _BASE_CACHE:
        _BASE_CACHE[name] = _fit(BASE_SHAPES[name])
    return _BASE_CACHE[name].to(dtype=dtype, device=device)


def base_shapes(dtype: torch.dtype = torch.float32, device=None) -> HandBones:
    """All base shapes, batch ``len(SHAPE_NAMES)`` in :data:`SHAPE_NAMES` order."""
    return HandBones.cat([base_shape(n, dtype, device) for n in SHAPE_NAMES])


def sample_shape(
    generator: torch.Generator | None,
    n: int,
    base: str | HandBones | None = None,
    variation: float = 0.05,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> HandBones:
    """Random hands around a base shape.

    Each hand gets a global scale ``exp(N(0, variation))`` and, on every length, position
    coordinate and radius, an independent factor ``1 + N(0, variation / 2)``; both are clipped
    at 2 standard deviations so no hand leaves the plausible range (with the default 5 %: overall
    size within ±10 %, single bones within ±5 %).

    Args:
        generator: torch random generator (CPU) for reproducibility, or None.
        n: number of hands.
        base: a base-shape name, a :class:`HandBones` of batch 1 or ``n``, or None: each hand
            then starts from a random blend of two random base shapes, which covers the space
            between them continuously.
        variation: relative standard deviation of the global scale.
    Returns:
        :class:`HandBones` of batch ``n``.
    """

    def normal(*shape: int, sigma: float) -> Tensor:
        z = torch.randn(*shape, generator=generator, dtype=torch.float64)
        return z.clamp(-2.0, 2.0) * sigma

    if base is None:
        every = base_shapes(torch.float64)
        k = len(SHAPE_NAMES)
        i = torch.randint(k, (n,), generator=generator)
        j = torch.randint(k, (n,), generator=generator)
        w = torch.rand(n, generator=generator, dtype=torch.float64)
        a, b = every[i.tolist()], every[j.tolist()]
        bones = HandBones(
            **{
                f: torch.lerp(getattr(a, f), getattr(b, f), w.view(-1, 1, 1))
                for f in ("base", "length", "radius", "cmc")
            }
        )
    else:
        bones = base_shape(base, torch.float64) if isinstance(base, str) else base
        bones = bones.to(dtype=torch.float64, device="cpu").expand(n)
    scale = normal(n, 1, 1, sigma=variation).exp()
    out = {}
    for f in ("base", "length", "radius", "cmc"):
        t = getattr(bones, f)
        out[f] = t * scale * (1.0 + normal(*t.shape, sigma=variation / 2))
    return HandBones(**out).to(dtype=dtype, device=device)


def shape_table() -> str:
    """Markdown table of the base shapes' measurements (mm), for the docs."""
    m = measure(base_shapes(torch.float64))
    rows = ["| shape | hand length | hand breadth | palm length | middle finger | thumb | source |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for i, name in enumerate(SHAPE_NAMES):
        vals = " | ".join(f"{float(m[k][i]):.1f}" for k in m)
        rows.append(f"| {name} | {vals} | {BASE_SHAPES[name].source} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(shape_table())
