"""Named joint sets (order, bones for drawing, finger groups) and mappings between them.

Every dataset labels a different set of points. Each set here is an explicit table; a mapping from
one set to another is a ``(J_dst, J_src)`` weight matrix, so subsets, re-orderings and averages are
one operation: ``dst = W @ src``. Mappings marked ``exact=False`` pair the nearest anatomical
points and are only good for drawing and rough comparisons; exact ones preserve labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from handvox.camera import is_tensor

FINGERS = ("thumb", "index", "middle", "ring", "little")
GROUP_COLORS = {
    "palm": "#7f7f7f",
    "thumb": "#d62728",
    "index": "#ff7f0e",
    "middle": "#2ca02c",
    "ring": "#1f77b4",
    "little": "#9467bd",
}


@dataclass(frozen=True)
class JointSet:
    """An ordered set of labelled hand points.

    Attributes:
        name: short identifier (``canonical21``, ``nyu14``, ...).
        names: one name per joint, in the dataset's order.
        bones: pairs of joint indices to draw as line segments (parent, child).
        groups: finger group of each joint (``palm`` or one of :data:`FINGERS`), for colours.
    """

    name: str
    names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.groups) != n:
            raise ValueError(f"{self.name}: {len(self.groups)} groups for {n} joints")
        for a, b in self.bones:
            if not (0 <= a < n and 0 <= b < n):
                raise ValueError(f"{self.name}: bone ({a}, {b}) out of range")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, joint_name: str) -> int:
        return self.names.index(joint_name)

    def bone_colors(self) -> list[str]:
        """One colour per bone, by the finger group of its child joint."""
        return [GROUP_COLORS[self.groups[b]] for _, b in self.bones]


def _group_of(name: str) -> str:
    for finger in FINGERS:
        if name.startswith(finger):
            return finger
    return "palm"


def _make(name: str, names: list[str], bones: list[tuple[int, int]], groups=None) -> JointSet:
    groups = groups or [_group_of(n) for n in names]
    return JointSet(name, tuple(names), tuple(bones), tuple(groups))


# --- canonical 21: wrist; thumb CMC MCP IP tip; each finger MCP PIP DIP tip -------------------
_CANON_SEGS = {
    "thumb": ("cmc", "mcp", "ip", "tip"),
    **{f: ("mcp", "pip", "dip", "tip") for f in FINGERS[1:]},
}
_canon_names = ["wrist"] + [f"{f}_{s}" for f in FINGERS for s in _CANON_SEGS[f]]
_canon_bones = []
for _i in range(5):
    _base = 1 + 4 * _i
    _canon_bones += [(0, _base), (_base, _base + 1), (_base + 1, _base + 2), (_base + 2, _base + 3)]
CANONICAL21 = _make("canonical21", _canon_names, _canon_bones)

# --- NYU 36, as in joint_data.mat: F1 (little) .. F4 (index), TH, then PALM_1..6 ---------------
# Along each finger the pairs run tip -> base: KNU3_A tip, KNU3_B DIP, KNU2_A DIP, KNU2_B PIP,
# KNU1_A PIP, KNU1_B MCP (KNU3 = distal phalanx, KNU2 = middle, KNU1 = proximal).
_NYU_FINGERS = ("F1", "F2", "F3", "F4", "TH")
_NYU_FINGER_GROUP = {"F1": "little", "F2": "ring", "F3": "middle", "F4": "index", "TH": "thumb"}
_NYU_PARTS = ("KNU3_A", "KNU3_B", "KNU2_A", "KNU2_B", "KNU1_A", "KNU1_B")
_nyu36_names = [f"{f}_{p}" for f in _NYU_FINGERS for p in _NYU_PARTS] + [
    f"PALM_{i}" for i in range(1, 7)
]
_nyu36_groups = [_NYU_FINGER_GROUP[f] for f in _NYU_FINGERS for _ in _NYU_PARTS] + ["palm"] * 6
_nyu36_bones = []
for _f in range(5):
    _b = 6 * _f
    _nyu36_bones += [(32, _b + 5)] + [(_b + k + 1, _b + k) for k in range(5)]
_nyu36_bones += [(32, 30), (32, 31), (32, 33), (32, 34), (32, 35)]
NYU36 = _make("nyu36", _nyu36_names, _nyu36_bones, _nyu36_groups)

# --- NYU 14, the evaluation subset in the community's order -----------------------------------
NYU14_FROM_NYU36 = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
_nyu14_names = [
    "little_tip", "little_root", "ring_tip", "ring_root", "middle_tip", "middle_root",
    "index_tip", "index_root", "thumb_tip", "thumb_root2", "thumb_root1",
    "wrist2", "wrist1", "palm",
]  # fmt: skip
_nyu14_bones = [
    (1, 0), (13, 1), (3, 2), (13, 3), (5, 4), (13, 5), (7, 6), (13, 7),
    (9, 8), (10, 9), (13, 10), (13, 11), (13, 12),
]  # fmt: skip
NYU14 = _make("nyu14", _nyu14_names, _nyu14_bones)

# --- ICVL 16: palm; thumb, index, middle, ring, little: root, mid, tip -------------------------
_icvl_names = ["palm"] + [f"{f}_{s}" for f in FINGERS for s in ("root", "mid", "tip")]
_icvl_bones = []
for _i in range(5):
    _base = 1 + 3 * _i
    _icvl_bones += [(0, _base), (_base, _base + 1), (_base + 1, _base + 2)]
ICVL16 = _make("icvl16", _icvl_names, _icvl_bones)

# --- MSRA 21, dataset order: wrist; index, middle, ring, little, thumb: mcp pip dip tip --------
_MSRA_ORDER = ("index", "middle", "ring", "little", "thumb")
_msra_names = ["wrist"] + [f"{f}_{s}" for f in _MSRA_ORDER for s in ("mcp", "pip", "dip", "tip")]
_msra_bones = []
for _i in range(5):
    _base = 1 + 4 * _i
    _msra_bones += [(0, _base), (_base, _base + 1), (_base + 1, _base + 2), (_base + 2, _base + 3)]
MSRA21 = _make("msra21", _msra_names, _msra_bones)

JOINT_SETS: dict[str, JointSet] = {s.name: s for s in (CANONICAL21, NYU36, NYU14, ICVL16, MSRA21)}
# The joint set each dataset is scored on.
DATASET_JOINT_SETS = {"nyu": NYU14, "icvl": ICVL16, "msra": MSRA21}


def get_joint_set(name: str | JointSet) -> JointSet:
    """Look a joint set up by name (or pass one through)."""
    if isinstance(name, JointSet):
        return name
    key = name.lower()
    if key in DATASET_JOINT_SETS:
        return DATASET_JOINT_SETS[key]
    try:
        return JOINT_SETS[key]
    except KeyError:
        known = sorted(JOINT_SETS)
        raise ValueError(f"unknown joint set {name!r}; choose one of {known}") from None


# --- mappings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointMapping:
    """``dst = weights @ src``; ``weights`` is ``(len(dst), len(src))``, rows sum to 1."""

    src: JointSet
    dst: JointSet
    weights: np.ndarray = field(repr=False)
    exact: bool


def _mapping(src: JointSet, dst: JointSet, table: dict, exact: bool) -> JointMapping:
    """``table`` maps each dst name to a src name or a list of src names to average."""
    w = np.zeros((len(dst), len(src)))
    for i, dname in enumerate(dst.names):
        srcs = table[dname]
        srcs = [srcs] if isinstance(srcs, str) else srcs
        for s in srcs:
            w[i, src.index(s)] += 1.0 / len(srcs)
    return JointMapping(src, dst, w, exact)


def _canonical_to_msra_table() -> dict:
    # MSRA calls the thumb's joints mcp/pip/dip by analogy; anatomically they are CMC/MCP/IP.
    thumb = {"mcp": "cmc", "pip": "mcp", "dip": "ip", "tip": "tip"}
    table = {"wrist": "wrist"}
    for f in _MSRA_ORDER:
        for s in ("mcp", "pip", "dip", "tip"):
            table[f"{f}_{s}"] = f"{f}_{thumb[s] if f == 'thumb' else s}"
    return table


_MAPPINGS: dict[tuple[str, str], JointMapping] = {}


def _register(m: JointMapping) -> None:
    _MAPPINGS[(m.src.name, m.dst.name)] = m


_register(
    _mapping(NYU36, NYU14, {NYU14.names[i]: NYU36.names[j] for i, j in enumerate(NYU14_FROM_NYU36)},
             exact=True)
)  # fmt: skip
_msra_table = _canonical_to_msra_table()
_register(_mapping(CANONICAL21, MSRA21, _msra_table, exact=True))
_register(_mapping(MSRA21, CANONICAL21, {v: k for k, v in _msra_table.items()}, exact=True))
_register(
    _mapping(
        CANONICAL21,
        NYU14,
        {
            **{f"{f}_tip": f"{f}_tip" for f in FINGERS},
            **{f"{f}_root": f"{f}_pip" for f in FINGERS[1:]},
            "thumb_root2": "thumb_ip",
            "thumb_root1": "thumb_mcp",
            "wrist1": "wrist",
            "wrist2": "wrist",
            "palm": ["wrist", "index_mcp", "middle_mcp", "ring_mcp", "little_mcp"],
        },
        exact=False,
    )
)
_register(
    _mapping(
        CANONICAL21,
        ICVL16,
        {
            "palm": "wrist",
            "thumb_root": "thumb_cmc",
            "thumb_mid": "thumb_mcp",
            "thumb_tip": "thumb_tip",
            **{f"{f}_root": f"{f}_mcp" for f in FINGERS[1:]},
            **{f"{f}_mid": f"{f}_pip" for f in FINGERS[1:]},
            **{f"{f}_tip": f"{f}_tip" for f in FINGERS[1:]},
        },
        exact=False,
    )
)


def get_mapping(src: str | JointSet, dst: str | JointSet) -> JointMapping:
    """The registered mapping from ``src`` to ``dst`` (identity when they are the same)."""
    s, d = get_joint_set(src), get_joint_set(dst)
    if s.name == d.name:
        return JointMapping(s, d, np.eye(len(s)), exact=True)
    try:
        return _MAPPINGS[(s.name, d.name)]
    except KeyError:
        known = ", ".join(f"{a}->{b}" for a, b in sorted(_MAPPINGS))
        raise ValueError(f"no mapping from {s.name} to {d.name}; known: {known}") from None


def convert_joints(joints, src: str | JointSet, dst: str | JointSet, exact_only: bool = False):
    """Map joints from one set to another.

    Args:
        joints: ``(..., J_src, 3)`` numpy array or torch tensor (xyz; for uvd only exact maps
            that select joints are meaningful).
        exact_only: refuse approximate anatomical mappings.
    Returns:
        ``(..., J_dst, 3)`` of the same type.
    """
    m = get_mapping(src, dst)
    if exact_only and not m.exact:
        raise ValueError(f"mapping {m.src.name}->{m.dst.name} is approximate")
    if joints.shape[-2] != len(m.src):
        raise ValueError(f"expected {len(m.src)} {m.src.name} joints, got shape {joints.shape}")
    if is_tensor(joints):
        import torch  # loaded already (a tensor exists); see handvox.camera's docstring

        w = torch.as_tensor(m.weights, dtype=joints.dtype, device=joints.device)
        return torch.einsum("ds,...sc->...dc", w, joints)
    return np.einsum("ds,...sc->...dc", m.weights, joints).astype(joints.dtype, copy=False)
