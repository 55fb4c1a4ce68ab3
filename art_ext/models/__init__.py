"""Model definitions and the zoo of named, reproducibly trained models."""

from art_ext.models import zoo
from art_ext.models.classifiers import LeNet, MLP, Normalize, SmallCNN
from art_ext.models.denoisers import DnCNN, MemNet, dncnn_wide

__all__ = ["DnCNN", "LeNet", "MLP", "MemNet", "Normalize", "SmallCNN", "dncnn_wide", "zoo"]
