"""Zoo denoiser entries: recipes, black-box isolation from the target, caching through the one load path."""

import dataclasses

import pytest
import torch

from art_ext import zoo
from art_ext.testing import tiny_cnn

SIGMA_TAGS = {"025": 0.25, "050": 0.5, "100": 1.0}
KINDS = ("mse", "stab", "stabmse", "bb_stabmse", "bb_stab")


def test_digits_denoiser_entries() -> None:
    fingerprints = set()
    for tag, sigma in SIGMA_TAGS.items():
        for kind in KINDS:
            entry = zoo.get_entry(f"digits_dncnn_{kind}_{tag}", kind="denoiser")
            assert entry.sigma == sigma and entry.arch_kwargs == zoo.DIGITS_DNCNN
            fingerprints.add(entry.fingerprint())
            if kind.startswith("bb_"):
                assert entry.access == "black-box" and entry.target == "digits_cnn"
                assert entry.classifiers == zoo.DIGITS_SURROGATES == ("digits_lenet", "digits_mlp")
            elif kind != "mse":
                assert entry.access == "white-box" and entry.classifiers == ("digits_cnn",)
            else:
                assert entry.classifiers == () and entry.target is None
            if "stabmse" in kind:  # sequential: fine-tunes the MSE denoiser of the same sigma
                assert entry.init == f"digits_dncnn_mse_{tag}" and entry.train.objective == "stab+mse"
    assert len(fingerprints) == 15


def test_black_box_entry_refuses_its_target() -> None:
    entry = zoo.get_entry("digits_dncnn_bb_stab_050", kind="denoiser")
    with pytest.raises(ValueError, match="black-box denoiser 'digits_dncnn_bb_stab_050' lists its target "
                                         "'digits_cnn' among its training classifiers"):
        dataclasses.replace(entry, classifiers=("digits_lenet", "digits_cnn"))


def test_denoiser_entry_validation_names_the_bad_value() -> None:
    entry = zoo.get_entry("digits_dncnn_stab_050", kind="denoiser")
    with pytest.raises(ValueError, match="objective 'stab' needs classifiers"):
        dataclasses.replace(entry, classifiers=())
    with pytest.raises(ValueError, match=r"access must be one of \('white-box', 'black-box'\), got 'grey-box'"):
        dataclasses.replace(entry, access="grey-box")
    with pytest.raises(ValueError, match="unknown denoiser architecture 'unet'"):
        dataclasses.replace(entry, architecture="unet")


def test_black_box_training_never_loads_the_target(tmp_path, monkeypatch) -> None:
    loaded: list[tuple[str, str | None]] = []
    real_load = zoo.loader.load

    def spy_load(name, **kwargs):  # the dependencies train_entry loads: fakes, so that no classifier is trained
        loaded.append((name, kwargs.get("kind")))
        if kwargs.get("kind") == "classifier":
            return zoo.ZooModel(tiny_cnn(size=16), zoo.get_entry(name), {})
        return real_load(name, **kwargs)

    monkeypatch.setattr(zoo.loader, "load", spy_load)
    base = zoo.get_entry("digits_dncnn_bb_stab_050", kind="denoiser")
    entry = dataclasses.replace(base, name="test_tiny_bb", train=dataclasses.replace(base.train, epochs=1))
    monkeypatch.setitem(zoo.REGISTRY._entries, entry.name, entry)
    first = zoo.load("test_tiny_bb", cache=tmp_path)
    assert loaded == [("digits_lenet", "classifier"), ("digits_mlp", "classifier")]  # never digits_cnn
    assert first.info["classifiers"] == ["digits_lenet", "digits_mlp"] and first.info["sigma"] == 0.5
    assert first.info["objective"] == "stab" and first.info["access"] == "black-box"
    assert list(tmp_path.glob("zoo/*")) == [zoo.cache_file(entry, tmp_path)]  # the checkpoint is removed when done
    loaded.clear()
    again = zoo.load("test_tiny_bb", cache=tmp_path)  # from the cache: no training, no classifier
    assert loaded == [] and again.info == {**first.info, "source": "cache"}
    # same-kernel: the checkpoint's own tensors
    assert all(torch.equal(a, b) for a, b in zip(first.module.state_dict().values(),
                                                 again.module.state_dict().values(), strict=True))
