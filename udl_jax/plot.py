"""One figure style for the whole book, and the few plotting helpers chapters share.

Figures keep an opaque white background so they read the same in the site's light and dark
themes; colours come from a colour-blind-safe cycle (Okabe & Ito 2008).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""The Okabe-Ito colour cycle, blue first."""

STYLE = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 110,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=COLORS),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's matplotlib style (call once, in a chapter's setup cell)."""
    mpl.rcParams.update(STYLE)


def plot_history(history, ax=None, metric: str = "accuracy", label: str | None = None):
    """Plot a training history's train and test curves against the step.

    Args:
      history: a `udl_jax.train.History`.
      ax: axes to draw on (a new figure if None).
      metric: ``"accuracy"`` or ``"loss"``.
      label: prefix for the legend entries.

    Returns:
      The axes.
    """
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric: expected 'accuracy' or 'loss', got {metric!r}")
    if ax is None:
        _, ax = plt.subplots()
    prefix = f"{label}, " if label else ""
    train = np.asarray(getattr(history, f"train_{metric}"))
    test = np.asarray(getattr(history, f"test_{metric}"))
    (line,) = ax.plot(history.steps, train, label=f"{prefix}train")
    ax.plot(history.steps, test, "--", color=line.get_color(), label=f"{prefix}test")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy" if metric == "accuracy" else "loss (nats)")
    if metric == "loss":
        ax.set_yscale("log")
    ax.legend()
    return ax
