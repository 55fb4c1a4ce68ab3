"""art_ext: certified and empirical defences built on randomized smoothing, and adaptive attacks, for IBM ART.

Conventions (see README "Design"): inputs are float [B, C, H, W] images in [0, 1]; normalization is the model's
first layer; sigma is in the units of the declared noise space (pixels by default); eps and every
reported radius are in pixel units; ``ABSTAIN = -1`` wherever a smoothed classifier
declines to decide.
"""

from art_ext.smoothing import (
    Certificates,
    NormalizedNoise,
    PixelNoise,
    SmoothedClassifier,
    average_certified_radius,
    certified_accuracy,
    certify,
    certify_sequential,
    predict,
    sample_counts,
)
from art_ext.types import ABSTAIN

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "Certificates",
    "NormalizedNoise",
    "PixelNoise",
    "SmoothedClassifier",
    "average_certified_radius",
    "certified_accuracy",
    "certify",
    "certify_sequential",
    "predict",
    "sample_counts",
]
