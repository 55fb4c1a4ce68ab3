"""A results folder nothing corrupts: one writer, an atomic manifest, repairs that only truncate, each row key once,
one-line errors for a corrupt manifest, a full disk, a path-like suite name or a folder of something else."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from benchmarks import common, results, run


@pytest.fixture
def suite(tiny_suite) -> Path:
    return tiny_suite(configs=[{"model": "digits_lenet", "sigma": 0.25}])


def test_a_second_runner_on_the_same_folder_is_refused_naming_the_holder(suite, tmp_path, fails):
    out = tmp_path / "out"
    out.mkdir()
    with results.FolderLock(out):  # another runner holds the folder
        line = fails(["--suite", str(suite), "--out", str(out), "--quiet"])
    assert "being written by another runner" in line and f'"pid": {os.getpid()}' in line
    assert not (out / common.ROWS_FILE).exists() and not (out / common.MANIFEST_FILE).exists()
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet"]) == 0  # released: the folder is usable
    assert len(common.read_rows(out)) == 2


def test_rows_counted_once_whatever_the_file_holds(suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet"]) == 0
    summary = (out / "summary.md").read_text()
    rows_file = out / common.ROWS_FILE
    rows_file.write_text(rows_file.read_text() * 2)  # as two runners appending the same rows would leave it
    assert len(common.read_rows(out)) == 2
    capsys.readouterr()
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet"]) == 0
    assert (out / "summary.md").read_text() == summary


def test_a_torn_last_line_is_cut_by_truncation_never_by_rewriting(tmp_path, monkeypatch):
    rows_file = tmp_path / common.ROWS_FILE
    complete = "".join(json.dumps({"config": "c", "index": i}) + "\n" for i in range(3))
    rows_file.write_text(complete + '{"config": "c", "ind')
    inode = rows_file.stat().st_ino

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the rows file was rewritten")

    monkeypatch.setattr(Path, "write_bytes", no_rewrite)
    monkeypatch.setattr(Path, "write_text", no_rewrite)
    assert common.repair_rows_file(tmp_path) == len('{"config": "c", "ind')
    assert rows_file.read_text() == complete and rows_file.stat().st_ino == inode
    assert common.repair_rows_file(tmp_path) == 0  # nothing torn: untouched
    monkeypatch.undo()
    rows_file.write_text('{"config": "c", "ind')  # a single torn line: nothing to keep
    assert common.repair_rows_file(tmp_path) > 0 and rows_file.read_text() == ""


def test_a_corrupt_manifest_is_one_line_saying_how_to_recover(suite, tmp_path, fails):
    out = tmp_path / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet"]) == 0
    manifest = out / common.MANIFEST_FILE
    manifest.write_text(manifest.read_text()[:40])  # cut off, as a kill during a non-atomic write leaves it
    line = fails(["--suite", str(suite), "--out", str(out), "--quiet"])
    assert "not a valid manifest" in line and "move the folder aside" in line


def test_the_manifest_is_replaced_atomically(tmp_path, monkeypatch):
    results.write_manifest(tmp_path, {"seed": 0})

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(common.SuiteError, match="no space left"):
        results.write_manifest(tmp_path, {"seed": 1})
    assert results.read_manifest(tmp_path) == {"seed": 0}  # the old manifest, whole
    assert [p.name for p in tmp_path.iterdir()] == [common.MANIFEST_FILE]  # no temp file left behind


def test_a_full_disk_while_appending_is_one_error_and_finished_rows_stay(tmp_path):
    ctx = common.RunContext(out=tmp_path, device=__import__("torch").device("cpu"), seed=0, limit=None, verbose=False)
    assert ctx.write_rows([{"config": "c", "index": 0}]) == 1

    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    ctx._handle = FullDisk()
    with pytest.raises(common.SuiteError, match="no space left on the disk while writing .*rerun the same command"):
        ctx.write_rows([{"config": "c", "index": 1}])
    assert not ctx.is_done("c", 1)  # not written, so recomputed on the next run
    assert [r["index"] for r in common.read_rows(tmp_path)] == [0]


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ""])
def test_a_suite_name_is_a_plain_name(tiny_suite, fails, name):
    path = tiny_suite(file="named.toml", name=name, configs=[{"model": "digits_lenet", "sigma": 0.25}])
    line = fails(["--suite", str(path), "--quiet"])
    assert "plain name" in line or "non-empty" in line


def test_an_out_folder_of_something_else_is_never_written(suite, tmp_path, fails):
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "summary.md").write_text("someone's report\n")
    line = fails(["--suite", str(suite), "--out", str(out), "--quiet"])
    assert "files that no run wrote (summary.md)" in line
    assert (out / "summary.md").read_text() == "someone's report\n"
