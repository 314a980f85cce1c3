import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from udl_jax import models, shallow_relu


def test_interpolating_network_equals_numpy_interp():
    rng = np.random.default_rng(0)
    knots = np.sort(rng.uniform(-2, 2, 12))
    values = rng.normal(size=12)
    net = shallow_relu.interpolating_network(knots, values)
    assert net.widths == (1, 11, 1)
    x = np.linspace(knots[0], knots[-1], 2001)
    np.testing.assert_allclose(
        np.asarray(net(jnp.asarray(x[:, None], jnp.float32)))[:, 0],
        np.interp(x, knots, values),
        atol=1e-4,
    )  # float32 sums of hinges


def test_error_on_smooth_target_matches_the_h2_over_8_bound():
    """Linear interpolation error of g on a grid of spacing h is at most h^2/8 max|g''|."""
    x = np.linspace(0, 1, 20001)
    for n in (4, 16, 64):
        knots = np.linspace(0, 1, n + 1)
        net = shallow_relu.interpolating_network(knots, np.sin(3 * knots))
        err = np.abs(
            np.asarray(net(jnp.asarray(x[:, None], jnp.float32)))[:, 0] - np.sin(3 * x)
        ).max()
        bound = (1 / n) ** 2 / 8 * 9
        assert 0.5 * bound < err <= bound * 1.01 + 1e-6


def test_hinge_terms_sum_to_the_network():
    net = models.MLP((1, 7, 1), bias_var=1.0, rngs=nnx.Rngs(3))
    x = np.linspace(-2, 2, 50)
    terms = shallow_relu.hinge_terms(net, x)
    np.testing.assert_allclose(
        terms.sum(1) + float(net.layers[1].b[...][0]),
        np.asarray(net(jnp.asarray(x[:, None], jnp.float32)))[:, 0],
        atol=1e-5,
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="knots: expected strictly increasing"):
        shallow_relu.interpolating_network(np.array([0.0, 0.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="knots and values"):
        shallow_relu.interpolating_network(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="model: expected a 1 -> n -> 1"):
        shallow_relu.hinge_terms(models.MLP((2, 3, 1), rngs=nnx.Rngs(0)), np.zeros(2))
