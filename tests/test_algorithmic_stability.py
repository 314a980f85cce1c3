import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from udl_jax import algorithmic_stability as stab
from udl_jax import data, losses, models


def _tiny(seed=0, n=40, d=5, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 20, d)).astype(np.float32)
    y = rng.integers(0, k, n + 20).astype(np.int32)
    return data.Dataset(x[:n], y[:n], x[n:], y[n:])


def test_replace_one_changes_exactly_one_example():
    ds = _tiny()
    new = stab.replace_one(ds, 7, np.full(5, 9.0), 2)
    assert np.all(new.x[7] == 9.0) and new.y[7] == 2
    keep = np.arange(40) != 7
    np.testing.assert_array_equal(new.x[keep], ds.x[keep])
    np.testing.assert_array_equal(new.x_test, ds.x_test)
    assert ds.x[7, 0] != 9.0  # the original is not modified
    with pytest.raises(ValueError, match="index"):
        stab.replace_one(ds, 40, np.zeros(5), 0)
    with pytest.raises(ValueError, match="x_new"):
        stab.replace_one(ds, 0, np.zeros(4), 0)


def _coupled(ds, x_new, y_new, steps=200, batch_size=1):
    return stab.coupled_fits(lambda: nnx.Linear(5, 3, rngs=nnx.Rngs(0)), ds, indices=[3, 11],
                             x_new=x_new, y_new=y_new, key=jax.random.key(1), steps=steps,
                             learning_rate=0.05, optimizer=optax.sgd, batch_size=batch_size,
                             log_every=20)


def test_coupled_fits_share_the_randomness():
    """Replacing an example by itself must give the identical run (same init, same minibatch
    indices); replacing it by another example must not."""
    ds = _tiny()
    same = _coupled(ds, ds.x[[3, 11]], ds.y[[3, 11]])
    for m, h in same.replaced:
        assert stab.parameter_distance(same.base[0], m) == 0.0
        np.testing.assert_array_equal(h.test_outputs, same.base[1].test_outputs)
    other = _coupled(ds, ds.x_test[:2], ds.y_test[:2])
    assert all(stab.parameter_distance(other.base[0], m) > 0 for m, _ in other.replaced)
    assert other.base[1].test_outputs.shape == (11, 20, 3)
    with pytest.raises(ValueError, match="x_new, y_new"):
        _coupled(ds, ds.x_test[:1], ds.y_test[:2])


def test_convex_bound_holds_for_coupled_full_batch_gradient_descent():
    """Brute force: softmax regression with full-batch GD (the coupling is deterministic), where
    the bound reads |w_T - w'_T| <= 2 L T eta / n with no expectation."""
    ds = _tiny(n=30)
    lip, beta = stab.softmax_regression_constants(np.concatenate([ds.x, ds.x_test[:1]]))
    eta, steps = 1 / beta, 300
    run = stab.coupled_fits(lambda: nnx.Linear(5, 3, rngs=nnx.Rngs(0)), ds, indices=[4],
                            x_new=ds.x_test[:1], y_new=ds.y_test[:1], key=jax.random.key(0),
                            steps=steps, learning_rate=eta, optimizer=optax.sgd,
                            batch_size=None, log_every=steps)
    dist = stab.parameter_distance(run.base[0], run.replaced[0][0])
    param_bound, loss_bound = stab.convex_stability_bound(np.full(steps, eta), lip, 30, beta)
    assert 0 < dist <= param_bound[-1]
    np.testing.assert_allclose(param_bound, 2 * lip * eta * np.arange(1, steps + 1) / 30)
    np.testing.assert_allclose(loss_bound, lip * param_bound)
    with pytest.raises(ValueError, match="2/beta"):
        stab.convex_stability_bound(np.full(3, 3 / beta), lip, 30, beta)
    with pytest.raises(ValueError, match="n:"):
        stab.convex_stability_bound(np.ones(3), 1.0, 1)


