"""Inverse kinematics: joint angles of the kinematic hand from labelled joints (pose transfer).

The paper (Appendix B.1, Eqn 2) recovers the joint angles of each annotated frame so that the
pose can be put on other hand models: it learns the subject's bone lengths (mean distance
between the two labelled ends of each bone), then minimises ``sum_i |R_i(p) - O_i|^2`` over the
pose ``p`` with joint limits, by particle swarm optimisation. Here:

- :func:`fit_subject` learns one subject's :class:`~handvox.hand.kinematics.HandBones` and marker
  offsets from a few hundred of its labelled frames. It starts from the paper's idea (bone
  lengths from the mean distances between labelled points that are rigidly linked in the
  model: for MSRA / canonical joints every bone, for NYU only the palm's and the thumb's distal
  phalanx) and then refines bones, offsets and the frames' poses jointly (Adam), with priors
  that keep offsets small and the bones near the base shape's proportions. Labels that were
  not drawn on a rigid skeleton (real annotations) leave bone-length noise behind, so the fit
  is a least-squares compromise over all the frames, as the paper's mean length is.
- :func:`solve_ik` recovers the poses of any number of frames, batched: a closed-form rigid
  alignment (weighted Kabsch) of the subject's rest markers to the labels gives the root, then
  Levenberg-Marquardt (``method="gradient"``: damped Gauss-Newton on the analytic marker
  Jacobian, projected onto the joint limits) or the paper's particle swarm (``method="pso"``)
  fits all 30 DOF. A weak prior settles what the markers cannot see: DOFs stay near the
  subject's mean pose (e.g. the index CMC), and each DIP near 2/3 of its PIP's flexion (ICVL
  labels no DIP angle; NYU only splits PIP from DIP through the PIP-tip distance).
- :func:`fit_subjects` / :func:`cluster_subjects` split frames of several subjects by the
  distances between rigidly linked labels (the NYU test set has three distinct hand sizes) and
  fit one model per cluster.

Modules: :mod:`~handvox.hand.ik.subject` (the subject model, which labels are rigidly linked,
which frames are whose), :mod:`~handvox.hand.ik.solve` (poses of frames given a subject) and
:mod:`~handvox.hand.ik.fit` (learning subjects from labels). All tensors are in the camera frame
(OpenCV, mm); poses follow :mod:`handvox.hand.kinematics`.
"""

from handvox.hand.ik.fit import fit_subject, fit_subjects
from handvox.hand.ik.solve import (
    DIP_PIP_RATIO,
    PRIOR_WEIGHT,
    IKResult,
    kabsch,
    marker_jacobian,
    rigid_init,
    solve_ik,
    solve_ik_subjects,
)
from handvox.hand.ik.subject import (
    SubjectModel,
    assign_subjects,
    cluster_subjects,
    rigid_pairs,
)

__all__ = [
    "DIP_PIP_RATIO",
    "PRIOR_WEIGHT",
    "IKResult",
    "SubjectModel",
    "assign_subjects",
    "cluster_subjects",
    "fit_subject",
    "fit_subjects",
    "kabsch",
    "marker_jacobian",
    "rigid_init",
    "rigid_pairs",
    "solve_ik",
    "solve_ik_subjects",
]
