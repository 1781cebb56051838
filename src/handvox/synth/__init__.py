"""Synthetic data: frame generators (the kinematic hand, pose transfer, a toy), the renderer and
sensor noise that draw them, and the job runner that writes them as a dataset."""
