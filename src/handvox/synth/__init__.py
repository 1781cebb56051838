"""Synthetic data: frame generators (the kinematic hand, pose transfer, a toy), the scene
primitives and the ray caster that draw them (a skinned-mesh rasteriser beside them), sensor
noise, and the job runner that writes them as a dataset."""
