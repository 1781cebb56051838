"""Evaluation as the community does it: metrics, prediction and label files, reports, and the
synthetic test protocol."""
