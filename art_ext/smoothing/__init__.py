"""Randomized smoothing in one place: noise spaces, streaming sampling, Cohen PREDICT / CERTIFY, sequential CERTIFY,
Auto-Noise, smoothed inference (prediction / soft / weighted voting) and certification metrics.

This package knows no defence, attack or ART adapter: ``art_ext.defences`` builds base classifiers and imports it,
never the reverse.
"""

from art_ext.smoothing.auto_noise import DEFAULT_SIGMAS, auto_noise_certify
from art_ext.smoothing.certify import Certificates, certify, predict
from art_ext.smoothing.classifier import SmoothedClassifier
from art_ext.smoothing.inference import (
    DEFAULT_MODE,
    SmoothedInference,
    SmoothedInferenceConfig,
    labels_from_scores,
    smoothed_scores,
)
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams
from art_ext.smoothing.metrics import (
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
)
from art_ext.smoothing.noise import GaussianNoise, NoiseSpace, NormalizedNoise, PixelNoise, add_gaussian_noise
from art_ext.smoothing.sampling import sample_counts
from art_ext.smoothing.sequential import certify_sequential
from art_ext.types import ABSTAIN

__all__ = [
    "ABSTAIN",
    "DEFAULT_MODE",
    "DEFAULT_SIGMAS",
    "Certificates",
    "GaussianNoise",
    "NoiseKeys",
    "NoiseStreams",
    "NoiseSpace",
    "NormalizedNoise",
    "PixelNoise",
    "SmoothedClassifier",
    "SmoothedInference",
    "SmoothedInferenceConfig",
    "abstain_rate",
    "add_gaussian_noise",
    "auto_noise_certify",
    "average_certified_radius",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certify",
    "certify_sequential",
    "labels_from_scores",
    "predict",
    "sample_counts",
    "smoothed_scores",
]
