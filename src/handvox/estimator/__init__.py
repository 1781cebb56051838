"""Inference: segmentation, the TSDF volume, the networks, model folders and the estimator that
chains them (:class:`HandPoseEstimator`)."""

from handvox.estimator.pipeline import DEFAULT_MODEL_DIR, HandPoseEstimator, Prediction

__all__ = ["DEFAULT_MODEL_DIR", "HandPoseEstimator", "Prediction"]
