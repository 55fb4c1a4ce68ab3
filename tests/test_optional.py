import pytest

from art_ext import _optional


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(_optional.EXTRAS, "surely_not_installed_pkg", "bench")
    with pytest.raises(ImportError, match=r'pip install "art_ext\[bench\]"'):
        _optional.require("surely_not_installed_pkg")
    with pytest.raises(ImportError, match="pip install another_missing_pkg"):
        _optional.require("another_missing_pkg.sub")


def test_present_dependency_is_returned():
    assert _optional.require("scipy.stats").__name__ == "scipy.stats"
