import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate, special

from udl_jax import models
from udl_jax import signal_propagation as sp


def _gauss(f, q):
    """E f(sqrt(q) z) by adaptive integration against the normal density (reference)."""
    dens = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    return integrate.quad(lambda z: f(np.sqrt(q) * z) * dens(z), -12, 12, limit=200,
                          points=[0.0])[0]


def test_gauss_expectation_closed_forms():
    q = np.array([0.3, 1.0, 4.0])
    np.testing.assert_allclose(sp.gauss_expectation(lambda u: u**2, q), q, rtol=1e-12)
    np.testing.assert_allclose(sp.gauss_expectation(lambda u: u**4, q), 3 * q**2, rtol=1e-12)
    relu2 = sp.gauss_expectation(lambda u: np.maximum(u, 0) ** 2, q)
    np.testing.assert_allclose(relu2, q / 2, rtol=1e-12)  # E relu(z)^2 = q / 2
    step = sp.gauss_expectation(lambda u: (u > 0).astype(float), q)
    np.testing.assert_allclose(step, 0.5, rtol=1e-12)  # even node count: no node at 0
    # E erf(a z)^2 = (2/pi) arcsin(2 a^2 / (1 + 2 a^2)) (Williams 1997), a^2 = q
    erf2 = sp.gauss_expectation(lambda u: special.erf(u) ** 2, q)
    np.testing.assert_allclose(erf2, 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), rtol=1e-7)
    with pytest.raises(ValueError, match="q"):
        sp.gauss_expectation(np.tanh, -1.0)


def test_variance_map_relu_and_tanh_against_quadrature():
    np.testing.assert_allclose(sp.variance_map(3.0, "relu", 2.5, 0.1), 2.5 * 1.5 + 0.1)
    for q in (0.1, 1.0, 5.0):
        ref = 1.7 * _gauss(lambda u: np.tanh(u) ** 2, q) + 0.05
        np.testing.assert_allclose(sp.variance_map(q, "tanh", 1.7, 0.05), ref, rtol=1e-5)
        ref_chi = 1.7 * _gauss(lambda u: (1 - np.tanh(u) ** 2) ** 2, q)
        # sech^4 has poles near the real axis: 128 Gauss-Hermite nodes give about 1e-4
        np.testing.assert_allclose(sp.chi(q, "tanh", 1.7), ref_chi, rtol=1e-3)
    q = sp.variance_recursion(2.0, 5, "relu", 3.0)
    np.testing.assert_allclose(q, 2.0 * 1.5 ** np.arange(5))
    with pytest.raises(ValueError, match="activation"):
        sp.variance_map(1.0, "swish")
    with pytest.raises(ValueError, match="weight_var"):
        sp.variance_map(1.0, "relu", -1.0)
    with pytest.raises(ValueError, match="depth"):
        sp.variance_recursion(1.0, 0)