def test_softmax_regression_constants_bound_gradient_and_hessian_by_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    lip, beta = stab.softmax_regression_constants(x)
    r2 = (x**2).sum(1).max() + 1
    assert lip == pytest.approx(np.sqrt(2 * r2)) and beta == pytest.approx(r2 / 2)

    def loss(theta, xi, yi):  # theta = (W (4x3), b (3)) flattened
        w, b = theta[:12].reshape(4, 3), theta[12:]
        return optax.softmax_cross_entropy_with_integer_labels(xi @ w + b, yi)

    thetas = rng.normal(size=(200, 15)) * np.where(np.arange(200) % 2, 3.0, 0.1)[:, None]
    i = rng.integers(0, 50, 200)
    ys = rng.integers(0, 3, 200)
    both = jax.jit(jax.vmap(lambda t, xi, yi: (jnp.linalg.norm(jax.grad(loss)(t, xi, yi)),
                                                jnp.linalg.eigvalsh(
                                                    jax.hessian(loss)(t, xi, yi))[-1])))
    g_norms, h_tops = both(jnp.asarray(thetas), jnp.asarray(x[i]), jnp.asarray(ys))
    assert float(g_norms.max()) <= lip * (1 + 1e-5)
    assert float(h_tops.max()) <= beta * (1 + 1e-5)
    # tightness of beta: two classes at p = (1/2, 1/2) reach |x~|^2 / 2 exactly
    xi = jnp.asarray(x[np.argmax((x**2).sum(1))])
    h2 = jax.hessian(lambda t: optax.softmax_cross_entropy_with_integer_labels(
        xi @ t[:8].reshape(4, 2) + t[8:], 0))(jnp.zeros(10))
    assert float(jnp.linalg.eigvalsh(h2)[-1]) == pytest.approx(beta, rel=1e-5)


def test_nonconvex_bound_closed_form_and_limits():
    val = stab.nonconvex_stability_bound(1000, c=0.5, lipschitz=2.0, smoothness=4.0, n=101)
    bc = 2.0
    expected = (1 + 1 / bc) / 100 * (2 * 0.5 * 4.0) ** (1 / 3) * 1000 ** (2 / 3)
    assert val == pytest.approx(expected, rel=1e-12)
    t = np.array([10.0, 100.0, 1000.0])
    big = stab.nonconvex_stability_bound(t, c=100.0, lipschitz=1.0, smoothness=10.0, n=1000)
    assert np.all(np.diff(big) > 0)
    np.testing.assert_allclose(big, t / 999, rtol=0.02)  # beta c >> 1: about T / n
    with pytest.raises(ValueError, match="steps"):
        stab.nonconvex_stability_bound(0, 1.0, 1.0, 1.0, 10)
    with pytest.raises(ValueError, match="smoothness"):
        stab.nonconvex_stability_bound(5, 1.0, 1.0, -1.0, 10)


def test_loss_divergence_and_parameter_distance_by_hand():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 3))
    y = rng.integers(0, 3, 6)

    def ce(o):
        o = o - o.max(-1, keepdims=True)
        return -(o[..., np.arange(6), y] - np.log(np.exp(o).sum(-1)))

    mx, mean = stab.loss_divergence(a, b, y)
    gap = np.abs(ce(a) - ce(b))
    np.testing.assert_allclose(mx, gap.max(-1), rtol=1e-5)
    np.testing.assert_allclose(mean, gap.mean(-1), rtol=1e-5)
    with pytest.raises(ValueError, match="y:"):
        stab.loss_divergence(a, b, y[:5])
    m1, m2 = nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Linear(3, 2, rngs=nnx.Rngs(1))
    flat = [np.concatenate([m.bias[...].ravel(), m.kernel[...].ravel()]) for m in (m1, m2)]
    assert stab.parameter_distance(m1, m2) == pytest.approx(
        np.linalg.norm(flat[0] - flat[1]), rel=1e-6)


def test_per_example_gradients_match_a_loop():
    model = models.MLP((5, 8, 3), rngs=nnx.Rngs(0))
    apply_fn, params, _ = models.functional(model)
    ds = _tiny()

    def one(p, xi, yi):  # one example, written out
        return losses.cross_entropy(apply_fn(p, xi[None]), yi[None])

    batch_loss = models.loss_fn(model)
    g = jax.jit(lambda p: stab.per_example_gradients(batch_loss, p, ds.x[:6], ds.y[:6]))(params)
    ref_grad = jax.jit(lambda p, xi, yi: jax.flatten_util.ravel_pytree(
        jax.grad(one)(p, xi, yi))[0])
    for i in range(6):
        ref = ref_grad(params, ds.x[i], ds.y[i])
        np.testing.assert_allclose(g[i], ref, rtol=1e-5, atol=1e-7)
    # the mean of per-example gradients is the gradient of the mean loss
    full = jax.jit(jax.grad(models.loss_fn(model, ds.x[:6], ds.y[:6])))(params)
    np.testing.assert_allclose(g.mean(0), jax.flatten_util.ravel_pytree(full)[0], rtol=1e-4,
                               atol=1e-6)


