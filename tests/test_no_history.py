"""The user-facing pages (README.md, docs/**/*.md) describe the package, not how it was developed.

Refused: references to the project's issue tracker ("issue 12", "#12"), words about work sessions ("this session"),
commit stamps (7 to 40 hexadecimal digits: an abbreviated or full git SHA-1), and paths of a developer's machine or
of notes outside the repository. Provenance (the git SHA of a run, the paths it read) belongs in the results'
``manifest.json``, which the pages link to.

Deliberately not refused:

* 64-digit sha256 content hashes (weights, examples), which the results pages print so that a reader can check that
  their copy of a model is the one measured. They are longer than 40 digits, so the commit pattern, bounded by
  non-hexadecimal characters on both sides, never matches inside them.
* words of only the letters a-f ("defaced", "accede") and plain numbers ("1234567"): a stamp needs a digit and a
  letter, which almost every abbreviated SHA has (the rare one without a digit is not worth false alarms on words).
* ``#`` followed by a word (Markdown anchors such as ``#noise-spaces``) and "owner/repo#123" references to other
  projects' trackers (preceded by a word character), which are citations, not this project's history.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PATTERNS: dict[str, re.Pattern[str]] = {
    "issue reference": re.compile(r"\bissues?\s*#?\s*\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE),
    "session word": re.compile(
        r"\b(?:this|that|the same|previous|earlier|last|next|a later|an earlier|current|helper)\s+sessions?\b|"
        r"\bsessions?\s+(?:log|notes|history)\b", re.IGNORECASE),
    "commit stamp": re.compile(r"(?<![0-9A-Za-z_])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![0-9A-Za-z_])"),
    "machine path": re.compile(
        r"(?<![\w.~-])/(?:work|root|tmp|home|Users|mnt|scratch|var/folders)/|[A-Za-z]:\\\\?Users\\|"
        r"\.\./shared/|\bshared/research/|\bresearch/[\w-]+\.md\b"),
}


def user_pages() -> list[Path]:
    # a run's raw report (docs/results/<suite>/summary.md) is git-ignored and not published: it states the commit
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md")
                   if p.name != "summary.md" or p.parent.parent.name != "results")
    return [ROOT / "README.md", *pages]


def findings(text: str) -> list[str]:
    """Every match of every pattern, as ``line N: kind 'match'``."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in PATTERNS.items():
            out += [f"line {number}: {kind} {m.group(0)!r}" for m in pattern.finditer(line)]
    return out


@pytest.mark.parametrize("page", user_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_has_no_development_history(page: Path):
    found = findings(page.read_text(encoding="utf-8"))
    assert not found, f"{page.relative_to(ROOT)} mentions development history: {found}"


def test_pages_exist():
    pages = user_pages()
    assert (ROOT / "README.md") in pages and len(pages) > 10


# ---- the patterns themselves ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind", [
    ("done (issue 12)", "issue reference"),
    ("see issues 9, 10", "issue reference"),
    ("fixed in #14.", "issue reference"),
    ("Issue #3 asked for it", "issue reference"),
    ("measured in this session", "session word"),
    ("the previous session's run", "session word"),
    ("at git fade7e0,", "commit stamp"),
    ("(git 929df07)", "commit stamp"),
    ("commit 9f88548481a0a177a982a90ded98f00c7113bd33", "commit stamp"),
    ("scripts in /work/scratch", "machine path"),
    ("cache at /root/.cache/art_ext", "machine path"),
    ("--out /tmp/run", "machine path"),
    ("as ../shared/DESIGN.md says", "machine path"),
    ("research/algorithms.md §9.2", "machine path"),
])
def test_pattern_finds(text: str, kind: str):
    assert any(f" {kind} " in f for f in findings(text)), (text, findings(text))


@pytest.mark.parametrize("text", [
    "weights sha256 " + "3f" * 32,  # a 64-digit content hash is provenance the reader checks, not history
    "a defaced accede",  # words of the letters a-f
    "N = 1234567 draws",  # plain numbers
    "see [noise spaces](concepts.md#noise-spaces) and #section",
    "Trusted-AI/adversarial-robustness-toolbox#1526",  # another project's tracker
    "every doctest session of a page runs in one namespace",
    "~/.cache/art_ext/zoo and $ART_EXT_CACHE",
    "radius 0.5 at σ = 0.25, 10,000 samples",
    "color #ff0000 is not a number",
])
def test_pattern_lets_pass(text: str):
    assert findings(text) == []
