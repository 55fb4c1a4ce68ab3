"""Every ``Examples`` section in art_ext runs and prints what it claims (doctest over each module that has one)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "art_ext"


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text():
            rel = path.relative_to(PACKAGE.parent).with_suffix("")
            parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
            names.append(".".join(parts))
    return names


def test_the_public_apis_carry_examples() -> None:
    names = set(modules_with_examples())
    for required in ("art_ext.smoothing.certify", "art_ext.smoothing.inference", "art_ext.attacks.pgd",
                     "art_ext.estimators.randomized_smoothing", "art_ext.zoo"):
        assert required in names


@pytest.mark.parametrize("name", modules_with_examples())
def test_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
