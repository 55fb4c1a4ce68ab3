"""The package's dependency rules (README "Design"), checked on the source: they fail as soon as an import breaks
one. Imports are read with ``ast`` (module-level and function-level alike), so a lazy import counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "art_ext"

#: subpackage -> subpackages it must never import (README "Design": ops -> smoothing -> defences / attacks ->
#: estimators; models, data -> training -> zoo)
FORBIDDEN = {
    "ops": {"smoothing", "defences", "attacks", "estimators", "models", "training", "data", "zoo"},
    "smoothing": {"defences", "attacks", "estimators", "models", "training", "data", "zoo"},
    "defences": {"estimators", "attacks", "zoo"},
    "attacks": {"estimators", "defences", "zoo"},
    "models": {"attacks", "estimators", "training", "zoo"},
    "training": {"estimators", "zoo"},
    "data": {"smoothing", "defences", "attacks", "estimators", "models", "training", "zoo"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_under_art_ext_imports_benchmarks() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in sources()
                 if any(m == "benchmarks" or m.startswith("benchmarks.") for m in imported_modules(p))]
    assert offenders == []


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_subpackages_import_only_downward(subpackage: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "art_ext" and len(parts) > 1 and parts[1] in FORBIDDEN[subpackage]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert offenders == []


def test_import_art_ext_does_not_import_art() -> None:
    code = "import sys, art_ext; print(sorted(m for m in sys.modules if m == 'art' or m.startswith('art.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def reachable_subpackages(start: str) -> set[str]:
    """Subpackages of art_ext reachable through imports (transitively) from the modules of ``start``."""
    graph = {module_name(p): {m for m in imported_modules(p) if m.startswith("art_ext.")} for p in sources()}
    todo = [m for m in graph if m.startswith(f"art_ext.{start}.") or m == f"art_ext.{start}"]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for target in graph.get(module, set()):
            # "from art_ext.x import y" may name a module art_ext.x.y or an attribute of art_ext.x
            todo.extend(t for t in (target, target.rsplit(".", 1)[0]) if t in graph)
    return {m.split(".")[1] for m in seen if m.count(".") >= 1}


def test_models_do_not_reach_attacks_even_through_training() -> None:
    assert "attacks" not in reachable_subpackages("models")


def test_smoothing_reaches_only_ops_and_types() -> None:
    assert reachable_subpackages("smoothing") <= {"smoothing", "ops", "types"}
