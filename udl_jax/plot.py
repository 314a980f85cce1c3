"""One figure style for the whole book, and the few plotting helpers chapters share.

Figures keep an opaque white background so they read the same in the site's light and dark
themes; colours come from a colour-blind-safe cycle (Okabe & Ito 2008).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = ["use_style", "subplots", "figsize", "COLORS", "STYLE", "WIDTH", "DPI", "COLUMN_PX"]


COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""The Okabe-Ito colour cycle, blue first."""

COLUMN_PX = 676
"""Width of the site's text column in CSS pixels (sphinx-book-theme, 1280 px window).

A figure wider than this is shrunk to fit, and its text with it; every chapter figure is drawn at
most this wide (tests/test_book.py checks the committed PNGs).
"""

DPI = 100
"""Figure resolution in dots per inch (one inch is 100 pixels, so a 10 pt label is 14 px)."""

WIDTH = 6.4
"""A full-column figure's width in inches (640 px, leaving room for a tight bounding box)."""

STYLE = {
    "figure.figsize": (WIDTH, 0.6 * WIDTH),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
    "axes.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=COLORS),
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}
"""The book's matplotlib rcParams, sized for the text column (see `COLUMN_PX`) and readable
when a phone shrinks the column to about 370 px (tick labels stay above 5 px)."""


def use_style() -> None:
    """Apply the book's matplotlib style (call once, in a chapter's setup cell)."""
    mpl.rcParams.update(STYLE)


def figsize(ncols: int = 1, nrows: int = 1, aspect: float = 0.62) -> tuple[float, float]:
    """Size in inches of a figure of ``nrows x ncols`` panels that fills the text column.

    The width is always `WIDTH`; each panel's height is ``aspect`` times its width. More than
    two panels side by side are too small to read on the site: stack them instead
    (``ncols=2, nrows=2`` for four, ``ncols=1, nrows=3`` for three).

    Args:
      ncols: panels per row, 1 to 3.
      nrows: rows of panels, at least 1.
      aspect: panel height / panel width, in (0, 3].

    Returns:
      ``(width, height)`` in inches, for ``plt.subplots(figsize=...)``.
    """
    if not isinstance(ncols, int) or not 1 <= ncols <= 3:
        raise ValueError(
            f"ncols: expected 1, 2 or 3 panels per row (stack more in rows), got {ncols!r}"
        )
    if not isinstance(nrows, int) or nrows < 1:
        raise ValueError(f"nrows: expected a positive integer, got {nrows!r}")
    if not 0 < aspect <= 3:
        raise ValueError(f"aspect: expected a panel height/width ratio in (0, 3], got {aspect!r}")
    return WIDTH, nrows * aspect * WIDTH / ncols


def subplots(ncols: int = 1, nrows: int = 1, aspect: float = 0.62, **kwargs):
    """`plt.subplots` at the column width: ``fig, axes = plot.subplots(2, 2)``.

    Args:
      ncols, nrows, aspect: as in `figsize`.
      **kwargs: passed to `matplotlib.pyplot.subplots` (``sharex``, ``squeeze``, ...).

    Returns:
      ``(fig, axes)`` as `matplotlib.pyplot.subplots` returns them.
    """
    if "figsize" in kwargs:
        raise ValueError("figsize: set by ncols, nrows and aspect; do not pass it")
    return plt.subplots(nrows, ncols, figsize=figsize(ncols, nrows, aspect), **kwargs)
