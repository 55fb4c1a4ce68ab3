"""Model definitions: classifier and denoiser architectures, and the offline RobustBench loader.

The zoo of named, reproducibly trained models is ``art_ext.zoo`` (it sits above ``art_ext.training``; nothing here
imports training or attack code).
"""

from art_ext.models.classifiers import MLP, LeNet, Normalize, SmallCNN
from art_ext.models.denoisers import DnCNN, MemNet, dncnn_wide
from art_ext.models.unet import UNet

__all__ = ["MLP", "DnCNN", "LeNet", "MemNet", "Normalize", "SmallCNN", "UNet", "dncnn_wide"]
