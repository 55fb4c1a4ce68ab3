"""Untrusted files never execute code (DESIGN.md convention 11) and nothing opens a network connection during a run:
a crafted pickle behind a ``file:`` reference runs no code and is a one-line error; ``file+trusted:`` is the explicit
opt-in; RobustBench references that robustbench would download (an ensemble without its member files, a model built
from timm's hub) are refused when the suite is checked; the offline suites run with sockets blocked."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_references import CIFAR_SUITE, cifar_cnn, cifar_run
from torch import nn

from benchmarks import common, references, run
from benchmarks.common import SuiteError
from benchmarks.references import Roots, parse_model


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a crafted file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted(tmp_path: Path, name: str = "evil.pt", **save_options) -> tuple[Path, Path]:
    """A torch.save file whose unpickling creates a marker file; returns (file, marker)."""
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    torch.save({"model": Payload(marker)}, path, **save_options)
    return path, marker


# ---- file: ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("save_options", [{}, {"pickle_protocol": 4}, {"_use_new_zipfile_serialization": False}],
                         ids=["zip", "zip-protocol-4", "legacy"])
def test_a_crafted_pickle_runs_no_code_and_is_one_line(tmp_path, save_options):
    path, marker = crafted(tmp_path, **save_options)
    ref = parse_model(f"file:{path}")
    for step in (lambda: ref.check(Roots()), lambda: ref.load(Roots())):
        with pytest.raises(SuiteError) as err:
            step()
        message = str(err.value)
        assert len(message.splitlines()) == 1
        assert "unpickling it would run code from the file" in message and f"file+trusted:{path}" in message
    assert not marker.exists()


def test_a_crafted_pickle_through_the_runner_fails_before_any_work(tmp_path, tiny_suite, fails):
    path, marker = crafted(tmp_path)
    suite = tiny_suite(configs=[{"model": f"file:{path}", "sigma": 0.25}, {"model": "digits_mlp", "sigma": 0.5}])
    out = tmp_path / "out"
    line = fails(["--suite", str(suite), "--out", str(out)])
    assert "is a pickled Python object" in line and "file+trusted:" in line
    assert not marker.exists() and not out.exists()


def test_loading_refuses_pickled_objects_even_when_the_check_is_passed(tmp_path, monkeypatch):
    """The opcode scan is the cheap check; ``weights_only=True`` at load time is the gate behind it."""
    path, marker = crafted(tmp_path)
    monkeypatch.setattr(references, "pickled_object", lambda *args: None)
    with pytest.raises(SuiteError, match=r"pickled Python object \(.*open.*unpickling it would run code"):
        parse_model(f"file:{path}").load(Roots())
    assert not marker.exists()


def test_a_whole_saved_module_needs_the_trusted_opt_in(tmp_path):
    model = cifar_cnn()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(SuiteError, match=r"torch\.nn\.modules\.container\.Sequential.*torch\.jit\.save"):
        parse_model(f"file:{tmp_path / 'whole.pt'}").check(Roots())
    loaded = parse_model(f"file+trusted:{tmp_path / 'whole.pt'}").load(Roots())
    assert isinstance(loaded.module, nn.Sequential) and loaded.source == "file"
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x))


def test_the_opt_in_really_unpickles_so_the_payload_is_live(tmp_path):
    """The crafted file is a real threat: ``file+trusted:`` runs it (and then finds no module)."""
    path, marker = crafted(tmp_path)
    with pytest.raises(SuiteError, match="holds a dict, not a torch module"):
        parse_model(f"file+trusted:{path}").load(Roots())
    assert marker.exists()


def test_torchscript_loads_without_the_opt_in(tmp_path):
    model = cifar_cnn()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "scripted.pt"))
    loaded = parse_model(f"file:{tmp_path / 'scripted.pt'}").load(Roots())
    assert isinstance(loaded.module, torch.jit.ScriptModule)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x))


# ---- robustbench: ---------------------------------------------------------------------------------------------------
@pytest.fixture
def rb_suite(tmp_path: Path, tiny_suite) -> Callable[[str], list[str]]:
    """``rb_suite(reference)``: the runner's argv for the tiny suite on CIFAR-10 with its first model ``reference``."""

    def argv(reference: str) -> list[str]:
        path = tiny_suite(dataset="cifar10",
                          configs=[{"model": reference, "sigma": 0.25}, {"model": "digits_mlp", "sigma": 0.5}])
        return ["--suite", str(path), "--out", str(tmp_path / "out"), "--model-dir", str(tmp_path / "models"),
                "--data-root", str(tmp_path / "data")]

    return argv


