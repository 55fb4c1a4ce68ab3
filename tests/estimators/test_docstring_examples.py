"""The ``Examples`` sections of the public classes run and print what they claim."""

from __future__ import annotations

import doctest

import pytest

import art_ext.estimators.bn_adaptation
import art_ext.estimators.randomized_smoothing
import art_ext.estimators.smoothed_inference


@pytest.mark.parametrize("module", [
    art_ext.estimators.smoothed_inference, art_ext.estimators.randomized_smoothing, art_ext.estimators.bn_adaptation,
], ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_examples_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
