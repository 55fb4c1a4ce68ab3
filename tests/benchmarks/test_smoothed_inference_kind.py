"""The smoothed_inference benchmark kind on a toy model: flags per M, val-only selection, report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from art_ext.attacks.pgd import PGDConfig, pgd
from art_ext.smoothing.noise import GaussianNoise
from art_ext.testing import tiny_cnn, tiny_images
from benchmarks.kinds import smoothed_inference as kind

SUITE = {
    "name": "toy", "models": ["toy"], "sigmas": [0.0, 0.3], "num_samples": [1, 2, 4], "modes":
    ["prediction", "weighted", "soft"], "batch_size": 64, "val_limit": 4,
    "attack": {"norm": "linf", "eps": 0.05, "eps_step": 0.02, "max_iter": 2, "num_random_init": 1, "epgd_samples": 2},
}


def test_evaluate_chunk_sigma_zero_is_the_base_for_every_m() -> None:
    model, x = tiny_cnn(size=4), tiny_images(5, size=4, seed=0)
    y = torch.tensor([0, 8, 8, 8, 1])  # the toy predicts [0, 8, 8, 8, 8]: four right, one wrong
    flags = kind.evaluate_chunk(model, x, y, 0.0, SUITE, torch.Generator().manual_seed(0))
    # by hand: the base on the clean images, and on PGD examples crafted with the same generator (its first use)
    base_correct = model(x).argmax(1) == y
    generator = torch.Generator().manual_seed(0)
    pgd_cfg, _ = kind._attack_configs(SUITE, 0.0)  # EPGD with one pass: at sigma 0 plain PGD on the base
    plain = PGDConfig(eps=pgd_cfg.eps, eps_step=pgd_cfg.eps_step, max_iter=pgd_cfg.max_iter, norm=pgd_cfg.norm,
                      num_random_init=pgd_cfg.num_random_init)
    x_adv = pgd(nn.Sequential(GaussianNoise(0.0, generator=generator), model), x, y, plain, generator=generator)
    with torch.no_grad():
        pgd_correct = model(x_adv).argmax(1) == y
    assert base_correct.tolist() == [True, True, True, True, False]
    assert int(pgd_correct.sum()) < 4  # the attack flips some label, so the comparison below is not vacuous
    for mode in SUITE["modes"]:
        # same-kernel: bools from the same model on the same batch of 5
        assert torch.equal(flags["correct"]["clean"][mode], base_correct.view(-1, 1).expand(5, 3))
        # same-kernel: bools; PGD with the same generator, kernels and batch as the kind's
        assert torch.equal(flags["correct"]["pgd"][mode], pgd_correct.view(-1, 1).expand(5, 3))
        # same-kernel: bools; EPGD at sigma 0 with one pass runs PGD's ops
        assert torch.equal(flags["correct"]["epgd"][mode], flags["correct"]["pgd"][mode])  # sigma 0: EPGD = PGD
        assert not any(flags["abstain"][name][mode].any() for name in kind.INPUTS)


def test_evaluate_chunk_with_noise_one_pass_is_one_label_for_every_mode() -> None:
    model, x = tiny_cnn(size=4), tiny_images(5, size=4, seed=0)
    y = torch.tensor([0, 1, 2, 3, 4])
    noisy = kind.evaluate_chunk(model, x, y, 0.3, SUITE, torch.Generator().manual_seed(0))
    for name in kind.INPUTS:
        # M = 1 (column 0): the vote, the rank-weighted vote and the softmax of one pass all pick its argmax
        first = [noisy["correct"][name][mode][:, 0] for mode in SUITE["modes"]]
        # same-kernel: bools; one pass per mode, the same logits
        assert all(torch.equal(first[0], other) for other in first[1:])
        assert not noisy["abstain"][name]["soft"].any() and not noisy["abstain"][name]["prediction"][:, 0].any()
        # M = 2 prediction votes can tie: ties abstain and are never counted correct
        assert not (noisy["correct"][name]["prediction"] & noisy["abstain"][name]["prediction"]).any()


def rows_for(split: str, sigma: float, pgd_by_m: list[int], seeds: int = 2) -> list[dict]:
    out = []
    for seed in range(seeds):
        for i in range(2):
            flags = {mode: list(pgd_by_m) for mode in SUITE["modes"]}
            out.append({"config": f"toy|{split}|{sigma}|{seed}", "model": "toy", "split": split, "sigma": sigma,
                        "seed": seed, "index": i, "label": 0,
                        "correct": {"clean": flags, "pgd": flags, "epgd": flags},
                        "abstain": {n: {m: [0, 0, 0] for m in SUITE["modes"]} for n in kind.INPUTS}})
    return out


@pytest.mark.slow  # imports matplotlib for the plots
def test_selection_uses_val_only_and_report_renders(tmp_path) -> None:
    # val prefers sigma = 0.3 with M = 2; test would prefer sigma = 0 (all correct): selection must ignore test
    rows = (rows_for("val", 0.0, [0, 0, 0]) + rows_for("val", 0.3, [0, 1, 1])
            + rows_for("test", 0.0, [1, 1, 1]) + rows_for("test", 0.3, [0, 0, 1]))
    grid = kind.accuracy_grid(SUITE, rows)
    assert kind.select(SUITE, grid, "toy", "soft") == (0.3, 2)
    manifest = {"seed": 0, "git_sha": "x", "versions": {"torch": "t"}, "device": "cpu"}
    text = kind.report(SUITE, rows, tmp_path, manifest)
    assert "chosen on the val split" in text and "| toy | smoothed soft | 0.3 | 2 | 0.0 ± 0.0 |" in text
    assert (tmp_path / "toy_accuracy_vs_samples.png").is_file()
    # mean ± SE of the mean over seeds, stated in a caption; plots titled with the M grid, images, seeds, seed
    assert "SE of the mean over seeds" in text and "mean ± std" not in text
    assert "Plot `toy_accuracy_vs_sigma.png`: toy: accuracy vs σ: M ∈ {1, 2, 4} noisy passes, 2 images" in text
    assert "seed 0" in text
    assert np.isclose(grid[("toy", "test", "pgd", "soft", 0.3)][:, 2].mean(), 1.0)
