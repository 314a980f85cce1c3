import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from udl_jax import data, edge_of_stability, hessian, losses, models, train


def test_gd_with_sharpness_on_a_quadratic_matches_the_closed_form(symmetric_matrix):
    """L = 0.5 theta^T A theta: theta_t = (I - eta A)^t theta_0, and the Hessian is A."""
    a, lam, _ = symmetric_matrix(p=8, seed=1)
    a32 = jnp.asarray(a, jnp.float32)

    def loss_fn(p):
        return 0.5 * p["theta"] @ (a32 @ p["theta"])

    theta0 = np.random.default_rng(2).normal(size=8)
    eta, steps = 0.3, 40  # eta * 5 = 1.5 < 2: stable
    run = edge_of_stability.gd_with_sharpness(
        loss_fn,
        {"theta": jnp.asarray(theta0, jnp.float32)},
        learning_rate=eta,
        steps=steps,
        every=10,
        key=jax.random.key(0),
        num_iter=8,
    )
    m = np.eye(8) - eta * a
    thetas = [np.linalg.matrix_power(m, t) @ theta0 for t in range(steps + 1)]
    losses = [0.5 * th @ a @ th for th in thetas]
    np.testing.assert_allclose(run.params["theta"], thetas[-1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run.loss, losses, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(run.sharpness_steps, [0, 10, 20, 30, 40])
    np.testing.assert_allclose(run.sharpness, 5.0, rtol=1e-5)


def test_gd_on_a_quadratic_diverges_past_two_over_lambda_max(symmetric_matrix):
    # positive definite: only the top can blow up
    a, _, _ = symmetric_matrix(p=6, seed=3, lam_min=0.1)
    a32 = jnp.asarray(a, jnp.float32)

    def loss_fn(p):
        return 0.5 * p @ (a32 @ p)

    p0 = jnp.ones(6)
    kw = dict(steps=60, every=60, key=jax.random.key(0), num_iter=6)
    below = edge_of_stability.gd_with_sharpness(loss_fn, p0, learning_rate=0.98 * 2 / 5, **kw)
    above = edge_of_stability.gd_with_sharpness(loss_fn, p0, learning_rate=1.02 * 2 / 5, **kw)
    assert below.loss[-1] < below.loss[0]
    assert above.loss[-1] > 2 * above.loss[0]


@pytest.fixture(scope="module")
def mlp_problem():
    ds = data.mnist1d(num_samples=200)
    ds = ds.replace(x=ds.x[:64], y=ds.y[:64])
    model = models.MLP((40, 16, 16, 10), activation="tanh", rngs=nnx.Rngs(0))
    apply_fn, params, _ = models.functional(model)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)

    def loss_fn(p):
        return losses.mse(apply_fn(p, x), y)

    return ds, model, params, loss_fn


def test_gd_steps_match_train_fit(mlp_problem):
    """The slow path: `train.fit` with plain SGD on the full batch is the same GD."""
    ds, model, params, loss_fn = mlp_problem
    eta, steps = 0.3, 60
    run = edge_of_stability.gd_with_sharpness(
        loss_fn, params, learning_rate=eta, steps=steps, every=20, key=jax.random.key(0), num_iter=5
    )
    trained, hist = train.fit(
        model,
        ds,
        key=jax.random.key(0),
        steps=steps,
        learning_rate=eta,
        optimizer=optax.sgd,
        batch_size=None,
        loss="mse",
        log_every=20,
        progress=False,
    )
    _, fit_params, _ = models.functional(trained)
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(fit_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run.loss[::20], hist.train_loss, rtol=1e-4)


def test_sharpness_matches_hessian_sharpness(mlp_problem):
    """Warm-started Lanczos inside the scan against the adaptive `hessian.sharpness`, at every
    measurement, with the parameters reached by the same GD run in chunks."""
    _, _, params, loss_fn = mlp_problem
    eta, every, chunks = 0.3, 25, 4
    run = edge_of_stability.gd_with_sharpness(
        loss_fn,
        params,
        learning_rate=eta,
        steps=every * chunks,
        every=every,
        key=jax.random.key(0),
        num_iter=20,
    )
    p, refs = params, []
    for c in range(chunks + 1):
        refs.append(hessian.sharpness(loss_fn, p, jax.random.key(c), tol=1e-5, max_iter=300))
        p = edge_of_stability.gd_with_sharpness(
            loss_fn,
            p,
            learning_rate=eta,
            steps=every,
            every=every,
            key=jax.random.key(0),
            num_iter=1,
        ).params
    np.testing.assert_allclose(run.sharpness, refs, rtol=2e-3)
    hv = hessian.hessian_operator(loss_fn, run.params)(run.eigenvector)
    np.testing.assert_allclose(
        np.linalg.norm(hv - run.sharpness[-1] * run.eigenvector) / abs(run.sharpness[-1]),
        0.0,
        atol=2e-2,
    )


def test_gd_with_sharpness_validates_arguments(mlp_problem):
    _, _, params, loss_fn = mlp_problem
    kw = dict(learning_rate=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="multiple of every"):
        edge_of_stability.gd_with_sharpness(loss_fn, params, steps=10, every=3, **kw)
    with pytest.raises(ValueError, match="every"):
        edge_of_stability.gd_with_sharpness(loss_fn, params, steps=10, every=0, **kw)
    with pytest.raises(ValueError, match="v0"):
        edge_of_stability.gd_with_sharpness(
            loss_fn, params, steps=10, every=5, v0=jnp.ones(3), **kw
        )
    with pytest.raises(TypeError, match="loss_fn"):
        edge_of_stability.gd_with_sharpness(None, params, steps=10, every=5, **kw)
