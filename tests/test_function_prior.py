"""udl_jax.function_prior: exact sampling of random MLPs, checked against direct weight draws, the
analytic NNGP kernel and Monte Carlo."""

import jax
import numpy as np
import pytest

from udl_jax import function_prior, lazy_training, models, ntk

KEY = jax.random.key(0)


def _inputs(n=4, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_gram_and_direct_routes_have_the_same_distribution():
    """Second and fourth moments of the outputs agree between the two exact samplers (width 3,
    far from Gaussian), within Monte Carlo error."""
    x = _inputs()
    spec = models.MLPSpec((3, 6, 6, 1), activation="relu", bias_var=0.2)
    a = function_prior.sample_outputs(spec, x, KEY, 4000, method="gram")[..., 0]
    b = function_prior.sample_outputs(spec, x, jax.random.key(1), 4000, method="direct")[..., 0]
    cov_a, cov_b = a.T @ a / len(a), b.T @ b / len(b)
    np.testing.assert_allclose(cov_a, cov_b, rtol=0.15, atol=0.08)
    m4a, m4b = np.mean(a**4, 0), np.mean(b**4, 0)
    np.testing.assert_allclose(m4a, m4b, rtol=0.4)


def test_wide_networks_match_the_nngp_kernel():
    x = _inputs()
    spec = models.MLPSpec((3, 256, 256, 1), activation="relu", bias_var=0.1)
    ks = function_prior.network_kernels(spec, x, KEY, 100)
    k = ntk.nngp_kernel(spec, x)
    assert lazy_training.relative_change(ks.mean(0), k) < 0.02
    # one network's own kernel fluctuates by O(width^-1/2)
    assert 0.01 < np.mean(lazy_training.relative_change(ks, k)) < 0.2


def test_network_kernels_are_the_covariance_of_the_outputs():
    """Same key, same networks: outputs sampled from the networks have covariance mean(kernels)."""
    x = _inputs()
    spec = models.MLPSpec((3, 8, 8, 1), activation="erf", bias_var=0.1)
    f = function_prior.sample_outputs(spec, x, KEY, 4000)[..., 0]
    ks = function_prior.network_kernels(spec, x, KEY, 4000)
    np.testing.assert_allclose(f.T @ f / len(f), ks.mean(0), rtol=0.15, atol=0.06)


def test_depth_one_is_exact_in_expectation():
    """One hidden layer: the mean kernel is the NNGP at any width (here 2), within MC error."""
    x = _inputs()
    spec = models.MLPSpec((3, 2, 1), activation="relu", bias_var=0.1)
    ks = function_prior.network_kernels(spec, x, KEY, 5000)
    se = ks.std(0) / np.sqrt(len(ks))
    assert np.all(np.abs(ks.mean(0) - ntk.nngp_kernel(spec, x)) < 4 * se + 1e-6)


def test_relu_layer_map_matches_the_analytic_kernel():
    x = _inputs(5, 7)
    k1 = 2.0 * x.astype(np.float64) @ x.T.astype(np.float64) / 7 + 0.1
    spec = models.MLPSpec((7, 10, 1), activation="relu", bias_var=0.1)
    got = 2.0 * np.asarray(function_prior.relu_layer_map(k1)) + 0.1
    np.testing.assert_allclose(got, ntk.nngp_kernel(spec, x), rtol=1e-5)
    # its derivative is finite everywhere, the diagonal included
    grad = jax.grad(lambda k: function_prior.relu_layer_map(k).sum())(k1.astype(np.float32))
    assert np.all(np.isfinite(grad))


def test_bias_samples_match_brute_force():
    """The bias estimated by the control variate equals the bias of the plainly sampled mean
    kernel of depth-2 networks (width 4, where it is large)."""
    x = _inputs()
    spec = models.MLPSpec((3, 4, 64, 1), activation="relu", bias_var=0.1)
    est = function_prior.relu_bias_samples(x, 4, KEY, 2000, bias_var=0.1)
    assert est.shape == (2000, 2, 4, 4)
    bias_cv = est[:, 1].mean(0)
    assert est[:, 1].std(0).mean() < est[:, 0].std(0).mean()  # the control variate helps
    ks = function_prior.network_kernels(spec, x, jax.random.key(3), 4000)
    bias_mc = ks.mean(0) - ntk.nngp_kernel(spec, x)
    se = ks.std(0) / np.sqrt(len(ks))
    assert np.all(np.abs(bias_mc - bias_cv) < 4 * se + 4 * est[:, 1].std(0) / np.sqrt(2000))
    assert np.max(np.abs(bias_cv) / se) > 6  # the bias is resolved, not noise


def test_padding_gives_the_same_distribution():
    """A width-4 network allocated 32 units (28 masked) has the kernel statistics of width 4."""
    x = _inputs()
    spec = models.MLPSpec((3, 4, 4, 1), activation="relu", bias_var=0.1)
    a = function_prior.network_kernels(spec, x, KEY, 4000, pad_width=32)
    b = function_prior.network_kernels(spec, x, jax.random.key(1), 4000)
    k = ntk.nngp_kernel(spec, x)
    ea, eb = lazy_training.relative_change(a, k), lazy_training.relative_change(b, k)
    assert abs(ea.mean() - eb.mean()) < 4 * np.hypot(ea.std(), eb.std()) / np.sqrt(4000)
    with pytest.raises(ValueError, match="pad_width"):
        function_prior.sample_outputs(spec, x, KEY, 3, pad_width=2)


def test_helpers_and_bad_input():
    spec = models.MLPSpec((3, 4, 1))
    with pytest.raises(ValueError, match="x"):
        function_prior.sample_outputs(spec, np.zeros((2, 5)), KEY, 3)
    with pytest.raises(ValueError, match="num_networks"):
        function_prior.sample_outputs(spec, np.zeros((2, 3)), KEY, 0)
    with pytest.raises(ValueError, match="method"):
        function_prior.network_kernels(spec, np.zeros((2, 3)), KEY, 3, method="fast")
    with pytest.raises(ValueError, match="width"):
        function_prior.relu_bias_samples(np.zeros((2, 3)), 0, KEY, 3)
