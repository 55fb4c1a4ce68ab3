"""DESIGN.md convention 12, checked on the test sources: every exact comparison of arrays or tensors says why it is
exact on any machine.

Bit-equality holds across CPUs only when the same kernels run on the same data in the same order (or when the values
are integers: labels, counts, indices, or exact by construction). Two code paths that compute one float value in a
different order (an adapter with preprocessing vs the core with normalization folded differently, batched vs single,
an extra projection) agree only to rounding, and which bits differ depends on the CPU's vector width; those are
compared with a stated tolerance. So each use of an exact comparison -- ``assert_array_equal``, ``assert_equal``,
``torch.equal``, ``np.array_equal``, ``assert_close`` / ``assert_allclose`` with ``rtol=0, atol=0`` -- carries a
``# same-kernel: <reason>`` comment on one of its lines or the line before. The scanner reads calls with ``ast`` and
comments with ``tokenize``, so strings and docstrings do not count.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: function names whose every call compares exactly
EXACT = {"assert_array_equal", "assert_equal", "array_equal", "equal"}
#: tolerance-taking comparisons: exact when both rtol and atol are literal zeros
TOLERANT = {"assert_close", "assert_allclose", "allclose", "isclose"}
MARKER = re.compile(r"#\s*same-kernel:\s*\S")


def _name(func: ast.expr) -> tuple[str | None, str]:
    """(owner, attribute) of a call's function: ``torch.equal`` -> ("torch", "equal"); ``f`` -> (None, "f")."""
    if isinstance(func, ast.Attribute):
        owner = func.value
        return (owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)), func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, ""


def _is_zero(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value == 0


def is_exact_comparison(call: ast.Call) -> bool:
    owner, name = _name(call.func)
    if name == "equal":  # torch.equal, np.equal would be elementwise -- only torch.equal compares whole tensors
        return owner == "torch"
    if name in EXACT:
        return True
    if name in TOLERANT:
        keywords = {k.arg: k.value for k in call.keywords}
        return _is_zero(keywords.get("rtol")) and _is_zero(keywords.get("atol"))
    return False


def unmarked_exact_comparisons(source: str, filename: str = "<source>") -> list[str]:
    """``filename:line`` of each exact comparison in ``source`` with no ``# same-kernel: reason`` comment on its
    lines or the line before."""
    marked = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
              if tok.type == tokenize.COMMENT and MARKER.search(tok.string)}
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Call) and is_exact_comparison(node):
            lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
            if not marked.intersection(lines):
                found.append(f"{filename}:{node.lineno}")
    return sorted(found, key=lambda loc: int(loc.rsplit(":", 1)[1]))


def test_scanner_flags_unmarked_exact_comparisons_only() -> None:
    source = '''
import numpy as np, torch
np.testing.assert_array_equal(a, b)                       # line 3: flagged
torch.equal(a, b)  # same-kernel: one call, same data     # line 4: marked on the line
# same-kernel: integer counts
assert torch.equal(c, d)                                  # line 6: marked on the line before
torch.testing.assert_close(a, b, rtol=0, atol=0)          # line 7: flagged (exact)
torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)    # a tolerance: fine
np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)       # a tolerance: fine
assert np.array_equal(
    a,
    b,  # same-kernel: marked inside a multi-line call
)
assert np.array_equal(a, b)  # same kernel (no colon, no reason): line 14 flagged
x = "torch.equal(a, b)"                                   # a string, not a call
np.equal(a, b)                                            # elementwise, not a comparison of arrays
np.testing.assert_equal(a, b)                             # line 17: flagged
'''
    assert unmarked_exact_comparisons(source, "t.py") == ["t.py:3", "t.py:7", "t.py:14", "t.py:17"]


def test_every_exact_comparison_in_the_tests_says_why_it_is_exact() -> None:
    unmarked = [loc for path in sorted(TESTS.rglob("*.py")) if path.name != Path(__file__).name
                for loc in unmarked_exact_comparisons(path.read_text(), str(path.relative_to(TESTS.parent)))]
    assert not unmarked, (
        "exact comparisons without a '# same-kernel: <reason>' comment (DESIGN.md convention 12: bit-equality only "
        "for integers or the same kernels on the same data in the same order; two code paths get a stated "
        "tolerance):\n  " + "\n  ".join(unmarked))
