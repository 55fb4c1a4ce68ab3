"""Every code example of the user-facing pages runs, and prints what the page says it prints.

A page's examples are the ```python fences of README.md and docs/**/*.md. Each is a doctest session (``>>> `` /
``... `` lines, the expected output below them); all the sessions of one page run in order in one namespace, as a
reader would type them, with ELLIPSIS and NORMALIZE_WHITESPACE. A fence that is not a Python session is marked
```bash / ```toml / ```text and is not run; a ```python fence without a ``>>>`` prompt is refused, since nothing
would check it.
"""

from __future__ import annotations

import doctest
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.REPORT_ONLY_FIRST_FAILURE  # the rest cascade
#: an opening fence (its info string: the language) and everything up to the closing fence of the same indentation
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text and the line of the page it starts on (1-based, its first line)."""

    language: str
    text: str
    line: int


def user_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    # a run's raw report (docs/results/<suite>/summary.md) is git-ignored and not published: it states the commit
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md")
                   if p.name != "summary.md" or p.parent.parent.name != "results")
    return [ROOT / "README.md", *pages]


def fenced_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines()) + "\n"
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append(Block(match["info"].strip().split(" ")[0].lower(), body, line))
    return blocks


def python_blocks(text: str) -> list[Block]:
    return [b for b in fenced_blocks(text) if b.language in ("python", "py", "pycon")]


def run_page(text: str, name: str) -> tuple[int, int, str]:
    """Run every Python session of a page in one namespace; returns (examples, failures, the runner's report)."""
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    namespace: dict[str, object] = {"__name__": f"docs_page_{re.sub(r'[^0-9a-zA-Z]+', '_', name)}"}
    for block in python_blocks(text):
        # lineno is 0-based in doctest; the block's first line is block.line (1-based)
        test = parser.get_doctest(block.text, namespace, name, name, block.line - 1)
        test.globs = namespace  # get_doctest copies the namespace: share one dict across the page's sessions
        runner.run(test, out=report.write, clear_globs=False)
    results = runner.summarize(verbose=False)
    return results.attempted, results.failed, report.getvalue()


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_python_fences_are_sessions():
    """A ```python fence that is not a doctest session would never be checked: mark it bash / toml / text instead."""
    unchecked = [f"{page_id(p)}:{b.line}" for p in user_pages() for b in python_blocks(p.read_text(encoding="utf-8"))
                 if not re.search(r"^\s*>>> ", b.text, re.MULTILINE)]
    assert not unchecked, f"```python fences without a >>> session (mark them ```text or run them): {unchecked}"


def test_readme_has_examples():
    """The README's examples (certify, defend, attack) are sessions this test runs, not prose."""
    examples, _, _ = run_page("", "empty")  # the runner on nothing: no example, no failure
    assert examples == 0
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(python_blocks(readme)) >= 3


@pytest.mark.parametrize("page", [p for p in user_pages() if python_blocks(p.read_text(encoding="utf-8"))],
                         ids=page_id)
def test_page_examples(page: Path):
    examples, failures, report = run_page(page.read_text(encoding="utf-8"), page_id(page))
    assert examples > 0
    assert failures == 0, f"{failures} of {examples} examples of {page_id(page)} print something else:\n{report}"


# ---- the checker itself --------------------------------------------------------------------------------------------
PAGE = """# A page

Some prose.

```python
>>> x = 40
>>> x + 2
42

```

```bash
python3 -m pytest
```

More prose, then the same namespace:

```python
>>> print([x] * 3)
[40,
 40, 40]
>>> "a long line ..."
'a long ...'

```
"""


def test_runner_passes_a_correct_page():
    examples, failures, report = run_page(PAGE, "page.md")
    assert (examples, failures) == (4, 0), report


def test_runner_fails_when_an_output_changes():
    changed = PAGE.replace("42\n", "43\n")
    examples, failures, report = run_page(changed, "page.md")
    assert (examples, failures) == (4, 1)
    assert "page.md" in report and "line 7" in report and "Expected:\n    43\nGot:\n    42" in report


def test_runner_fails_on_an_exception_and_keeps_one_namespace_per_page():
    examples, failures, report = run_page(PAGE.replace(">>> x = 40\n", ""), "page.md")
    assert failures == 2, report  # x is undefined in both fences: the page's own namespace, nothing leaks in
    assert "NameError" in report
    other = "```python\n>>> x\n40\n\n```\n"
    assert run_page(other, "other.md")[1] == 1  # a second page does not see the first page's names


def test_fences_are_found_with_their_lines():
    blocks = fenced_blocks(PAGE)
    assert [(b.language, b.line) for b in blocks] == [("python", 6), ("bash", 13), ("python", 19)]
    assert [b.line for b in python_blocks(PAGE)] == [6, 19]


def test_every_public_package_has_an_api_page():
    """The API reference (docs/reference/, rendered by mkdocstrings) covers every public package of art_ext."""
    import pkgutil

    import art_ext

    directives = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md"))
    public = [m.name for m in pkgutil.iter_modules(art_ext.__path__) if not m.name.startswith("_")]
    assert "smoothing" in public
    missing = [name for name in public if f"::: art_ext.{name}" not in directives]
    assert not missing, f"no API reference page renders art_ext.{missing}: add '::: art_ext.<name>' to docs/reference/"
