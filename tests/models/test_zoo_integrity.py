"""Zoo weights identified by content: every file stores its entry's name, recipe fingerprint and the sha256 of its
tensors; a file that fails any of them is moved aside and retrained, never loaded; a read-only cache fails before
training; the shipped reference weights load with no training and reproduce from their recipes."""

import dataclasses
import json
import os
import random
import warnings
from pathlib import Path

import pytest
import torch

from art_ext import zoo
from art_ext.ops.hashing import state_dict_sha256, tensor_sha256
from art_ext.training import TrainConfig
from art_ext.zoo import _cache, _shipped, loader

#: the models of the default suite (benchmarks/suites/default.toml) and the README's examples
DEFAULT_AND_README = ("digits_cnn", "digits_cnn_noise025", "digits_cnn_noise050", "digits_lenet", "digits_mlp",
                      "digits_dncnn_stabmse_050", "digits_ddpm")


def tiny_entry(name: str, seed: int) -> zoo.ClassifierEntry:
    return zoo.ClassifierEntry(name, "small_cnn", {"width": 4, "mean": zoo.DIGITS_MEAN, "std": zoo.DIGITS_STD},
                               TrainConfig(epochs=1, seed=seed), "test entry")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Two tiny registered entries (one epoch, width 4) and an empty cache folder; returns (entry_a, entry_b)."""
    a, b = tiny_entry("tiny_test_a", 3), tiny_entry("tiny_test_b", 4)
    for entry in (a, b):
        monkeypatch.setitem(zoo.REGISTRY._entries, entry.name, entry)
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path / "cache"))
    return a, b


def no_training(*args, **kwargs):
    raise AssertionError("train_entry called")


def test_state_dict_sha256_depends_on_contents_only():
    g = torch.Generator().manual_seed(0)
    state = {"b.weight": torch.randn(3, 2, generator=g), "a.bias": torch.randn(3, generator=g)}
    digest = state_dict_sha256(state)
    assert len(digest) == 64 and digest == state_dict_sha256(dict(reversed(list(state.items()))))  # key order
    assert digest == state_dict_sha256({k: v.t().contiguous().t() for k, v in state.items()})  # memory layout
    flipped = state["a.bias"].clone()
    flipped.view(torch.int32)[0] ^= 1  # one bit of one float
    assert state_dict_sha256({**state, "a.bias": flipped}) != digest
    assert state_dict_sha256({**state, "a.bias": state["a.bias"].double()}) != digest  # dtype
    assert state_dict_sha256({**state, "a.bias": state["a.bias"].reshape(1, 3)}) != digest  # shape
    assert state_dict_sha256({"c.bias" if k == "a.bias" else k: v for k, v in state.items()}) != digest  # key name
    module = torch.nn.Linear(2, 3)
    assert state_dict_sha256(module) == state_dict_sha256(module.state_dict())
    assert tensor_sha256(torch.zeros(2, 2)) != tensor_sha256(torch.zeros(4))
    with pytest.raises(TypeError, match=r"state_dict\['x'\] must be a tensor, got int"):
        state_dict_sha256({"x": 1})


def test_the_hash_definition_is_pinned():
    """Every shipped and cached file records this hash: changing its definition makes all of them fail to verify."""
    state = {"x": torch.zeros(3), "n": torch.tensor(7), "b": torch.ones(2, 1, dtype=torch.bfloat16)}
    assert state_dict_sha256({"x": torch.zeros(3)}) == (
        "dd3ab319469ecb162a0e1fc098b2c98df228b19f246907003ffc8e2b7916c0b7")
    assert state_dict_sha256(state) == "62ad189226bc4b2724ec960101fa084ec7707cc8b9690b59b1da32d377b36a48"


def test_a_cache_file_stores_name_fingerprint_and_the_hash_of_its_tensors(tiny):
    a, _ = tiny
    trained = zoo.load(a.name)
    saved = torch.load(zoo.cache_file(a), weights_only=True)
    assert (saved["name"], saved["fingerprint"]) == (a.name, a.fingerprint())
    assert saved["sha256"] == state_dict_sha256(saved["state_dict"]) == state_dict_sha256(trained.module)
    assert trained.sha256 == trained.info["sha256"] == saved["sha256"] and trained.info["source"] == "trained"
    cached = zoo.load(a.name)
    assert cached.info["source"] == "cache" and cached.sha256 == trained.sha256


def _swap(path: Path, other: Path) -> None:
    path.write_bytes(other.read_bytes())  # another entry's weights under this entry's name


def _truncate(path: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path: Path, other: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


def _garbage_after_header(path: Path, other: Path) -> None:  # a zip archive whose contents are damaged
    data = bytearray(path.read_bytes())
    data[200:4000] = random.Random(1).randbytes(3800)
    path.write_bytes(bytes(data))


def _empty(path: Path, other: Path) -> None:
    path.write_bytes(b"")


def _tamper_tensor(path: Path, other: Path) -> None:
    saved = torch.load(path, weights_only=True)
    key = sorted(saved["state_dict"])[0]
    saved["state_dict"][key] = saved["state_dict"][key] + 1e-3  # the stored sha256 is left as it was
    torch.save(saved, path)


def _other_fingerprint(path: Path, other: Path) -> None:
    saved = torch.load(path, weights_only=True)
    saved["fingerprint"] = "0" * 12
    torch.save(saved, path)


def _no_hash(path: Path, other: Path) -> None:  # the format before weights were hashed
    saved = torch.load(path, weights_only=True)
    torch.save({"state_dict": saved["state_dict"], "info": saved["info"]}, path)


def _pickled_module(path: Path, other: Path) -> None:  # weights_only refuses it: never unpickled
    torch.save(torch.nn.Linear(2, 2), path)


@pytest.mark.parametrize("damage, reason", [
    (_swap, "holds entry 'tiny_test_b', expected 'tiny_test_a'"),
    (_truncate, "unreadable"),
    (_random_bytes, "unreadable"),
    (_garbage_after_header, "zoo weights"),
    (_empty, "unreadable"),
    (_tamper_tensor, "tensors hash to sha256"),
    (_other_fingerprint, "holds recipe fingerprint '000000000000'"),
    (_no_hash, "expected a dict with fields"),
    (_pickled_module, "unreadable"),
])
def test_a_bad_cache_file_is_moved_aside_and_retrained_never_loaded(tiny, damage, reason):
    a, b = tiny
    original = zoo.load(a.name)
    zoo.load(b.name)
    path = zoo.cache_file(a)
    damage(path, zoo.cache_file(b))
    bad = path.read_bytes()
    with pytest.warns(zoo.ZooWeightsWarning) as record:
        again = zoo.load(a.name)
    (message,) = [str(w.message) for w in record]
    assert str(path) in message and reason in message and "retraining 'tiny_test_a'" in message
    assert "\n" not in message  # one line
    assert again.info["source"] == "trained" and again.sha256 == original.sha256  # retrained: the same weights
    (aside,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert aside.read_bytes() == bad and aside.name in message  # the bad file is kept, renamed
    assert zoo.load(a.name).info["source"] == "cache"  # the rewritten file verifies


def test_a_bad_cache_file_is_reported_through_train_entry_never_loaded(tiny, monkeypatch):
    a, b = tiny
    zoo.load(b.name)
    path = zoo.cache_file(a)
    _swap(path, zoo.cache_file(b))
    monkeypatch.setattr(loader, "train_entry", no_training)
    with pytest.warns(zoo.ZooWeightsWarning, match="holds entry 'tiny_test_b'"):
        with pytest.raises(AssertionError, match="train_entry called"):  # the only way left is training
            zoo.load(a.name)


def test_an_unwritable_cache_fails_before_any_training(tiny, tmp_path, monkeypatch):
    a, _ = tiny
    monkeypatch.setattr(loader, "train_entry", no_training)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(zoo.CacheNotWritableError, match=rf"zoo cache folder {blocker / 'zoo'} is not writable .*"
                                                         r"ART_EXT_CACHE or pass cache="):
        zoo.load(a.name, cache=blocker)


def test_a_read_only_cache_fails_before_any_training(tiny, tmp_path, monkeypatch):
    a, _ = tiny
    monkeypatch.setattr(loader, "train_entry", no_training)
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root: chmod does not stop it; the tests around cover the check
            pytest.skip("running as root: a chmod-ed folder stays writable")
        with pytest.raises(zoo.CacheNotWritableError, match=f"zoo cache folder {folder / 'zoo'} is not writable"):
            zoo.load(a.name, cache=folder)
    finally:
        folder.chmod(0o700)


def test_a_bad_file_in_an_unwritable_cache_fails_before_training(tiny, tmp_path, monkeypatch):
    a, _ = tiny
    zoo.load(a.name)
    _random_bytes(zoo.cache_file(a), zoo.cache_file(a))
    monkeypatch.setattr(loader, "train_entry", no_training)
    monkeypatch.setattr(_cache.tempfile, "NamedTemporaryFile", _read_only_folder)
    with pytest.raises(zoo.CacheNotWritableError, match="not writable"):
        zoo.load(a.name)
    assert not list(zoo.cache_file(a).parent.glob("*.corrupt-*"))  # nothing moved


def _read_only_folder(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


# ---- shipped reference weights -------------------------------------------------------------------------------------
def test_the_default_suite_and_readme_models_are_shipped_and_small():
    manifest = zoo.shipped_manifest()
    assert set(DEFAULT_AND_README) <= set(manifest["models"])
    total = 0
    for name, record in manifest["models"].items():
        path = _shipped.WEIGHTS_DIR / record["file"]
        assert record["fingerprint"] == zoo.get_entry(name).fingerprint(), name
        assert path.stat().st_size == record["bytes"]
        total += record["bytes"]
    assert total < 10 * 2**20
    assert {p.name for p in _shipped.WEIGHTS_DIR.glob("*.pt")} == {r["file"] for r in manifest["models"].values()}


def test_shipped_weights_load_with_no_training_and_match_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "train_entry", no_training)
    manifest = zoo.shipped_manifest()
    for name, record in manifest["models"].items():
        if zoo.get_entry(name).kind == "diffusion":
            pytest.importorskip("diffusers")
        with warnings.catch_warnings():
            warnings.simplefilter("error", zoo.ZooWeightsWarning)
            model = zoo.load(name)
        assert model.info["source"] == "shipped" and model.sha256 == record["sha256"], name
        assert state_dict_sha256(model.module) == record["sha256"], name
        saved = torch.load(_shipped.WEIGHTS_DIR / record["file"], weights_only=True)  # plain tensors and facts
        assert saved["sha256"] == record["sha256"] and saved["name"] == name
    assert not tmp_path.exists() or not any(tmp_path.rglob("*"))  # nothing trained, nothing cached


def test_shipped_weights_are_used_only_for_the_recipe_they_were_made_by(tmp_path, monkeypatch):
    entry = zoo.get_entry("digits_cnn")
    assert _shipped.shipped(entry) is not None
    changed = dataclasses.replace(entry, train=dataclasses.replace(entry.train, epochs=1))
    assert _shipped.shipped(changed) is None
    monkeypatch.setitem(zoo.REGISTRY._entries, "digits_cnn", changed)
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "train_entry", no_training)
    with pytest.raises(AssertionError, match="train_entry called"):
        zoo.load("digits_cnn")


def test_a_bad_shipped_file_is_skipped_with_a_warning(tmp_path, monkeypatch):
    record = zoo.shipped_manifest()["models"]["digits_lenet"]
    forged = {**zoo.shipped_manifest(), "models": {"digits_lenet": {**record, "sha256": "f" * 64}}}
    monkeypatch.setattr(_shipped, "manifest", lambda: forged)
    monkeypatch.setenv("ART_EXT_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "train_entry", no_training)
    with pytest.warns(zoo.ZooWeightsWarning, match="digits_lenet.pt: tensors hash to sha256 .* expected ffff"):
        with pytest.raises(AssertionError, match="train_entry called"):
            zoo.load("digits_lenet")


def test_retrained_weights_are_cached_and_read_back_with_shipped_false(tiny, monkeypatch):
    a, _ = tiny
    first = zoo.train(a.name)
    assert first.info["source"] == "trained"
    assert zoo.load(a.name, shipped=False).sha256 == first.sha256


def test_the_manifest_names_the_machine_that_made_the_weights():
    made = zoo.shipped_manifest()["produced_on"]
    assert made["training_threads"] == zoo.TRAINING_THREADS and made["cpu"] and made["torch"]
    assert json.loads((_shipped.MANIFEST_FILE).read_text()) == zoo.shipped_manifest()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_cnn", "digits_cnn_noise050"])
def test_the_recipe_reproduces_the_shipped_validation_accuracy(name):
    """Other CPUs give other weights (kernels differ), but the recipe's result must be as good: within 1 point."""
    record = zoo.shipped_manifest()["models"][name]
    model = zoo.train_entry(zoo.get_entry(name))
    assert model.info["val_accuracy"] == pytest.approx(record["val_accuracy"], abs=0.01)
