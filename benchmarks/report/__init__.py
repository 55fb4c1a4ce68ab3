"""Tables and plots of every benchmark kind, with one convention for uncertainty and for what a plot states.

A kind turns work units into rows (``run``); its ``report`` turns rows into a summary (plain numbers, also written to
``summary.json``) and markdown (``summary.md``) through this module, so every kind's report reads the same way:

* every table cell that is an estimate is written ``value ± se``, ``se`` being **one standard error**: the binomial
  standard error ``sqrt(p (1 - p) / N)`` for an accuracy over ``N`` images (``binomial_se``), the standard error of
  the mean ``sd / sqrt(n)`` (``sd`` with ``n - 1``) for a value averaged over seeds or over images
  (``se_of_mean``); each table has a caption line saying which (``uncertainty_caption``);
* every plot is titled with what produced it (``PlotInfo``: the number of noise samples N where there are any, the
  number of images, alpha where there is one, the seed) and keeps a curve lying at zero visible (markers on every
  curve, y-limits a little below 0: ``zero_visible``);
* timings exclude one-off model training and loading, and the report says so (``TIMING_NOTE``);
* matplotlib is optional: without it the report is written in full and says why it has no plots
  (``plots_unavailable``).

Examples:
    >>> round(binomial_se(0.9, 100), 6)
    0.03
    >>> accuracy_cell(0.825, 200)
    '0.825 ± 0.027'
    >>> mean_cell([0.80, 0.82, 0.84], percent=True, digits=1)
    '82.0 ± 1.2'
    >>> print(markdown_table(["model", "acc"], [["cnn", accuracy_cell(0.9, 100)]], caption="Accuracy ± one SE."))
    Accuracy ± one SE.
    <BLANKLINE>
    | model | acc |
    |---|---|
    | cnn | 0.900 ± 0.030 |
    >>> PlotInfo(images=200, seed=0, noise_samples=10_000, alpha=0.001).caption()
    'N = 10,000 noise samples, 200 images, α = 0.001, seed 0'
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: how every table states its uncertainty
UNCERTAINTY = "± one standard error"
#: what the binomial standard error is, for captions
BINOMIAL = "binomial SE sqrt(p(1-p)/N) over the N images"
#: what the standard error of the mean over seeds is, for captions
SEED_MEAN = "SE of the mean over seeds, sd/sqrt(seeds)"
#: the sentence every report with a time column carries
TIMING_NOTE = "Timings (s/img) are the computation per image only: one-off model training and loading are excluded."


# ---- uncertainty ---------------------------------------------------------------------------------------------------
def binomial_se(p: float, n: int) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of a proportion ``p`` measured on ``n`` images.

    Args:
        p: The proportion, in [0, 1].
        n: Number of images, >= 1.
    Returns:
        The standard error (0 when ``p`` is 0 or 1).
    Raises:
        ValueError: ``p`` outside [0, 1] or ``n`` < 1.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"binomial_se: n must be an integer >= 1, got {n!r}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"binomial_se: p must be a proportion in [0, 1], got {p!r}")
    return math.sqrt(float(p) * (1.0 - float(p)) / int(n))


def se_of_mean(values: Iterable[float]) -> float:
    """Standard error of the mean, ``sd / sqrt(n)`` with the sample sd (``n - 1``); ``nan`` for one value (undefined,
    shown as ``± n/a``).

    Raises:
        ValueError: no values, or a NaN among them.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("se_of_mean needs at least one value")
    if np.isnan(arr).any():
        raise ValueError(f"se_of_mean: NaN among the values {arr.tolist()}")
    if arr.size == 1:
        return float("nan")
    return float(arr.std(ddof=1) / math.sqrt(arr.size))


def cell(value: float, se: float, *, digits: int = 3, percent: bool = False, signed: bool = False) -> str:
    """``"value ± se"`` with ``digits`` decimals (both times 100 with ``percent``; the value with its sign with
    ``signed``, for differences): the one ± formatter of every report. An undefined ``se`` (nan) is written
    ``± n/a``."""
    scale = 100.0 if percent else 1.0
    spread = "n/a" if math.isnan(se) else f"{scale * se:.{digits}f}"
    return f"{scale * value:{'+' if signed else ''}.{digits}f} ± {spread}"


def accuracy_cell(p: float, n: int, *, digits: int = 3, percent: bool = False) -> str:
    """An accuracy over ``n`` images with its binomial standard error, e.g. ``"0.825 ± 0.027"``."""
    return cell(p, binomial_se(p, n), digits=digits, percent=percent)


def mean_cell(values: Sequence[float], *, digits: int = 3, percent: bool = False) -> str:
    """The mean of ``values`` (e.g. one accuracy per seed) with the standard error of that mean."""
    return cell(float(np.mean(np.asarray(values, dtype=np.float64))), se_of_mean(values), digits=digits,
                percent=percent)


