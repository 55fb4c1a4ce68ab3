"""The package's dependency rules (README "Design"), checked on the source: they fail as soon as an import breaks
one. Imports are read with ``ast`` (module-level and function-level alike), so a lazy import counts too."""

from __future__ import annotations

import ast
import importlib
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


def imported_modules(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` may import: ``import a.b`` gives a.b; ``from a.b import c`` gives a.b and a.b.c (c may be
    a submodule: ``from art_ext import zoo`` imports art_ext.zoo); relative imports are resolved against the module's
    package (``module``: the dotted name of ``path``, by default its place under art_ext/)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
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


@pytest.mark.parametrize("source", [
    "from art_ext import zoo",
    "from art_ext import ops, zoo as z",
    "from .. import zoo",
    "from ..zoo import load",
    "def lazy():\n    from art_ext import estimators\n",
])
def test_the_layout_check_sees_submodules_imported_by_name(tmp_path: Path, source: str) -> None:
    """``from art_ext import zoo`` names the subpackage in the alias, not in ``node.module``; relative imports count
    too. Each of these sources, placed in art_ext/smoothing/, must be reported as reaching zoo or estimators."""
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    modules = imported_modules(path, "art_ext.smoothing.probe")
    reached = {m.split(".")[1] for m in modules if m.startswith("art_ext.") and m.count(".") >= 1}
    assert reached & FORBIDDEN["smoothing"], modules


#: modules that must import without ART: the cores, the zoo, training, the defences' torch parts, the models
ART_FREE = [
    "art_ext", "art_ext.ops", "art_ext.smoothing", "art_ext.models", "art_ext.models.robustbench", "art_ext.data",
    "art_ext.attacks", "art_ext.attacks.pgd", "art_ext.attacks.bpda_pgd", "art_ext.attacks.epgd",
    "art_ext.attacks.smoothadv", "art_ext.attacks.nattack", "art_ext.attacks.rigor", "art_ext.attacks.protocol",
    "art_ext.training", "art_ext.zoo", "art_ext.defences", "art_ext.defences.denoised_smoothing",
    "art_ext.defences.normalized_noise", "art_ext.defences.bn_adaptation", "art_ext.defences.diffusion",
]


def test_cores_zoo_training_and_defences_do_not_import_art() -> None:
    """One fresh interpreter imports them one after the other and names the first that brings ART in."""
    code = (
        "import importlib, sys\n"
        f"for name in {ART_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    if any(m == 'art' or m.startswith('art.') for m in sys.modules):\n"
        "        print(name); break\n"
        "else:\n"
        "    print('none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "none", f"importing {out.stdout.strip()} imports ART"


@pytest.mark.parametrize(("module", "names"), [
    ("art_ext.attacks", ("PGD", "BPDAPGD", "EPGD", "SmoothAdvPGD", "NAttack")),
    ("art_ext.attacks.pgd", ("PGD",)), ("art_ext.attacks.bpda_pgd", ("BPDAPGD",)), ("art_ext.attacks.epgd", ("EPGD",)),
    ("art_ext.attacks.smoothadv", ("SmoothAdvPGD",)), ("art_ext.attacks.nattack", ("NAttack",)),
    ("art_ext.defences", ("DenoiserPreprocessor", "NormalizedNoisePreprocessor")),
    ("art_ext.defences.denoised_smoothing", ("DenoiserPreprocessor",)),
    ("art_ext.defences.normalized_noise", ("NormalizedNoisePreprocessor",)),
])
def test_the_art_adapters_keep_their_public_names(module: str, names: tuple[str, ...]) -> None:
    """``from art_ext.attacks import PGD`` and the like still work: the adapter (and ART) load on first access."""
    mod = importlib.import_module(module)
    for name in names:
        obj = getattr(mod, name)
        assert obj.__name__ == name and obj.__module__ in ("art_ext.attacks.adapters", "art_ext.defences.preprocessors")
        if module in ("art_ext.attacks", "art_ext.defences"):
            assert name in dir(mod)  # tab completion and ``dir`` list the lazy names too
    with pytest.raises(AttributeError, match="has no attribute 'NotThere'"):
        _ = mod.NotThere
