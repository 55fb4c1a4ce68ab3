"""Randomized-smoothing certification (Cohen, Rosenfeld & Kolter, 2019): sampling, PREDICT, CERTIFY, metrics."""

from art_ext.certification.metrics import (
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
)
from art_ext.certification.sampling import sample_counts
from art_ext.certification.smoothed_classifier import SmoothedClassifier
from art_ext.certification.smoothing import Certificates, certify, predict
from art_ext.types import ABSTAIN

__all__ = [
    "ABSTAIN",
    "Certificates",
    "SmoothedClassifier",
    "abstain_rate",
    "average_certified_radius",
    "certified_accuracy",
    "certified_accuracy_curve",
    "certify",
    "predict",
    "sample_counts",
]
