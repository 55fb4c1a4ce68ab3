"""Defences: ``nn.Module``s that build a base classifier for smoothing, with their ART adapters."""

from art_ext.defences.denoised_smoothing import DenoisedClassifier, DenoiserPreprocessor

__all__ = ["DenoisedClassifier", "DenoiserPreprocessor"]
