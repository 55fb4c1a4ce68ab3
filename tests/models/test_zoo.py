"""The zoo: one registry for both kinds, golden fingerprints (cache keys), one cache path, deterministic training."""

import dataclasses
import json
import subprocess
import sys
import warnings

import pytest
import torch

from art_ext import zoo
from art_ext.data import load_digits
from art_ext.models import SmallCNN
from art_ext.training import TrainConfig, accuracy
from art_ext.zoo._registry import Registry

#: every entry's fingerprint at ZOO_FORMAT_VERSION 2: the names of the files cached under ~/.cache/art_ext/zoo and
#: the weights behind the benchmark rows. A change here retrains the entry for every user: only on purpose.
GOLDEN_FINGERPRINTS = {
    "digits_cnn": "27a4d87b4c5c",
    "digits_cnn_cni": "e79244280ef2",
    "digits_cnn_consistency025": "caa723a102c3",
    "digits_cnn_consistency050": "08505ab828dc",
    "digits_cnn_macer025": "0b0400030f9b",
    "digits_cnn_macer050": "98d5fcbd005b",
    "digits_cnn_smoothadv025": "789eb472def5",
    "digits_cnn_smoothadv050": "efd9ea318aca",
    "digits_cnn_smoothmix025": "b10c1b647ace",
    "digits_cnn_smoothmix050": "3a02d8414f94",
    "digits_cnn_noise025": "dae567f567f2",
    "digits_cnn_noise050": "9e73b50e4cf6",
    "digits_cnn_noise100": "aa95b6e2f200",
    "digits_cnn_pgd_l2": "bd791b407f6d",
    "digits_cnn_pgd_linf": "298fcbe732dc",
    "digits_lenet": "71f2cf6b2a5b",
    "digits_mlp": "04771166cac9",
    "digits_dncnn_bb_stab_025": "5855182b068b",
    "digits_dncnn_bb_stab_050": "af9667d63863",
    "digits_dncnn_bb_stab_100": "5b95906cbebc",
    "digits_dncnn_bb_stabmse_025": "97444a68a274",
    "digits_dncnn_bb_stabmse_050": "f79d78b475f9",
    "digits_dncnn_bb_stabmse_100": "afa70f0b5f7c",
    "digits_dncnn_mse_025": "e09b9ef39e63",
    "digits_dncnn_mse_050": "3e47f6f089f9",
    "digits_dncnn_mse_100": "9ccde11ac233",
    "digits_dncnn_stab_025": "fb5a6e5502f2",
    "digits_dncnn_stab_050": "118972475562",
    "digits_dncnn_stab_100": "dc9244a23fcb",
    "digits_dncnn_stabmse_025": "da9479913178",
    "digits_dncnn_stabmse_050": "d5752d4d03c1",
    "digits_dncnn_stabmse_100": "5f269f87f277",
    "digits_ddpm": "3caf5234e9c8",
    "digits_unet_nn_025": "94130d63133c",
    "digits_unet_nn_050": "0b5cc95313ed",
    "digits_unet_nn_100": "7f186815e903",
    "digits_unet_nn_norescale_050": "e05230632369",
    "digits_unet_nn_norescale_100": "b09c84c9c72a",
    "digits_unet_px_025": "29248b6ef85e",
    "digits_unet_px_050": "bf8d82ce7fb2",
}


def test_every_registered_entry_has_its_golden_fingerprint():
    assert {name: zoo.get_entry(name).fingerprint() for name in zoo.names()} == GOLDEN_FINGERPRINTS


def test_one_registry_holds_all_three_kinds():
    classifiers, denoisers = zoo.names(kind="classifier"), zoo.names(kind="denoiser")
    diffusion = zoo.names(kind="diffusion")
    assert len(classifiers) == 17 and len(denoisers) == 22 and diffusion == ["digits_ddpm"]
    assert sorted(classifiers + denoisers + diffusion) == zoo.names() == sorted(GOLDEN_FINGERPRINTS)
    assert all(isinstance(zoo.get_entry(n), zoo.ClassifierEntry) for n in classifiers)
    assert all(isinstance(zoo.get_entry(n), (zoo.DenoiserEntry, zoo.RescaledLossDenoiserEntry)) for n in denoisers)
    assert sum(isinstance(zoo.get_entry(n), zoo.RescaledLossDenoiserEntry) for n in denoisers) == 7
    assert all(isinstance(zoo.get_entry(n), zoo.DiffusionEntry) for n in diffusion)


