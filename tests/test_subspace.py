import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from udl_jax import bounds, data, losses, models, subspace, train

WIDTHS = (5, 7, 6, 3)


def _mlp(seed=0):
    return models.MLP(WIDTHS, rngs=nnx.Rngs(seed))


def test_mlp_apply_matches_the_nnx_model():
    mlp = _mlp()
    x = jax.random.normal(jax.random.key(1), (11, WIDTHS[0]))
    theta = subspace.flatten_mlp(mlp)
    assert theta.shape == (models.MLPSpec(WIDTHS).num_params,)
    np.testing.assert_allclose(
        subspace.mlp_apply(WIDTHS, "relu", theta, x), mlp(x), rtol=1e-5, atol=1e-6
    )


def test_subspace_model_at_zero_is_the_initialization_and_moves_along_p():
    mlp = _mlp()
    m = subspace.SubspaceMLP(mlp, 4, key=jax.random.key(2))
    x = jax.random.normal(jax.random.key(1), (9, WIDTHS[0]))
    np.testing.assert_allclose(m(x), mlp(x), rtol=1e-5, atol=1e-6)
    z = jnp.array([0.3, -1.0, 0.0, 2.0])
    p = m.projection[...]
    np.testing.assert_allclose(m.theta(z), subspace.flatten_mlp(mlp) + p @ z, rtol=1e-6)
    # the only trainable parameter is z
    params = nnx.state(m, nnx.Param)
    assert [a.shape for a in jax.tree.leaves(params)] == [(4,)]
    # N(0, 1/D) entries: columns of norm about 1
    d_params = models.MLPSpec(WIDTHS).num_params
    big = subspace.SubspaceMLP(
        models.MLP((20, 50, 10), rngs=nnx.Rngs(0)), 30, key=jax.random.key(0)
    )
    norms = np.linalg.norm(np.asarray(big.projection[...]), axis=0)
    assert abs(norms.mean() - 1) < 0.05
    assert p.shape == (d_params, 4)


def test_subspace_model_trains_with_fit_and_only_z_changes():
    ds = data.moons(jax.random.key(0), n=200, n_test=100)
    mlp = models.MLP((2, 32, 32, 2), rngs=nnx.Rngs(0))
    m = subspace.SubspaceMLP(mlp, 40, key=jax.random.key(3))
    trained, hist = train.fit(
        m,
        ds,
        key=jax.random.key(4),
        steps=300,
        learning_rate=0.05,
        batch_size=50,
        progress=False,
    )
    assert hist.train_accuracy[-1] > 0.8 > hist.train_accuracy[0] - 0.3
    np.testing.assert_array_equal(trained.theta0[...], m.theta0[...])
    np.testing.assert_array_equal(trained.projection[...], m.projection[...])
    err = 1 - float(losses.accuracy(trained(jnp.asarray(ds.x)), jnp.asarray(ds.y)))
    assert err == pytest.approx(1 - hist.train_accuracy[-1], abs=1e-6)


def test_gibbs_errors_reduce_to_deterministic_error_at_tiny_sigma_and_grow_with_sigma():
    ds = data.moons(jax.random.key(0), n=200, n_test=100)
    m = subspace.SubspaceMLP(models.MLP((2, 16, 2), rngs=nnx.Rngs(0)), 10, key=jax.random.key(1))
    m, _ = train.fit(m, ds, key=jax.random.key(2), steps=200, learning_rate=0.05, progress=False)
    mu = m.z[...]
    e0 = 1 - float(losses.accuracy(m.apply(mu, jnp.asarray(ds.x)), jnp.asarray(ds.y)))
    tiny = subspace.gibbs_errors(
        m, mu, 1e-7 * jnp.ones(10), ds.x, ds.y, key=jax.random.key(3), num_samples=5
    )
    np.testing.assert_allclose(tiny, e0)
    wide = subspace.gibbs_errors(
        m, mu, 30 * jnp.ones(10), ds.x, ds.y, key=jax.random.key(3), num_samples=50
    )
    assert wide.mean() > e0 + 0.1


def test_objective_kl_matches_closed_form_and_optimization_lowers_the_bound():
    ds = data.moons(jax.random.key(0), n=400, n_test=100)
    m = subspace.SubspaceMLP(models.MLP((2, 16, 2), rngs=nnx.Rngs(0)), 8, key=jax.random.key(1))
    m, _ = train.fit(m, ds, key=jax.random.key(2), steps=200, learning_rate=0.05, progress=False)
    mu, log_s = m.z[...], jnp.full(8, math.log(0.01))
    _, kl = subspace.gaussian_posterior_bound_objective(
        m, mu, log_s, jnp.log(2.0), ds.x, ds.y, jax.random.key(0), 400, 0.05
    )
    s2, lam = 0.01**2, 2.0
    closed = 0.5 * np.sum(s2 / lam + np.asarray(mu) ** 2 / lam - 1 - np.log(s2 / lam))
    assert float(kl) == pytest.approx(closed, rel=1e-4)

    def bound(mu, sigma, lam):
        k = float(bounds.kl_diag_gaussians(mu, sigma, 0.0, math.sqrt(lam)))
        e = subspace.gibbs_errors(
            m, mu, sigma, ds.x, ds.y, key=jax.random.key(5), num_samples=50
        ).mean()
        return bounds.kl_bound(e, k, 400, 0.05)

    mu2, sigma2, lam2 = subspace.optimize_gaussian_posterior(
        m,
        ds.x,
        ds.y,
        key=jax.random.key(4),
        delta=0.05,
        steps=300,
        learning_rate=0.05,
        batch_size=100,
        sigma_init=0.01,
        lambda_init=1.0,
    )
    assert sigma2.shape == (8,) and lam2 > 0
    assert bound(mu2, sigma2, lam2) < bound(mu, jnp.full(8, 0.01), 1.0)


def test_snap_to_grid_and_bad_inputs():
    assert subspace.snap_to_grid(0.9, [0.1, 1.0, 10.0]) == (1.0, 3)
    assert subspace.snap_to_grid(0.2, [0.1, 1.0, 10.0]) == (0.1, 3)
    with pytest.raises(ValueError, match="grid"):
        subspace.snap_to_grid(1.0, [])
    with pytest.raises(ValueError, match="value"):
        subspace.snap_to_grid(-1.0, [1.0])
    with pytest.raises(ValueError, match="dim"):
        subspace.SubspaceMLP(_mlp(), 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="mlp"):
        subspace.SubspaceMLP(
            models.MLP(WIDTHS, max_width=10, rngs=nnx.Rngs(0)), 3, key=jax.random.key(0)
        )
    with pytest.raises(ValueError, match="theta"):
        subspace.mlp_apply(WIDTHS, "relu", jnp.zeros(3), jnp.zeros((1, 5)))
    with pytest.raises(ValueError, match="num_samples"):
        m = subspace.SubspaceMLP(_mlp(), 3, key=jax.random.key(0))
        subspace.gibbs_errors(
            m,
            jnp.zeros(3),
            jnp.ones(3),
            jnp.zeros((2, 5)),
            jnp.zeros(2, int),
            key=jax.random.key(0),
            num_samples=0,
        )
