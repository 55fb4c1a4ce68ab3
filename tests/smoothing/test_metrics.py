import numpy as np
import pytest
import torch

from art_ext.smoothing import (
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
)

PRED = [1, 2, -1, 0, 3, 3]
RADII = [0.8, 0.3, 0.0, 0.5, 0.2, 1.2]
LABELS = [1, 2, 2, 1, 3, 3]  # correct: yes, yes, abstain, wrong, yes, yes


def test_certified_accuracy_by_hand():
    acc = certified_accuracy((PRED, RADII), LABELS, [0.0, 0.25, 0.5, 1.0, 2.0])
    assert acc == {0.0: 4 / 6, 0.25: 3 / 6, 0.5: 2 / 6, 1.0: 1 / 6, 2.0: 0.0}
    # radius exactly at r counts (radius >= r)
    assert certified_accuracy((PRED, RADII), LABELS, [0.3])[0.3] == 3 / 6


def test_acr_divides_by_all_points_and_ignores_wrong_and_abstain():
    assert average_certified_radius((PRED, RADII), LABELS) == pytest.approx((0.8 + 0.3 + 0.2 + 1.2) / 6)
    assert abstain_rate((PRED, RADII)) == pytest.approx(1 / 6)


def test_accepts_tensors_and_certificates_like_objects():
    class Certs:
        label = torch.tensor(PRED)
        radius = torch.tensor(RADII, dtype=torch.float64)

    assert certified_accuracy(Certs(), torch.tensor(LABELS), [0.5]) == {0.5: 2 / 6}


def test_curve_matches_certified_accuracy_and_is_non_increasing():
    grid, acc = certified_accuracy_curve((PRED, RADII), LABELS, max_radius=1.5, num=31)
    assert grid[0] == 0.0 and grid[-1] == 1.5
    assert np.all(np.diff(acc) <= 0)
    point = certified_accuracy((PRED, RADII), LABELS, grid)
    np.testing.assert_allclose(acc, [point[float(r)] for r in grid])


def test_shape_errors():
    with pytest.raises(ValueError, match="labels must have shape"):
        certified_accuracy((PRED, RADII), LABELS[:3], [0.0])
    with pytest.raises(TypeError, match="Certificates"):
        certified_accuracy(PRED, LABELS, [0.0])
