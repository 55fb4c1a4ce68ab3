"""Reading model files without running code from them: what a file is (``check_torch_file``: a torch zip archive or
a pickle, not an HTML page or a truncated download), whether a pickle names anything but weights
(``pickled_object``: its opcodes are read, never executed), and ``torch_load`` with one-line errors."""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from art_ext.models.robustbench import check_checkpoint_file
from benchmarks.common import SuiteError


def check_torch_file(path: Path, what: str) -> str:
    """``"safetensors"`` for a ``.safetensors`` file whose header reads as one (``check_safetensors_file``); else
    ``"zip"`` (torch.save / TorchScript archive) or ``"legacy"`` (pre-1.6 torch.save pickle) for a file that looks
    like a torch checkpoint; a ``SuiteError`` naming ``path`` when it is missing, empty, an HTML page, truncated or
    neither (the library's ``check_checkpoint_file``, its errors as the runner's one-line errors)."""
    if path.suffix == ".safetensors":
        return check_safetensors_file(path, what)
    try:
        return check_checkpoint_file(path, what)
    except (FileNotFoundError, ValueError) as error:
        raise SuiteError(str(error)) from None


def check_safetensors_file(path: Path, what: str) -> str:
    """``"safetensors"`` when ``path`` starts as the safetensors format does (an 8-byte little-endian header length,
    then that many bytes of JSON); a ``SuiteError`` naming ``path`` otherwise. Nothing in the format runs code."""
    if not path.is_file():
        raise SuiteError(f"{what}: {path} not found (nothing is downloaded): place the file there")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = handle.read(min(max(length, 0), 1)) if 0 < length <= size - 8 else b""
    if header != b"{":
        raise SuiteError(f"{what}: {path} is not a safetensors file (no JSON header after the 8-byte length; a "
                         "truncated copy or an HTML page?)")
    return "safetensors"


def read_state_dict(path: Path, what: str) -> Any:
    """The tensors of a weights file without running code from it: ``safetensors`` for ``.safetensors`` files (the
    ``safetensors`` package, installed with the ``diffusion`` extra), else ``torch.load(weights_only=True)``."""
    if check_torch_file(path, what) == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise SuiteError(f"{what}: reading {path} needs the safetensors package: pip install safetensors "
                             "(or art_ext[diffusion])") from err
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # re-raised with the path; the reader's message is kept
            raise SuiteError(f"{what}: cannot read {path}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0]}") from err
    return torch_load(path, what, weights_only=True)


def is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


#: what a pickle of tensors (a state_dict, a checkpoint dict) names besides builtin containers
_WEIGHT_GLOBALS = {("collections", "OrderedDict"), ("builtins", "set"), ("__builtin__", "set"),
                   ("builtins", "frozenset"), ("__builtin__", "frozenset")}
_WEIGHT_MODULES = ("torch._utils", "torch.serialization")


def _weight_global(module: str, name: str) -> bool:
    if (module, name) in _WEIGHT_GLOBALS or module in _WEIGHT_MODULES:
        return True
    # torch.FloatStorage, torch.float16, ...: looked up on torch itself, nothing from the file is imported
    return module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype))


def pickled_object(path: Path, kind: str) -> str | None:
    """The first Python object other than tensors and builtin containers that the pickle in a torch file names (e.g.
    ``torch.nn.modules.container.Sequential`` for ``torch.save(model)``, ``posix.system`` for a crafted file), or
    None for plain weights. ``kind`` is ``check_torch_file``'s. Reads the pickle's opcodes with ``pickletools``:
    nothing is unpickled, imported or executed."""
    def scan(stream: Any) -> str | None:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                if not _weight_global(module, name):
                    return f"{module}.{name}"
            elif opcode.name in ("STACK_GLOBAL", "INST", "OBJ"):  # torch.save never writes these for weights
                return f"an object built by the {opcode.name} opcode"
        return None

    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
                with archive.open(name) as stream:
                    return scan(stream)
        with open(path, "rb") as stream:  # legacy: magic number, protocol, sys info, then the object's pickle
            for _ in range(4):
                found = scan(stream)
                if found is not None:
                    return found
            return None
    except (ValueError, EOFError, zipfile.BadZipFile) as err:  # a malformed pickle: never unpickled either
        return f"an unreadable pickle ({type(err).__name__})"


def refuse_pickled_module(what: str, path: Path, found: str) -> SuiteError:
    return SuiteError(f"{what}: {path} is a pickled Python object ({found}; e.g. a torch.save(model) file) and "
                      f"unpickling it would run code from the file, so it is refused: save the model with "
                      f"torch.jit.save (TorchScript), or, only if you trust the file, write file+trusted:{path}")


def torch_load(path: Path, what: str, *, weights_only: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # re-raised with the path; torch's message is kept
        raise SuiteError(f"{what}: cannot read {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from err


# ---- models --------------------------------------------------------------------------------------------------------
