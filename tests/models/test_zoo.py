import dataclasses

import pytest
import torch

from art_ext.data import load_digits
from art_ext.models import SmallCNN, zoo
from art_ext.training import TrainConfig, accuracy


def test_registry_lists_the_default_models_and_rejects_unknown_names():
    for name in ("digits_cnn", "digits_cnn_noise025", "digits_cnn_noise050", "digits_lenet", "digits_mlp"):
        assert name in zoo.names()
    assert zoo.get_entry("digits_cnn_noise050").training_sigma == 0.5
    with pytest.raises(ValueError, match="unknown zoo model 'resnet'.*digits_cnn"):
        zoo.load("resnet")


def test_fingerprint_tracks_the_recipe():
    entry = zoo.get_entry("digits_cnn")
    assert entry.fingerprint() == zoo.get_entry("digits_cnn").fingerprint()
    changed = dataclasses.replace(entry, train=dataclasses.replace(entry.train, epochs=31))
    assert changed.fingerprint() != entry.fingerprint()


def test_digits_normalization_constants_match_the_training_split():
    x = load_digits("train").x
    assert x.mean().item() == pytest.approx(zoo.DIGITS_MEAN[0], abs=0.005)
    assert x.std().item() == pytest.approx(zoo.DIGITS_STD[0], abs=0.005)


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    entry = zoo.ZooEntry("tiny_test_cnn", "small_cnn", {"width": 4, "mean": zoo.DIGITS_MEAN, "std": zoo.DIGITS_STD},
                         TrainConfig(epochs=1, seed=3), "test entry")
    monkeypatch.setitem(zoo.REGISTRY, entry.name, entry)
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    first = zoo.load(entry.name)
    files = list((tmp_path / "zoo").glob("tiny_test_cnn-*.pt"))
    assert len(files) == 1 and entry.fingerprint() in files[0].name
    assert not first.module.training and first.info["fingerprint"] == entry.fingerprint()
    cached = zoo.load(entry.name)
    again = zoo.train_entry(entry)
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, cached.module.state_dict()[key])
        assert torch.equal(value, again.module.state_dict()[key])
    assert cached.info == first.info
    state = torch.get_rng_state()
    entry.build()
    assert torch.equal(state, torch.get_rng_state())  # building never disturbs the global RNG


@pytest.mark.slow
def test_default_models_reach_their_accuracy_and_noise_training_helps_under_noise():
    test = load_digits("test")
    standard = zoo.load("digits_cnn").module
    noisy = zoo.load("digits_cnn_noise050").module
    assert accuracy(standard, test) >= 0.97
    assert accuracy(noisy, test) >= 0.90
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    # one noise draw at sigma 0.5: the standard CNN collapses (~0.1-0.3), the noise-trained one keeps ~0.85
    assert accuracy(noisy, test, sigma=0.5, generator=g()) > accuracy(standard, test, sigma=0.5, generator=g()) + 0.3


def test_train_config_validation():
    with pytest.raises(ValueError, match="noise_sigma must be finite and >= 0, got -1"):
        TrainConfig(noise_sigma=-1)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_small_cnn_takes_pixels_and_normalizes_inside():
    model = SmallCNN(mean=(0.5,), std=(0.25,)).eval()
    assert model.net[0].mean.item() == 0.5 and model(torch.rand(2, 1, 16, 16)).shape == (2, 10)
