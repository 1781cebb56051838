"""handvox: 3D hand pose estimation from a single depth image with volumetric 3D CNNs."""

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.io.record import HandRecord
from handvox.joints import CANONICAL21, ICVL16, MSRA21, NYU14, NYU36, JointSet, get_joint_set

__version__ = "0.1.0"

__all__ = [
    "CANONICAL21",
    "ICVL16",
    "MSRA21",
    "NYU14",
    "NYU36",
    "Camera",
    "DataError",
    "HandRecord",
    "HandvoxError",
    "JointSet",
    "get_joint_set",
]
