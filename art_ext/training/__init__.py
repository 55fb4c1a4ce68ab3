"""Training recipes (deterministic, CPU-friendly)."""

from art_ext.training.classifier import TrainConfig, accuracy, train_classifier

__all__ = ["TrainConfig", "accuracy", "train_classifier"]
