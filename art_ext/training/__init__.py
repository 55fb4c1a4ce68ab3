"""Training recipes (deterministic, CPU-friendly)."""

from art_ext.training.adversarial import AdversarialTrainConfig, robust_accuracy, train_adversarial
from art_ext.training.classifier import TrainConfig, accuracy, train_classifier
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser

__all__ = [
    "AdversarialTrainConfig", "DenoiserTrainConfig", "TrainConfig", "accuracy", "robust_accuracy",
    "train_adversarial", "train_classifier", "train_denoiser",
]
