import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from udl_jax import data, lazy_training, models, train

RNG = np.random.default_rng(0)


def test_relative_change_and_weight_changes():
    w0, b0 = np.ones((2, 3)), np.ones(3)
    p0 = {"a": {"w": w0, "b": b0}, "c": {"w": 2 * w0}}
    p = {"a": {"w": w0 + 1, "b": b0 + 100}, "c": {"w": 2 * w0}}
    np.testing.assert_allclose(lazy_training.relative_change(w0 + 1, w0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        lazy_training.weight_changes(p, p0), [1.0, 0.0], atol=1e-6
    )  # no biases
    with pytest.raises(ValueError, match="a: expected"):
        lazy_training.relative_change(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="a: expected"):
        lazy_training.relative_change(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="params0"):
        lazy_training.weight_changes({"b": b0}, {"b": b0})


def test_relative_change_of_a_stack_against_numpy():
    k = RNG.normal(size=(5, 5))
    ks = k + 0.1 * RNG.normal(size=(3, 4, 5, 5))
    want = np.linalg.norm(ks - k, axis=(-2, -1)) / np.linalg.norm(k)
    got = lazy_training.relative_change(ks, k)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    scaled = lazy_training.relative_change(np.eye(2) * 1.1, np.eye(2))
    np.testing.assert_allclose(scaled, 0.1, rtol=1e-5)


def test_kernel_alignment_against_numpy():
    y = RNG.normal(size=(9, 2))
    np.testing.assert_allclose(
        lazy_training.kernel_alignment(y @ y.T, y, centered=False), 1.0, rtol=1e-5
    )
    np.testing.assert_allclose(lazy_training.kernel_alignment(3 * y @ y.T, y), 1.0, rtol=1e-5)
    a = RNG.normal(size=(9, 9))
    k, t = a @ a.T, y @ y.T
    h = np.eye(9) - 1 / 9
    kc, tc = h @ k @ h, h @ t @ h
    want = np.trace(kc @ tc) / np.sqrt(np.trace(kc @ kc) * np.trace(tc @ tc))
    np.testing.assert_allclose(lazy_training.kernel_alignment(k, y), want, rtol=1e-5)
    want_u = np.trace(k @ t) / np.sqrt(np.trace(k @ k) * np.trace(t @ t))
    np.testing.assert_allclose(
        lazy_training.kernel_alignment(k, y, centered=False), want_u, rtol=1e-5
    )
    with pytest.raises(ValueError, match="y: expected"):
        lazy_training.kernel_alignment(k, y[:4])
    with pytest.raises(ValueError, match="k: expected"):
        lazy_training.kernel_alignment(k[:3], y)


def test_loglog_slope():
    x = np.array([1.0, 2, 4, 8])
    assert lazy_training.loglog_slope(x, 3 * x**-0.5) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="positive"):
        lazy_training.loglog_slope(x, -x)


def test_scaled_gd_alpha_one_is_train_fit():
    ds = data.toy_regression_1d(jax.random.key(0), n=8, n_test=4)
    net = models.MLP((1, 16, 1), activation="tanh", parametrization="ntk", rngs=nnx.Rngs(0))
    apply_fn, params0, _ = models.functional(net)
    run = lazy_training.scaled_gd(
        apply_fn,
        params0,
        jnp.asarray(ds.x),
        jnp.asarray(ds.y),
        learning_rate=0.3,
        steps=20,
        center=False,
    )
    fitted, hist = train.fit(
        net,
        ds,
        key=jax.random.key(1),
        steps=20,
        learning_rate=0.3,
        optimizer=optax.sgd,
        batch_size=None,
        loss="mse",
        log_every=20,
        progress=False,
    )
    _, want, _ = models.functional(fitted)
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(run.loss)[[0, -1]], hist.train_loss, rtol=1e-4)