def test_an_ensemble_without_its_member_files_is_refused_at_check_time(tmp_path, rb_suite, fails, monkeypatch):
    from art_ext.testing import write_cifar10_root

    monkeypatch.delenv("ART_EXT_DATA_ROOT", raising=False)
    write_cifar10_root(tmp_path / "data")
    folder = tmp_path / "models" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    torch.save({}, folder / "Chen2020Adversarial.pt")  # the file robustbench does not read for an ensemble
    line = fails(rb_suite("robustbench:Chen2020Adversarial"))
    assert "an ensemble of 3 models" in line and f"{folder / 'Chen2020Adversarial.pt_m0.pt'} is not found" in line
    assert not (tmp_path / "out").exists()
    for i in range(3):
        torch.save({}, folder / f"Chen2020Adversarial.pt_m{i}.pt")
    checked = parse_model("robustbench:Chen2020Adversarial").check(Roots(model_dir=tmp_path / "models"))
    assert checked["files"] == [str((folder / f"Chen2020Adversarial.pt_m{i}.pt").resolve()) for i in range(3)]


def test_a_timm_hub_model_is_refused_at_check_time(tmp_path, rb_suite, fails, monkeypatch):
    from art_ext.testing import write_cifar10_root

    monkeypatch.delenv("ART_EXT_DATA_ROOT", raising=False)
    write_cifar10_root(tmp_path / "data")
    path = tmp_path / "models" / "cifar10" / "Linf" / "Debenedetti2022Light_XCiT-S12.pt"
    path.parent.mkdir(parents=True)
    torch.save({}, path)  # present, yet robustbench would ignore it and download from timm's hub
    with pytest.raises(SuiteError, match="has no checkpoint of its own"):  # check alone, no weights loaded
        parse_model("robustbench:Debenedetti2022Light_XCiT-S12").check(Roots(model_dir=tmp_path / "models"))
    line = fails(rb_suite("robustbench:Debenedetti2022Light_XCiT-S12"))
    assert "has no checkpoint of its own" in line and "art_ext never downloads" in line
    assert not (tmp_path / "out").exists()


# ---- no network during a run ----------------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every way out to the network raises; the attempts are recorded (a caught error still counts)."""
    attempts: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            attempts.append(f"{what}{args[1:2] if what.startswith('socket.') else args[:1]}")
            raise OSError(f"network blocked by the test: {what}")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


def test_the_block_holds(no_network):
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("example.com", 80))
    with socket.socket() as sock, pytest.raises(OSError, match="network blocked"):
        sock.connect(("127.0.0.1", 9))
    assert len(no_network) == 2


def test_a_digits_certify_run_opens_no_connection(tmp_path, tiny_suite, no_network):
    suite = tiny_suite()
    out = tmp_path / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet"]) == 0
    assert len(common.read_rows(out)) == 4 and (out / "summary.md").is_file()
    assert no_network == []


def test_a_cifar10_run_with_file_and_robustbench_models_opens_no_connection(tmp_path, monkeypatch, no_network):
    argv, out, _ = cifar_run(tmp_path, monkeypatch, CIFAR_SUITE)
    assert run.main(argv) == 0
    assert len(common.read_rows(out)) == 6 and (out / "summary.md").is_file()
    assert no_network == []