def proportion_cell(values: Sequence[float], *, digits: int = 1, percent: bool = True) -> str:
    """The mean of per-image values in [0, 1] with its standard error: binomial (``binomial_se``) when every value is
    0 or 1, else the SE of the mean over the images; ``"–"`` for no values.

    Examples:
        >>> proportion_cell([1.0, 1.0, 0.0, 1.0])
        '75.0 ± 21.7'
        >>> proportion_cell([])
        '–'
    """
    if len(values) == 0:
        return "–"
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    se = binomial_se(mean, arr.size) if set(np.unique(arr)) <= {0.0, 1.0} else se_of_mean(arr.tolist())
    return cell(mean, se, digits=digits, percent=percent)


def uncertainty_caption(*what: str) -> str:
    """The caption line of a table: ``± one standard error`` and what it is for this table's cells."""
    return f"Cells: value {UNCERTAINTY} ({'; '.join(what)})." if what else f"Cells: value {UNCERTAINTY}."


# ---- tables --------------------------------------------------------------------------------------------------------
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str | None = None) -> str:
    """A markdown table, preceded by its caption line (and a blank line) when given.

    Raises:
        ValueError: a row whose number of cells differs from the header's.
    """
    lines = [] if caption is None else [caption, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, the header {len(header)}: {list(row)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


# ---- plots ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlotInfo:
    """What a plot's title states: N (noise samples per image) where relevant, the number of images, alpha where
    relevant, the seed, and anything else (``extra``, e.g. ``k = 10 draws``). ``noise_samples`` and ``images``
    given as strings are stated as given (e.g. ``"M ∈ {1, 4, 16} noisy passes"``)."""

    images: int | str
    seed: int
    noise_samples: int | str | None = None
    alpha: float | None = None
    extra: tuple[str, ...] = ()

    def caption(self) -> str:
        parts = []
        if self.noise_samples is not None:
            n = self.noise_samples
            parts.append(f"N = {n:,} noise samples" if isinstance(n, int) else n)  # a string: stated as given
        parts.append(f"{self.images:,} images" if isinstance(self.images, int) else f"{self.images}")
        if self.alpha is not None:
            parts.append(f"α = {self.alpha:g}")
        parts += list(self.extra)
        parts.append(f"seed {self.seed}")
        return ", ".join(parts)


@dataclass
class Plot:
    """A written plot: its file, the title it carries and the y-limits of its axes (for checks)."""

    path: Path
    title: str
    ylims: list[tuple[float, float]] = field(default_factory=list)


def plots_unavailable() -> str | None:
    """Why no plots can be drawn (matplotlib missing, with the install hint), or None when they can."""
    from art_ext._optional import require

    try:
        require("matplotlib")
    except ImportError as err:  # reported in the summary instead of a plot
        return str(err)
    return None


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (``ImportError`` naming the extra without it)."""
    from art_ext._optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: markers on every curve: a curve lying at 0 (or 1) stays visible on the axis
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def zero_visible(ax: Any, top: float = 1.0, margin: float = 0.04) -> None:
    """Y-limits from a little below 0 to a little above ``top``, so points at 0 and at ``top`` are not on the frame."""
    ax.set_ylim(-margin * top, (1 + margin) * top)


def save(fig: Any, path: Path, title: str, *, dpi: int = 120) -> Plot:
    """Title the figure (``suptitle``, wrapped to the figure's width), write it to ``path`` and close it; returns
    what was written."""
    import textwrap

    plt = pyplot()
    fig.suptitle(textwrap.fill(title, width=max(40, int(fig.get_figwidth() * 14))), fontsize=9)
    ylims = [(float(ax.get_ylim()[0]), float(ax.get_ylim()[1])) for ax in fig.get_axes()]
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return Plot(Path(path), title, ylims)


def plots_section(plots: Sequence[Plot], unavailable: str | None = None) -> str:
    """The report's lines about its plots: each file with its title, or why there are none."""
    if unavailable is not None:
        return f"No plots: {unavailable}."
    return "\n".join(f"Plot `{p.path.name}`: {p.title}" for p in plots)


# ---- files ---------------------------------------------------------------------------------------------------------
def write_summary(out: Path, summary: Any, text: str) -> str:
    """Write ``summary.json`` (``summary``, sorted keys) and ``summary.md`` (``text``, ending in one newline) into
    ``out``; returns the markdown."""
    text = text.rstrip("\n") + "\n"
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    (out / "summary.md").write_text(text)
    return text


def run_line(manifest: dict[str, Any]) -> str:
    """Seed, git SHA, torch version and device of a run, as every report states them."""
    return (f"Seed {manifest['seed']}, git {manifest.get('git_sha')}, torch "
            f"{manifest.get('versions', {}).get('torch')}, device {manifest.get('device')}.")
