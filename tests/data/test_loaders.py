
import numpy as np
import pytest
import torch
from PIL import Image

from art_ext.data import digits, load_cifar10, load_digits, load_image_folder
from art_ext.testing import write_cifar10_root


def test_digits_splits_are_fixed_disjoint_stratified_and_in_range():
    idx = digits.split_indices()
    assert {k: len(v) for k, v in idx.items()} == {"train": 1097, "val": 200, "test": 500}
    all_idx = np.concatenate(list(idx.values()))
    assert len(np.unique(all_idx)) == 1797
    test = load_digits("test")
    assert test.x.shape == (500, 1, 16, 16) and test.x.dtype == torch.float32 and test.y.dtype == torch.int64
    assert test.x.min() >= 0 and test.x.max() <= 1 and test.x.max() > 0.99
    assert torch.bincount(test.y).min() >= 48  # stratified: 50 per class (+-2)
    # same-kernel: the same loader twice, the same bytes
    assert torch.equal(load_digits("test").x, test.x)  # deterministic
    native = load_digits("val", resolution=8)
    assert native.x.shape == (200, 1, 8, 8)
    assert torch.allclose(native.x * 16, (native.x * 16).round())  # native pixels are k/16
    # same-kernel: integer labels, a slice
    assert test.head(20).x.shape[0] == 20 and torch.equal(test.head(20).y, test.y[:20])


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="unknown digits split 'validation'"):
        load_digits("validation")
    with pytest.raises(ValueError, match="resolution must be an int >= 8"):
        load_digits("test", resolution=4)


def test_cifar10_reads_torchvision_format(tmp_path):
    written = write_cifar10_root(tmp_path, per_batch=3)
    test = load_cifar10(tmp_path, "test")
    data, labels = written["test_batch"]
    assert test.x.shape == (3, 3, 32, 32) and test.num_classes == 10
    # same-kernel: the same bytes / 255, elementwise
    assert torch.equal(test.x, torch.from_numpy(data.reshape(3, 3, 32, 32)).float() / 255)
    assert test.y.tolist() == labels
    train = load_cifar10(tmp_path, "train", limit=7)
    assert train.x.shape == (7, 3, 32, 32)
    assert train.y.tolist() == written["data_batch_1"][1] + written["data_batch_2"][1] + written["data_batch_3"][1][:1]


def test_cifar10_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown CIFAR-10 split"):
        load_cifar10(tmp_path, "val")


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls, count in (("n02", 3), ("n01", 2)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    data = load_image_folder(tmp_path, resize=36, crop=32)
    assert data.classes == ("n01", "n02") and data.y.tolist() == [0, 0, 1, 1, 1]
    assert data.x.shape == (5, 3, 32, 32) and 0 <= data.x.min() and data.x.max() <= 1
    skipped = load_image_folder(tmp_path, resize=36, crop=32, skip=2, limit=2)
    # same-kernel: a copy of the same image
    assert skipped.y.tolist() == [0, 1] and torch.equal(skipped.x[1], data.x[2])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")


class _Payload:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for a crafted file's code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_cifar10_crafted_pickle_runs_no_code(tmp_path):
    import pickle

    from art_ext.data.cifar10 import load_cifar10
    from art_ext.testing import write_cifar10_root

    write_cifar10_root(tmp_path, per_batch=2)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": _Payload(str(marker)), b"labels": [0]}, handle)
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 batch file .*nothing of it was run"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_cifar10_md5_of_torchvision_files_is_known(tmp_path):
    from art_ext.data.cifar10 import TEST_FILES, TORCHVISION_MD5, TRAIN_FILES, batch_md5

    assert set(TORCHVISION_MD5) == set(TRAIN_FILES + TEST_FILES)
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert batch_md5(path) == "900150983cd24fb0d6963f7d28e17f72"  # RFC 1321's test vector