def test_coherence_extremes_and_pairwise_formula():
    m = 7
    ortho = 3.0 * np.eye(m, 10)
    assert stab.coherence(ortho) == pytest.approx((1 / m, 1.0))
    same = np.tile(np.arange(1.0, 11.0), (m, 1))
    assert stab.coherence(same) == pytest.approx((1.0, m))
    g = np.random.default_rng(0).normal(size=(m, 10))
    pair = np.mean([g[i] @ g[j] for i in range(m) for j in range(m)])
    alpha, mc = stab.coherence(g)
    assert alpha == pytest.approx(pair / np.mean((g**2).sum(1)), rel=1e-5)
    assert mc == pytest.approx(m * alpha)
    # independent high-dimensional gradients are nearly orthogonal: m-coherence about 1
    wide = np.random.default_rng(1).normal(size=(50, 100_000))
    assert stab.coherence(wide)[1] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="grads"):
        stab.coherence(np.ones(5))
    with pytest.raises(ValueError, match="zero"):
        stab.coherence(np.zeros((3, 4)))


def _ce_numpy(logits, y):
    o = logits - logits.max(-1, keepdims=True)
    return -(np.take_along_axis(o, y[:, None], -1)[:, 0] - np.log(np.exp(o).sum(-1)))


def test_measure_stability_by_hand():
    ds = _tiny()
    runs = _coupled(ds, ds.x_test[:2], ds.y_test[:2], steps=100)
    got = stab.measure_stability(runs, ds.y_test)
    base, hist = runs.base
    eps, dist = [], []
    for m, h in runs.replaced:
        eps.append(
            [
                np.abs(_ce_numpy(np.asarray(a, np.float64), ds.y_test)
                       - _ce_numpy(np.asarray(b, np.float64), ds.y_test)).max()
                for a, b in zip(hist.test_outputs, h.test_outputs, strict=True)
            ]
        )
        flat = [np.concatenate([mm.bias[...].ravel(), mm.kernel[...].ravel()]) for mm in (base, m)]
        dist.append(np.linalg.norm(flat[0] - flat[1]))
    np.testing.assert_allclose(got.eps, np.mean(eps, axis=0), rtol=1e-4, atol=1e-6)
    assert got.dist == pytest.approx(np.mean(dist), rel=1e-5) and got.dist > 0
    np.testing.assert_array_equal(got.steps, hist.steps)
    np.testing.assert_allclose(got.gap, hist.test_loss - hist.train_loss)
    assert (got.train, got.test) == (hist.train_accuracy[-1], hist.test_accuracy[-1])
    with pytest.raises(ValueError, match="runs"):
        stab.measure_stability(runs.base, ds.y_test)


def test_plug_in_constants_against_closed_form_gradients_and_a_dense_hessian():
    ds = _tiny(n=25, d=4, k=3)
    model = nnx.Linear(4, 3, rngs=nnx.Rngs(2))
    lip, beta = stab.plug_in_constants(model, ds.x, ds.y, key=jax.random.key(0))
    # softmax regression: grad of l_i is (p_i - e_{y_i}) (x) (x_i, 1)
    w, b = np.asarray(model.kernel[...], np.float64), np.asarray(model.bias[...], np.float64)
    logits = ds.x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = p - np.eye(3)[ds.y]
    norms = np.linalg.norm(r, axis=1) * np.sqrt((ds.x.astype(np.float64) ** 2).sum(1) + 1)
    assert lip == pytest.approx(norms.max(), rel=1e-4)
    # the top eigenvalue of the dense Hessian of the mean training loss
    _, params, _ = models.functional(model)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    loss = models.loss_fn(model, ds.x, ds.y)
    h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat), np.float64)
    assert beta == pytest.approx(np.linalg.eigvalsh(h).max(), rel=1e-2)
    with pytest.raises(ValueError, match="x, y"):
        stab.plug_in_constants(model, ds.x, ds.y[:3], key=jax.random.key(0))