def test_scaled_gd_linear_model_closed_form():
    """For a linear model f = X w the function moves identically for every alpha (its kernel
    X X^T is constant) and the weights move exactly 1/alpha as far (Chizat et al. 2019)."""
    x = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
    y = jnp.asarray(RNG.normal(size=6), jnp.float32)
    w0 = jnp.asarray(RNG.normal(size=4), jnp.float32)
    apply_fn = lambda w, x: (x @ w)[:, None]  # noqa: E731
    eta, steps = 0.2, 15
    # closed form: residual r_s = (I - eta/n X X^T)^s r_0 for g - y with g_0 = 0
    m = np.eye(6) - eta / 6 * np.asarray(x @ x.T, np.float64)
    r = np.linalg.matrix_power(m, steps) @ (-np.asarray(y, np.float64))
    for alpha in (0.5, 1.0, 4.0):
        run = lazy_training.scaled_gd(
            apply_fn, w0, x, y, alpha=alpha, learning_rate=eta, steps=steps
        )
        g = alpha * (x @ run.params - x @ w0)
        np.testing.assert_allclose(g - y, r, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(run.loss[-1], 0.5 * np.mean(r**2), rtol=1e-4)
        if alpha == 1.0:
            d1 = run.params - w0
    run4 = lazy_training.scaled_gd(apply_fn, w0, x, y, alpha=4.0, learning_rate=eta, steps=steps)
    np.testing.assert_allclose(run4.params - w0, d1 / 4, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="steps"):
        lazy_training.scaled_gd(apply_fn, w0, x, y, learning_rate=eta, steps=0)


def _loop_reference(spec, x, y, alpha, s, *, lr, steps, center):
    """One network, one alpha, without vmap: scaled_gd and an NTK from the full Jacobian."""
    net = spec.build(nnx.Rngs(s))
    apply_fn, p0, _ = models.functional(net)
    run = lazy_training.scaled_gd(
        apply_fn, p0, x, y, alpha=alpha, learning_rate=lr, steps=steps, center=center
    )

    def kernel(p):
        flat, unravel = ravel_pytree(p)
        jac = jax.jacobian(lambda f: apply_fn(unravel(f), x)[:, 0])(flat)
        return np.asarray(jac, np.float64) @ np.asarray(jac, np.float64).T

    k0, k1 = kernel(p0), kernel(run.params)
    w0 = [np.asarray(a) for a in jax.tree.leaves(p0) if a.ndim == 2]
    w1 = [np.asarray(a) for a in jax.tree.leaves(run.params) if a.ndim == 2]
    h = np.eye(len(x)) - 1 / len(x)
    t = h @ np.outer(y, y) @ h

    def align(k):
        kc = h @ k @ h
        return np.sum(kc * t) / (np.linalg.norm(kc) * np.linalg.norm(t))

    return dict(
        loss0=run.loss[0],
        loss=run.loss[-1],
        dw=[np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(w1, w0, strict=True)],
        dk=np.linalg.norm(k1 - k0) / np.linalg.norm(k0),
        align0=align(k0),
        align1=align(k1),
    )


def test_lazy_runs_against_a_loop_over_networks_and_scales():
    spec = models.MLPSpec((1, 8, 8, 1), parametrization="ntk", bias_var=0.5)
    x = jnp.linspace(-1, 1, 6)[:, None]
    y = jnp.sin(3 * x[:, 0])
    alphas = [0.5, 4.0]
    runs = lazy_training.lazy_runs(
        spec, x, y, alphas, seeds=2, learning_rate=0.3, steps=10, center=True, seed=3
    )
    assert runs.dw.shape == (2, 2, 3) and runs.dk.shape == (2, 2)
    for i, alpha in enumerate(alphas):
        for s in range(2):
            want = _loop_reference(spec, x, y, alpha, 3 + s, lr=0.3, steps=10, center=True)
            for name, value in want.items():
                np.testing.assert_allclose(
                    getattr(runs, name)[i, s], value, rtol=2e-3, atol=1e-6, err_msg=name
                )
    with pytest.raises(ValueError, match="alphas"):
        lazy_training.lazy_runs(spec, x, y, [0.0], seeds=1, learning_rate=0.1, steps=1)
    with pytest.raises(ValueError, match="seeds"):
        lazy_training.lazy_runs(spec, x, y, [1.0], seeds=0, learning_rate=0.1, steps=1)
    with pytest.raises(ValueError, match="x: expected"):
        lazy_training.lazy_runs(spec, x[:, 0], y, [1.0], seeds=1, learning_rate=0.1, steps=1)
    with pytest.raises(ValueError, match="y: expected"):
        lazy_training.lazy_runs(spec, x, y[:3], [1.0], seeds=1, learning_rate=0.1, steps=1)
    with pytest.raises(ValueError, match="spec"):
        lazy_training.lazy_runs("mlp", x, y, [1.0], seeds=1, learning_rate=0.1, steps=1)


def test_lazy_width_sweep_is_lazy_runs_per_width_with_slopes():
    spec = models.MLPSpec((1, 1, 1, 1), parametrization="ntk", bias_var=0.5)
    x = jnp.linspace(-1, 1, 5)[:, None]
    y = x[:, 0] ** 2
    widths = (4, 16)
    sweep = lazy_training.lazy_width_sweep(
        spec, widths, x, y, seeds=2, learning_rate=0.2, steps=5, seed=1
    )
    assert sweep.dw.shape == (2, 2, 3) and sweep.w_slopes.shape == (3, 2)
    for i, n in enumerate(widths):
        want = lazy_training.lazy_runs(
            models.MLPSpec((1, n, n, 1), parametrization="ntk", bias_var=0.5),
            x,
            y,
            [1.0],
            seeds=2,
            learning_rate=0.2,
            steps=5,
            center=False,
            seed=1,
        )
        np.testing.assert_allclose(sweep.dw[i], want.dw[0], rtol=1e-6)
        np.testing.assert_allclose(sweep.dk[i], want.dk[0], rtol=1e-6)
        np.testing.assert_allclose(sweep.loss_ratio[i], want.loss[0] / want.loss0[0], rtol=1e-6)
    # two widths: the slope is the secant in log-log
    ratio = np.log(widths[1] / widths[0])
    np.testing.assert_allclose(
        sweep.w_slopes, np.log(sweep.dw[1] / sweep.dw[0]).T / ratio, rtol=1e-6
    )
    np.testing.assert_allclose(sweep.k_slopes, np.log(sweep.dk[1] / sweep.dk[0]) / ratio, rtol=1e-6)
    with pytest.raises(ValueError, match="widths"):
        lazy_training.lazy_width_sweep(spec, (8,), x, y, seeds=1, learning_rate=0.1, steps=1)
