"""The certified-training zoo entries: the Gaussian entries' recipe with another loss, shipped and verified on load,
and the recipe itself (it reproduces the Gaussian entries' training bit for bit with ``GaussianAugmentation``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from art_ext import zoo
from art_ext.data import load_digits
from art_ext.models import SmallCNN
from art_ext.training import TrainConfig, train_classifier
from art_ext.training.certified import (
    CertifiedTrainConfig,
    ConsistencyTraining,
    GaussianAugmentation,
    MACERTraining,
    SmoothAdvTraining,
    SmoothMixTraining,
    train_certified,
)
from art_ext.zoo import _shipped, loader
from art_ext.zoo.catalogue import certified as catalogue
from art_ext.zoo.ship import SHIPPED

TYPES = {"smoothadv": SmoothAdvTraining, "macer": MACERTraining, "smoothmix": SmoothMixTraining,
         "consistency": ConsistencyTraining}
NAMES = [f"digits_cnn_{method}{tag}" for method in TYPES for tag in ("025", "050")]


def no_training(*args, **kwargs):
    raise AssertionError("train_entry called")


def test_the_eight_entries_are_registered_and_shipped() -> None:
    assert sorted(zoo.names("digits_cnn_smoothadv*") + zoo.names("digits_cnn_macer*") + zoo.names(
        "digits_cnn_smoothmix*") + zoo.names("digits_cnn_consistency*")) == sorted(NAMES)
    assert set(NAMES) <= set(SHIPPED) and set(NAMES) <= set(zoo.shipped_manifest()["models"])


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_is_the_gaussian_recipe_with_its_method(name) -> None:
    entry = zoo.get_entry(name, kind="classifier")
    sigma = 0.25 if name.endswith("025") else 0.5
    gaussian = zoo.get_entry(f"digits_cnn_noise{name[-3:]}", kind="classifier")
    assert isinstance(entry.train, CertifiedTrainConfig)
    assert isinstance(entry.train.method, TYPES[name[len("digits_cnn_"):-3]])
    assert entry.training_sigma == entry.train.method.sigma == sigma
    assert (entry.architecture, entry.arch_kwargs) == (gaussian.architecture, gaussian.arch_kwargs)
    shared = ("epochs", "batch_size", "lr", "weight_decay", "max_shift", "seed", "noise_sigma")
    assert {k: getattr(entry.train, k) for k in shared} == {k: getattr(gaussian.train, k) for k in shared}
    # the chosen configuration is one of the validation candidates
    assert entry.train.method in catalogue.candidates(name[len("digits_cnn_"):-3], sigma)


def test_a_changed_method_field_changes_the_fingerprint() -> None:
    entry = zoo.get_entry("digits_cnn_macer025")
    changed = dataclasses.replace(entry, train=dataclasses.replace(
        entry.train, method=dataclasses.replace(entry.train.method, lbd=entry.train.method.lbd + 1)))
    assert changed.fingerprint() != entry.fingerprint()


def test_shipped_weights_load_without_training_and_match_the_manifest(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "train_entry", no_training)
    for name in NAMES:
        record = zoo.shipped_manifest()["models"][name]
        model = zoo.load(name, kind="classifier")
        assert model.info["source"] == "shipped" and model.sha256 == record["sha256"]
        assert model.info["method"] == type(zoo.get_entry(name).train.method).__name__
        assert model.info["train_seconds"] > 0 and not model.module.training
        assert (_shipped.WEIGHTS_DIR / record["file"]).stat().st_size == record["bytes"]


def test_the_recipe_with_gaussian_augmentation_is_the_gaussian_entries_training() -> None:
    torch.set_num_threads(1)
    data = load_digits("train").head(150)
    torch.manual_seed(0)
    plain = SmallCNN(width=4)
    history = train_classifier(plain, data, TrainConfig(epochs=2, noise_sigma=0.25))
    torch.manual_seed(0)
    certified = SmallCNN(width=4)
    again = train_certified(certified, data, CertifiedTrainConfig(epochs=2, method=GaussianAugmentation(0.25)))
    # same-kernel: the same draws, forwards and Adam steps in the same order on one thread
    assert history == again
    # same-kernel: as above, the same training twice
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), certified.state_dict().values(),
                                                 strict=True))
    assert not certified.training


def test_recipe_validation() -> None:
    with pytest.raises(TypeError, match="method must be one of GaussianAugmentation"):
        CertifiedTrainConfig(epochs=1)
    with pytest.raises(ValueError, match=r"noise_sigma \(0.5\) must equal method.sigma \(0.25\)"):
        CertifiedTrainConfig(noise_sigma=0.5, method=MACERTraining(0.25))
    with pytest.raises(ValueError, match="takes no guiding classifiers"):
        CertifiedTrainConfig(epochs=1, method=MACERTraining(0.25)).fit(
            SmallCNN(width=4), lambda split: load_digits(split).head(8), classifiers=[SmallCNN(width=4)])
