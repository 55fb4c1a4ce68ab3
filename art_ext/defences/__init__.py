"""Defences: modules that build or wrap classifiers (smoothed inference, ...)."""
