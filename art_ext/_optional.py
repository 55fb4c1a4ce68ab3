"""Guarded imports for optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

#: module name -> the pip extra of art_ext that provides it
EXTRAS = {
    "matplotlib": "bench",
    "robustbench": "bench",
    "torchattacks": "bench",
    "diffusers": "diffusion",
    "ray": "distributed",
}


def require(module: str) -> ModuleType:
    """Import an optional dependency or raise ``ImportError`` naming the art_ext extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module.split(".")[0])
        hint = f'pip install "art_ext[{extra}]"' if extra else f"pip install {module.split('.')[0]}"
        raise ImportError(f"{module!r} is an optional dependency of art_ext and is not installed: {hint}") from err
