"""A continued run must match what produced the rows: the refusal names the config and the field that changed."""

from __future__ import annotations

from benchmarks import common


def manifest(**suite: object) -> dict:
    base = {"kind": "certify", "n": 50, "configs": [{"model": "digits_cnn", "sigma": 0.25},
                                                   {"model": "digits_cnn", "sigma": 0.5}]}
    return {"suite": {**base, **suite}, "seed": 0, "limit": 2, "limit_option": None}


def test_a_changed_config_field_is_named_with_its_path():
    old = manifest()
    new = manifest(configs=[{"model": "digits_cnn", "sigma": 0.25}, {"model": "digits_cnn", "sigma": 0.75}])
    assert common.work_differences(old, new) == ["suite (configs[1].sigma: 0.5 there vs 0.75 here)"]


def test_added_configs_top_level_keys_and_the_seed_are_named():
    old, new = manifest(), manifest(n=60, configs=[{"model": "digits_cnn", "sigma": 0.25}])
    new["seed"] = 4
    assert common.work_differences(old, new) == [
        "suite (configs: 2 entries there vs 1 here, n: 50 there vs 60 here)", "seed: 0 there vs 4 here"]
    assert common.work_differences(old, manifest()) == []


def test_many_differences_are_cut_after_four():
    old = manifest(configs=[{"model": "a", "sigma": float(i)} for i in range(6)])
    new = manifest(configs=[{"model": "b", "sigma": float(i)} for i in range(6)])
    (line,) = common.work_differences(old, new)
    assert line.count("there vs") == 4 and line.endswith(", ...)")
