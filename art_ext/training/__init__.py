"""Training recipes (deterministic, CPU-friendly)."""

from art_ext.training.classifier import TrainConfig, accuracy, train_classifier
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser

__all__ = ["DenoiserTrainConfig", "TrainConfig", "accuracy", "train_classifier", "train_denoiser"]
