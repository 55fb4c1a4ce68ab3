"""Zoo denoiser entries: recipes, black-box isolation from the target, caching."""

import dataclasses

import pytest
import torch

from art_ext.models import zoo
from art_ext.models.classifiers import SmallCNN

SIGMA_TAGS = {"025": 0.25, "050": 0.5, "100": 1.0}
KINDS = ("mse", "stab", "stabmse", "bb_stabmse", "bb_stab")


def test_existing_classifier_recipes_are_unchanged() -> None:
    """Adding entries must not retrain (re-fingerprint) the foundation's classifiers (values of ZOO_FORMAT_VERSION 2)."""
    assert {name: zoo.get_entry(name).fingerprint() for name in
            ("digits_cnn", "digits_cnn_noise025", "digits_cnn_noise050", "digits_lenet", "digits_mlp")} == {
        "digits_cnn": "27a4d87b4c5c", "digits_cnn_noise025": "dae567f567f2", "digits_cnn_noise050": "9e73b50e4cf6",
        "digits_lenet": "71f2cf6b2a5b", "digits_mlp": "04771166cac9",
    }
    assert zoo.get_entry("digits_cnn_noise100").training_sigma == 1.0


def test_digits_denoiser_entries() -> None:
    fingerprints = set()
    for tag, sigma in SIGMA_TAGS.items():
        for kind in KINDS:
            entry = zoo.get_denoiser_entry(f"digits_dncnn_{kind}_{tag}")
            assert entry.sigma == sigma
            fingerprints.add(entry.fingerprint())
            if kind.startswith("bb_"):
                assert entry.access == "black-box" and entry.target == "digits_cnn"
                assert set(entry.classifiers) == {"digits_lenet", "digits_mlp"}
            elif kind != "mse":
                assert entry.access == "white-box" and entry.classifiers == ("digits_cnn",)
            if "stabmse" in kind:  # sequential: fine-tunes the MSE denoiser of the same sigma
                assert entry.init == f"digits_dncnn_mse_{tag}" and entry.train.objective == "stab+mse"
    assert len(fingerprints) == 15


def test_black_box_entry_refuses_its_target() -> None:
    entry = zoo.get_denoiser_entry("digits_dncnn_bb_stab_050")
    with pytest.raises(ValueError, match="target"):
        dataclasses.replace(entry, classifiers=("digits_lenet", "digits_cnn"))


def test_black_box_training_never_loads_the_target(tmp_path, monkeypatch) -> None:
    loaded: list[str] = []

    def fake_load(name, **kwargs):
        loaded.append(name)
        torch.manual_seed(0)
        return zoo.ZooModel(SmallCNN(width=4).eval(), zoo.get_entry(name), {})

    monkeypatch.setattr(zoo, "load", fake_load)
    base = zoo.get_denoiser_entry("digits_dncnn_bb_stab_050")
    entry = dataclasses.replace(base, name="test_tiny_bb", train=dataclasses.replace(base.train, epochs=1))
    zoo.register_denoiser(entry)
    try:
        first = zoo.load_denoiser("test_tiny_bb", cache=tmp_path)
        assert loaded == ["digits_lenet", "digits_mlp"]  # surrogates only, never digits_cnn
        assert first.info["classifiers"] == ["digits_lenet", "digits_mlp"]
        loaded.clear()
        again = zoo.load_denoiser("test_tiny_bb", cache=tmp_path)  # from the cache: no training, no classifier
        assert loaded == []
        assert all(torch.equal(a, b) for a, b in zip(first.module.state_dict().values(),
                                                     again.module.state_dict().values()))
        assert not list(tmp_path.glob("zoo/*.ckpt"))  # the resumable checkpoint is removed when done
    finally:
        del zoo.DENOISERS["test_tiny_bb"]
