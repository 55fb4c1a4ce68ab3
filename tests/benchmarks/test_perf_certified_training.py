"""``benchmarks/perf_certified_training.py`` on a few images: every side is timed for every method, the JSON holds
what the printed line says, and bad arguments stop it before any training."""

from __future__ import annotations

import json

import pytest

from benchmarks import perf_certified_training as perf


def test_a_tiny_run_times_every_side_and_writes_what_it_prints(tmp_path, capsys) -> None:
    out = tmp_path / "perf.json"
    assert perf.main(["--images", "16", "--epochs", "1", "--repeats", "2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["method"] for r in results] == list(perf.METHODS)
    sides = {r["method"]: set(r["median"]) for r in results}
    assert sides == {"smoothadv": {"art_ext", "art_ext m=1", "ART"}, "macer": {"art_ext", "ART"},
                     "smoothmix": {"art_ext", "ART"}}
    for r in results:
        assert all(len(v) == 2 and all(t > 0 for t in v) for v in r["seconds_per_epoch"].values())
    printed = capsys.readouterr().out
    macer = next(r for r in results if r["method"] == "macer")["median"]
    assert f"ART / art_ext {macer['ART'] / macer['art_ext']:.2f}" in printed
    assert "(16 training images, batch size 64, 1 epoch(s) x 2 repeats per side" in printed


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--images", "0"], "--images must be >= 1, got 0"),
    (["--sigma", "0.3"], "invalid choice"),
])
def test_bad_arguments_stop_before_any_training(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        perf.main(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err
