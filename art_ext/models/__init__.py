"""Model definitions and the zoo of named, reproducibly trained models."""

from art_ext.models import zoo
from art_ext.models.classifiers import LeNet, MLP, Normalize, SmallCNN

__all__ = ["LeNet", "MLP", "Normalize", "SmallCNN", "zoo"]
