"""The hand itself: the 30-DOF kinematic model, hand shapes, natural poses, inverse kinematics
and BVH. Nothing here knows about depth images or networks."""
