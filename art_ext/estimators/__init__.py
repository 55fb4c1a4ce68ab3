"""ART-facing adapters (numpy in, numpy out) over art_ext's torch cores."""

from art_ext.estimators.bn_adaptation import CertificationThroughAdaptationEstimator
from art_ext.estimators.randomized_smoothing import RandomizedSmoothingEstimator
from art_ext.estimators.smoothed_inference import SmoothedInferenceClassifier

__all__ = ["CertificationThroughAdaptationEstimator", "RandomizedSmoothingEstimator", "SmoothedInferenceClassifier"]