def test_fixed_point_chi_1_and_the_edge_of_chaos():
    q_star = sp.fixed_point_variance("tanh", 2.0, 0.05)
    np.testing.assert_allclose(sp.variance_map(q_star, "tanh", 2.0, 0.05), q_star, rtol=1e-10)
    assert sp.fixed_point_variance("tanh", 0.8, 0.0) == 0.0  # ordered without bias: q -> 0
    np.testing.assert_allclose(sp.fixed_point_variance("relu", 1.0, 0.3), 0.6)
    with pytest.raises(ValueError, match="fixed point"):
        sp.fixed_point_variance("relu", 2.5, 0.0)
    assert sp.chi_1("relu", 2.0) == pytest.approx(1.0)
    assert sp.critical_weight_var("relu") == 2.0
    # tanh without bias: q* = 0 for sigma_w^2 <= 1, chi_1 = sigma_w^2 there: critical at 1
    assert sp.critical_weight_var("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    crit = sp.critical_weight_var("tanh", 0.05)
    assert sp.chi_1("tanh", crit, 0.05) == pytest.approx(1.0, abs=1e-8)
    assert 1.5 < crit < 2.0  # Poole et al. 2016, fig. 2: sigma_b^2 = 0.05 near 1.76
    assert sp.chi_1("tanh", 1.0, 0.05) < 1 < sp.chi_1("tanh", 3.0, 0.05)


def test_gradient_recursion_is_a_product_of_chis():
    q = np.array([0.5, 1.0, 2.0])
    g = sp.gradient_recursion(q, "tanh", 1.5)
    c = sp.chi(q, "tanh", 1.5)
    np.testing.assert_allclose(g, [c[0] * c[1], c[1], 1.0])


def test_correlation_map_fixed_points_and_closed_form():
    # c = 1 is a fixed point; relu's map follows the arc-cosine kernel (Cho & Saul 2009)
    np.testing.assert_allclose(sp.correlation_map(1.0, 0.7, "tanh", 1.5, 0.05), 1.0, rtol=1e-8)
    c = np.array([-0.5, 0.0, 0.5])
    theta = np.arccos(c)
    arccos = (np.sin(theta) + (np.pi - theta) * c) / np.pi  # E relu relu / (q / 2)
    # (ReLU's kink limits the 2D Gauss-Hermite rule to about 1e-2 here)
    np.testing.assert_allclose(sp.correlation_map(c, 1.0, "relu", 2.0), arccos, atol=6e-3)
    # identity: the correlation is kept (plus the bias's share)
    np.testing.assert_allclose(sp.correlation_map(c, 1.0, "identity", 1.0, 0.0), c, atol=1e-12)
    chaotic = sp.correlation_recursion(0.9, 1.0, 40, "tanh", 4.0, 0.05)
    ordered = sp.correlation_recursion(0.1, 1.0, 40, "tanh", 1.0, 0.05)
    assert chaotic[-1] < 0.8 and ordered[-1] > 0.99
    with pytest.raises(ValueError, match="c"):
        sp.correlation_map(1.5, 1.0)


@pytest.mark.parametrize("act,w2,b2,tol", [("relu", 2.0, 0.0, 0.3), ("tanh", 1.8, 0.05, 0.2)])
def test_layer_statistics_match_mean_field_and_autodiff(act, w2, b2, tol):
    width, depth = 256, 6
    net = models.MLP((width,) * (depth + 1) + (4,), activation=act, weight_var=w2,
                     bias_var=b2, rngs=nnx.Rngs(0))
    x = np.array(jax.random.normal(jax.random.key(1), (128, width)))
    x /= np.sqrt((x**2).mean(1, keepdims=True))
    st = sp.layer_statistics(net, x, jax.random.key(2))
    q = sp.variance_recursion(w2 + b2, depth, act, w2, b2)
    # Monte Carlo through one wide network: ReLU's per-layer fluctuations (relative variance
    # 5 / width per layer) compound with depth, tanh's do not
    np.testing.assert_allclose(st.pre_var, q, rtol=tol)
    g = sp.gradient_recursion(q, act, w2)
    np.testing.assert_allclose(st.grad_sq / st.grad_sq[-1], g, rtol=tol)
    # the measured pre-activations are the model's own
    pre, _ = net.features(jnp.asarray(x))
    np.testing.assert_allclose(st.pre_var, [float(jnp.mean(z**2)) for z in pre], rtol=1e-5)
    # the gradient at the last hidden layer, by autodiff through the model's last layer
    v = jax.random.normal(jax.random.key(2), (128, 4))
    act_fn = models.ACTIVATIONS[act]
    d = jax.grad(lambda z: jnp.sum(v * net.layers[-1](act_fn(z))))(pre[-1])
    np.testing.assert_allclose(st.grad_sq[-1], float(jnp.mean(jnp.sum(d**2, -1))), rtol=1e-4)
    assert abs(st.correlation[0]) < 0.3  # independent random inputs


def test_layer_statistics_rejects_bad_input():
    net = models.MLP((4, 8, 2), normalization="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="normalization"):
        sp.layer_statistics(net, np.ones((3, 4)), jax.random.key(0))
    net = models.MLP((4, 8, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x"):
        sp.layer_statistics(net, np.ones((3, 5)), jax.random.key(0))
    with pytest.raises(TypeError, match="model"):
        sp.layer_statistics(object(), np.ones((3, 4)), jax.random.key(0))