@pytest.mark.parametrize(
    "name, change",
    [
        ("digits_cnn", lambda e: dataclasses.replace(e, train=dataclasses.replace(e.train, epochs=31))),
        ("digits_cnn", lambda e: dataclasses.replace(e, train=dataclasses.replace(e.train, seed=1))),
        ("digits_cnn", lambda e: dataclasses.replace(e, arch_kwargs={**e.arch_kwargs, "width": 8})),
        ("digits_cnn_pgd_l2", lambda e: dataclasses.replace(e, train=dataclasses.replace(e.train, eps=0.25))),
        ("digits_cnn_cni", lambda e: dataclasses.replace(e, finetune=dataclasses.replace(e.finetune, epochs=9))),
        ("digits_dncnn_mse_050", lambda e: dataclasses.replace(e, train=dataclasses.replace(e.train, lr=2e-3))),
        ("digits_dncnn_stab_050", lambda e: dataclasses.replace(e, classifiers=("digits_lenet",))),
        ("digits_dncnn_stabmse_050", lambda e: dataclasses.replace(e, init="digits_dncnn_mse_025")),
    ],
)
def test_a_changed_recipe_field_changes_the_fingerprint(name, change):
    entry = zoo.get_entry(name)
    assert change(entry).fingerprint() != GOLDEN_FINGERPRINTS[name]


def test_a_changed_parent_changes_the_fine_tuned_fingerprint(monkeypatch):
    parent = zoo.get_entry("digits_cnn_noise025")
    monkeypatch.setitem(zoo.REGISTRY._entries, parent.name,
                        dataclasses.replace(parent, train=dataclasses.replace(parent.train, epochs=61)))
    assert zoo.get_entry("digits_cnn_cni").fingerprint() != GOLDEN_FINGERPRINTS["digits_cnn_cni"]
    assert zoo.get_entry("digits_cnn").fingerprint() == GOLDEN_FINGERPRINTS["digits_cnn"]


def test_lookup_by_kind_and_unknown_names():
    assert zoo.get_entry("digits_cnn_noise050", kind="classifier").training_sigma == 0.5
    with pytest.raises(ValueError, match="unknown zoo entry 'resnet'; known: digits_cnn, digits_cnn_cni"):
        zoo.load("resnet")
    with pytest.raises(ValueError, match="unknown zoo denoiser 'digits_dncnn_x'; known: digits_dncnn_bb_stab_025"):
        zoo.get_entry("digits_dncnn_x", kind="denoiser")
    with pytest.raises(ValueError, match="zoo entry 'digits_cnn' is a classifier, expected a denoiser"):
        zoo.load("digits_cnn", kind="denoiser")
    with pytest.raises(ValueError,
                       match=r"kind must be one of \('classifier', 'denoiser', 'diffusion'\), got 'model'"):
        zoo.names(kind="model")


def test_names_filter_with_fnmatch_patterns():
    assert zoo.names("digits_cnn_noise*") == ["digits_cnn_noise025", "digits_cnn_noise050", "digits_cnn_noise100"]
    assert zoo.names(["digits_lenet", "digits_m?p"]) == ["digits_lenet", "digits_mlp"]
    assert zoo.names("*_050", kind="denoiser") == [
        "digits_dncnn_bb_stab_050", "digits_dncnn_bb_stabmse_050", "digits_dncnn_mse_050", "digits_dncnn_stab_050",
        "digits_dncnn_stabmse_050", "digits_unet_nn_050", "digits_unet_nn_norescale_050", "digits_unet_px_050",
    ]
    assert zoo.names("*_050", kind="classifier") == []


def test_registry_mechanics_warn_on_overwrite_and_do_nothing_else():
    registry = Registry(("classifier", "denoiser"))
    first = zoo.get_entry("digits_mlp")
    assert registry.register(first) is first and registry.names() == ["digits_mlp"]
    second = dataclasses.replace(first, description="replaced")
    with pytest.warns(UserWarning, match="zoo entry 'digits_mlp' replaced"):
        registry.register(second)
    assert registry.get("digits_mlp") is second and len(registry) == 1
    assert registry.unregister("digits_mlp") is second and "digits_mlp" not in registry
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register(first)  # a new name: no warning


