"""Shared helpers for the benchmark tests: one suite builder that writes a TOML suite file from Python values, the
tiny certify suite most runner tests start from, and the check that the runner failed like a tool."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run

# two digits models, two images, n = 50: a certify run that takes seconds
TINY_CERTIFY: dict[str, Any] = {
    "kind": "certify", "description": "tiny test suite", "dataset": "digits", "limit": 2, "n0": 10, "n": 50,
    "alpha": 0.01, "batch_size": 500, "images_per_chunk": 2, "radii": [0.0, 0.25],
    "configs": [{"model": "digits_lenet", "sigma": 0.25}, {"model": "digits_mlp", "sigma": 0.5}],
}


def _value(value: Any) -> str:
    """One TOML value: a string, a number, a bool, a list of values or an inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else "nan" if math.isnan(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_value(v)}" for key, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(suite: dict[str, Any]) -> str:
    """The suite as TOML: plain keys first, then each dict as a ``[table]`` and each list of dicts as ``[[tables]]``
    (anything nested deeper is written inline). A key whose value is None is left out."""
    keys = {key: value for key, value in suite.items() if value is not None}
    plain = [f"{key} = {_value(v)}" for key, v in keys.items() if not isinstance(v, dict) and not _is_table_list(v)]
    sections = []
    for key, value in keys.items():
        for header, table in ([(f"[{key}]", value)] if isinstance(value, dict)
                              else [(f"[[{key}]]", v) for v in value] if _is_table_list(value) else []):
            sections.append("\n".join([header, *(f"{k} = {_value(v)}" for k, v in table.items() if v is not None)]))
    return "\n\n".join(["\n".join(plain), *sections]) + "\n"


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """``write_suite(kind, file="tiny.toml", **keys)`` writes the suite ``{kind, **keys}`` to tmp_path / file."""

    def write(kind: str, *, file: str = "tiny.toml", **keys: Any) -> Path:
        path = tmp_path / file
        path.write_text(to_toml({"kind": kind, **keys}))
        return path

    return write


@pytest.fixture
def tiny_suite(write_suite: Callable[..., Path]) -> Callable[..., Path]:
    """``tiny_suite(**changes)`` writes TINY_CERTIFY with ``changes`` (a key set to None is left out)."""

    def write(*, file: str = "tiny.toml", **changes: Any) -> Path:
        return write_suite(**{**TINY_CERTIFY, **changes}, file=file)

    return write


@pytest.fixture
def fails(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], str]:
    """``fails(argv)`` runs the CLI and expects exit status 2 with one ``run.py: error:`` line on stderr and no
    traceback; it returns that line."""

    def check(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exit_info:
            run.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("run.py: error: ")
        return lines[0]

    return check
