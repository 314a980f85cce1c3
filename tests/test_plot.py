import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest

from udl_jax import plot
from udl_jax.train import History


def test_style_and_history_plot():
    plot.use_style()
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"][0] == plot.COLORS[0]
    h = History(np.arange(3), np.ones(3), np.ones(3), np.zeros(3), np.linspace(0, 1, 3))
    ax = plot.plot_history(h, metric="accuracy", label="mlp")
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "accuracy"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), h.test_accuracy)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mlp, train", "mlp, test"]
    ax = plot.plot_history(h, metric="loss")
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="metric"):
        plot.plot_history(h, metric="f1")
    plt.close("all")


def test_figures_fit_the_column(tmp_path):
    """A full-width figure, saved as the notebook backend saves it, fits the site's column."""
    plot.use_style()
    for ncols, nrows in ((1, 1), (2, 1), (3, 1), (2, 2), (1, 3)):
        fig, axes = plot.subplots(ncols, nrows)
        assert np.size(axes) == ncols * nrows
        for ax in np.ravel(axes):
            ax.plot([0, 1e4], [0, 1], label="test loss")
            ax.set_xlabel("training step")
            ax.legend()
        fig.savefig(tmp_path / "f.png", bbox_inches="tight")
        width = plt.imread(tmp_path / "f.png").shape[1]
        assert width <= plot.COLUMN_PX, (ncols, nrows, width)
        w, h = fig.get_size_inches()
        assert w == plot.WIDTH and np.isclose(h, nrows * 0.62 * plot.WIDTH / ncols)
        plt.close(fig)
    with pytest.raises(ValueError, match="ncols"):
        plot.figsize(4)
    with pytest.raises(ValueError, match="nrows"):
        plot.figsize(1, 0)
    with pytest.raises(ValueError, match="aspect"):
        plot.figsize(1, 1, aspect=-1)
    with pytest.raises(ValueError, match="figsize"):
        plot.subplots(1, figsize=(12, 3))