@pytest.mark.slow
def test_importing_the_models_package_imports_no_attack_or_training_code():
    code = ("import json, sys, art_ext.models, art_ext.models.robustbench; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('art_ext.attacks', 'art_ext.training', "
            "'art_ext.zoo')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_digits_normalization_constants_match_the_training_split():
    x = load_digits("train").x
    assert x.mean().item() == pytest.approx(zoo.DIGITS_MEAN[0], abs=0.005)
    assert x.std().item() == pytest.approx(zoo.DIGITS_STD[0], abs=0.005)


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    entry = zoo.ClassifierEntry(
        "tiny_test_cnn", "small_cnn", {"width": 4, "mean": zoo.DIGITS_MEAN, "std": zoo.DIGITS_STD},
        TrainConfig(epochs=1, seed=3), "test entry",
    )
    monkeypatch.setitem(zoo.REGISTRY._entries, entry.name, entry)
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    first = zoo.load(entry.name)
    files = list((tmp_path / "zoo").glob("tiny_test_cnn-*.pt"))
    assert files == [tmp_path / "zoo" / f"tiny_test_cnn-{entry.fingerprint()}.pt"] == [zoo.cache_file(entry)]
    assert not first.module.training and first.info["fingerprint"] == entry.fingerprint()
    assert first.info["threads"] == zoo.TRAINING_THREADS == 1
    assert first.info["test_accuracy"] == accuracy(first.module, load_digits("test"))
    cached = zoo.load(entry.name)
    again = zoo.train_entry(entry)
    for key, value in first.module.state_dict().items():
        # same-kernel: the checkpoint's own tensors, and a retraining on this machine
        assert torch.equal(value, cached.module.state_dict()[key])
        # same-kernel: a retraining with the same seed on this machine
        assert torch.equal(value, again.module.state_dict()[key])
    assert first.info["source"] == "trained" and cached.info["source"] == "cache"
    assert {**cached.info, "source": None} == {**first.info, "source": None}
    assert not list((tmp_path / "zoo").glob("*.ckpt"))
    state = torch.get_rng_state()
    entry.build()
    # same-kernel: the global RNG state, not a float output
    assert torch.equal(state, torch.get_rng_state())  # building never disturbs the global RNG


def test_entry_validation_names_the_bad_value():
    base = zoo.get_entry("digits_cnn")
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; expected one of"):
        dataclasses.replace(base, architecture="resnet")
    with pytest.raises(ValueError, match="parent and finetune go together.*parent='digits_cnn', finetune=NoneType"):
        dataclasses.replace(base, parent="digits_cnn")
    with pytest.raises(ValueError, match="dataset 'cifar10' cannot be trained here; expected one of \\['digits'\\]"):
        zoo.train_entry(dataclasses.replace(base, dataset="cifar10"))
    with pytest.raises(ValueError, match="takes no guiding classifiers; got 1"):
        base.train.fit(SmallCNN(width=4), load_digits, classifiers=[SmallCNN(width=4)])


@pytest.mark.slow
def test_default_models_reach_their_accuracy_and_noise_training_helps_under_noise():
    test = load_digits("test")
    standard = zoo.load("digits_cnn").module
    noisy = zoo.load("digits_cnn_noise050").module
    assert accuracy(standard, test) >= 0.97
    assert accuracy(noisy, test) >= 0.90
    # one noise draw at sigma 0.5: the standard CNN collapses (~0.1-0.3), the noise-trained one keeps ~0.85
    noisy_acc = accuracy(noisy, test, sigma=0.5, generator=torch.Generator().manual_seed(0))
    standard_acc = accuracy(standard, test, sigma=0.5, generator=torch.Generator().manual_seed(0))
    assert noisy_acc > standard_acc + 0.3


def test_train_config_validation():
    with pytest.raises(ValueError, match="noise_sigma must be finite and >= 0, got -1"):
        TrainConfig(noise_sigma=-1)
    with pytest.raises(ValueError, match="epochs and batch_size must be >= 1, got 0, 64"):
        TrainConfig(epochs=0)


def test_small_cnn_takes_pixels_and_normalizes_inside():
    model = SmallCNN(mean=(0.5,), std=(0.25,)).eval()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert model.net[0].mean.item() == 0.5
    # normalization is the first layer: the rest of the network sees (x - 0.5) / 0.25
    assert torch.allclose(model(x), model.net[1:]((x - 0.5) / 0.25))
