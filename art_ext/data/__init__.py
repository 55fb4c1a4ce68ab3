"""Datasets as in-memory ``LabeledImages``: digits (embedded default), CIFAR-10, ImageNet-style folders."""

from art_ext.data.base import LabeledImages
from art_ext.data.cifar10 import load_cifar10
from art_ext.data.digits import load_digits
from art_ext.data.image_folder import load_image_folder

__all__ = ["LabeledImages", "load_cifar10", "load_digits", "load_image_folder"]
