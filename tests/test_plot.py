import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest

from udl_jax import plot


def test_style_sets_the_colour_cycle():
    plot.use_style()
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(plot.COLORS)
    np.testing.assert_allclose(mpl.rcParams["figure.figsize"], (plot.WIDTH, 0.6 * plot.WIDTH))


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
