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
