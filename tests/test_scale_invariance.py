import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from udl_jax import data, losses, models, train
from udl_jax import scale_invariance as si

A = np.diag([1.0, 2.0, 3.0, 5.0]) + 0.1  # symmetric, for a Rayleigh quotient


def rayleigh(w):
    """A scale-invariant loss: the Rayleigh quotient w^T A w / w^T w (its gradient is
    2 (A w - L w) / |w|^2, orthogonal to w)."""
    w = w["w"]
    return (w @ jnp.asarray(A, w.dtype) @ w) / (w @ w)


def test_hidden_layers_mask_selects_the_layers_before_batch_norm():
    m = models.MLP((3, 4, 5, 2), normalization="batch", rngs=nnx.Rngs(0))
    _, params, _ = models.functional(m)
    mask = si.hidden_layers_mask(params)
    selected = {
        tuple(getattr(k, "key", None) for k in path[:3])
        for path, sel in jax.tree_util.tree_leaves_with_path(mask)
        if sel
    }
    assert selected == {("layers", 0, "w"), ("layers", 0, "b"), ("layers", 1, "w"),
                        ("layers", 1, "b")}
    assert sum(jax.tree.leaves(mask)) == 4  # not the last layer, not BN's scale and bias
    doubled = si.rescale(params, 2.0)
    np.testing.assert_array_equal(doubled["layers"][1]["w"][...], 2 * params["layers"][1]["w"][...])
    np.testing.assert_array_equal(doubled["layers"][2]["w"][...], params["layers"][2]["w"][...])
    np.testing.assert_array_equal(doubled["norms"][0]["scale"][...],
                                  params["norms"][0]["scale"][...])
    with pytest.raises(ValueError, match="params"):
        si.hidden_layers_mask({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="mask"):
        si.rescale(params, 2.0, mask="last")


def test_defects_are_zero_for_a_rayleigh_quotient_and_match_closed_forms_otherwise():
    w = {"w": jnp.array([1.0, -2.0, 0.5, 1.5])}
    d = si.invariance_defects(rayleigh, w, mask="all", scales=(0.01, 3.0, 100.0))
    assert d.loss_change < 1e-6 and d.gradient_cosine < 1e-6 and d.gradient_scaling < 1e-5
    # L(w) = 0.5 |w|^2 + a.w: L(cw) - L(w) = 0.5 (c^2 - 1)|w|^2 + (c - 1) a.w,
    # grad = w + a, c grad L(cw) - grad L(w) = (c^2 - 1) w + (c - 1) a.
    a = np.array([0.3, 0.0, -1.0, 2.0])
    wn = np.asarray(w["w"], np.float64)

    def quad(p):
        return 0.5 * p["w"] @ p["w"] + jnp.asarray(a, p["w"].dtype) @ p["w"]

    d = si.invariance_defects(quad, w, mask="all", scales=(0.5, 2.0))
    loss0 = 0.5 * wn @ wn + a @ wn
    change = max(abs(0.5 * (c * c - 1) * wn @ wn + (c - 1) * a @ wn) / abs(loss0) for c in (0.5, 2))
    g = wn + a
    scaling = max(np.linalg.norm((c * c - 1) * wn + (c - 1) * a) / np.linalg.norm(g)
                  for c in (0.5, 2))
    np.testing.assert_allclose(d.loss_change, change, rtol=1e-5)
    np.testing.assert_allclose(d.gradient_cosine, abs(g @ wn) / np.linalg.norm(g)
                               / np.linalg.norm(wn), rtol=1e-5)
    np.testing.assert_allclose(d.gradient_scaling, scaling, rtol=1e-5)
    with pytest.raises(ValueError, match="scales"):
        si.invariance_defects(quad, w, mask="all", scales=(0.0, 2.0))


def test_batch_norm_mlp_is_scale_invariant_and_plain_mlp_is_not():
    ds = data.mnist1d()
    x, y = jnp.asarray(ds.x[:64]), jnp.asarray(ds.y[:64])
    defects = {}
    for norm in ("batch", None):
        m = models.MLP((40, 16, 16, 10), normalization=norm, norm_epsilon=0.0, rngs=nnx.Rngs(0))
        apply_fn, params, _ = models.functional(m, train=True)
        defects[norm] = si.invariance_defects(
            lambda p, f=apply_fn: losses.cross_entropy(f(p, x), y), params, scales=(0.01, 100.0)
        )
    assert max(defects["batch"]) < 1e-4
    assert defects[None].loss_change > 0.1 and defects[None].gradient_cosine > 1e-3


def test_growth_factor_solves_its_quadratic_and_rejects_bad_input():
    assert si.growth_factor(0.1, 0.01) == pytest.approx(1 - 0.1 * 0.01, abs=1e-15)
    for eta, lam, gamma in [(0.05, 0.02, 0.9), (0.1, 5e-4, 0.9), (0.5, 0.01, 0.5)]:
        a = si.growth_factor(eta, lam, gamma)
        assert a * a - (1 + gamma - eta * lam) * a + gamma == pytest.approx(0, abs=1e-14)
        assert a > math.sqrt(gamma)  # the larger root
        assert a == pytest.approx(1 - eta * lam / (1 - gamma), rel=5 * eta * lam / (1 - gamma) ** 2)
    assert si.growth_factor(0.1, 0.0, 0.9) == 1.0
    with pytest.raises(ValueError, match="weight_decay"):
        si.growth_factor(0.1, 0.1, 0.9)  # eta lambda > (1 - sqrt(gamma))^2: complex roots
    for kwargs, name in [({"learning_rate": 0.0}, "learning_rate"),
                         ({"weight_decay": -1.0}, "weight_decay"),
                         ({"momentum": 1.0}, "momentum"),
                         ({"learning_rate": "0.1"}, "learning_rate")]:
        args = {"learning_rate": 0.1, "weight_decay": 0.01, "momentum": 0.0, **kwargs}
        with pytest.raises(ValueError, match=name):
            si.growth_factor(**args)
    sched = si.exponential_schedule(0.1, 0.01, 0.9)
    a = si.growth_factor(0.1, 0.01, 0.9)
    np.testing.assert_allclose([float(sched(t)) for t in (0, 1, 10)],
                               [0.1 / a, 0.1 / a**3, 0.1 / a**21], rtol=1e-5)


def _numpy_runs(w0, eta, lam, gamma, steps):
    """Heavy ball with weight decay, and heavy ball with eta alpha^(-2t-1), in float64 NumPy, on
    the Rayleigh quotient (gradient by hand)."""

    def grad(w):
        return 2 * (A @ w - (w @ A @ w) / (w @ w) * w) / (w @ w)

    def loss(w):
        return w @ A @ w / (w @ w)

    b = 1 + gamma - eta * lam
    alpha = 0.5 * (b + math.sqrt(b * b - 4 * gamma))
    w, v = w0.copy(), np.zeros_like(w0)
    u, vu = w0.copy(), (alpha - 1) / (alpha * eta) * w0
    dist, losses = [], []
    for t in range(steps + 1):
        dist.append(np.linalg.norm(alpha ** (-t) * w - u) / np.linalg.norm(u))
        losses.append(loss(w))
        v = gamma * v + grad(w) + lam * w
        w = w - eta * v
        vu = gamma * vu + grad(u)
        u = u - eta * alpha ** (-2 * t - 1) * vu
    return np.array(dist), np.array(losses)


@pytest.mark.parametrize("gamma", [0.0, 0.9])
def test_weight_decay_equals_exponential_lr_against_a_numpy_simulation(gamma):
    eta, lam, steps = (0.1, 0.05, 100) if gamma == 0 else (0.05, 0.02, 100)
    w0 = np.array([1.0, -2.0, 0.5, 1.5])
    ref_dist, ref_loss = _numpy_runs(w0, eta, lam, gamma, steps)
    assert ref_dist.max() < 1e-12
    with jax.enable_x64(True):
        run = si.weight_decay_vs_exponential_lr(
            rayleigh, {"w": jnp.asarray(w0)}, learning_rate=eta, weight_decay=lam,
            momentum=gamma, steps=steps, mask="all",
        )
        assert run.distance.dtype == jnp.float64
    assert np.asarray(run.distance).max() < 1e-12
    np.testing.assert_allclose(run.loss_weight_decay, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(run.loss_exponential, ref_loss, rtol=1e-10)
    a = run.growth
    np.testing.assert_allclose(run.learning_rate, eta * a ** (-2.0 * np.arange(steps) - 1))
    # the exponential run's norm grows as alpha^(-2t) times the weight-decay run's
    n_wd, n_exp = np.asarray(run.sq_norm_weight_decay), np.asarray(run.sq_norm_exponential)
    np.testing.assert_allclose(n_exp, n_wd * a ** (-2.0 * np.arange(steps + 1)), rtol=1e-10)
    assert n_exp[-1] > 2 * n_wd[-1]


def test_equivalence_fails_for_a_loss_that_is_not_scale_invariant():
    def quartic(p):
        w = p["w"]
        return jnp.sum((w * w - 1.0) ** 2)

    with jax.enable_x64(True):
        run = si.weight_decay_vs_exponential_lr(
            quartic, {"w": jnp.array([0.5, 1.5, -0.3])}, learning_rate=0.05,
            weight_decay=0.1, momentum=0.0, steps=50, mask="all",
        )
        unmatched = si.weight_decay_vs_exponential_lr(
            rayleigh, {"w": jnp.array([1.0, -2.0, 0.5, 1.5])}, learning_rate=0.05,
            weight_decay=0.02, momentum=0.9, steps=50, mask="all", match_velocity=False,
        )
    assert np.asarray(run.distance).max() > 1e-2
    assert np.asarray(unmatched.distance).max() > 1e-3  # the initial velocity matters
    with pytest.raises(ValueError, match="steps"):
        si.weight_decay_vs_exponential_lr(rayleigh, {"w": jnp.ones(4)}, learning_rate=0.1,
                                          weight_decay=0.01, steps=0, mask="all")


def test_optax_factories_match_their_update_rules():
    """One step of each factory, by hand: WD on the selected leaves, exp LR on them."""
    params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}
    grads = {"a": jnp.array([0.5, -0.5]), "b": jnp.array([1.0])}

    def mask(p):
        return {"a": True, "b": False}

    eta, lam, gamma = 0.1, 0.01, 0.5
    tx = si.sgd_weight_decay(eta, lam, gamma, mask=mask)
    u, s = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["a"], -eta * (grads["a"] + lam * params["a"]), rtol=1e-6)
    np.testing.assert_allclose(u["b"], -eta * grads["b"], rtol=1e-6)
    u, s = tx.update(grads, s, params)  # momentum: v = gamma v + g + lam w
    np.testing.assert_allclose(u["a"], -eta * (1 + gamma) * (grads["a"] + lam * params["a"]),
                               rtol=1e-6)
    tx = si.sgd_exponential_lr(eta, lam, gamma, mask=mask)
    a = si.growth_factor(eta, lam, gamma)
    s = tx.init(params)
    for t in range(3):
        u, s = tx.update(grads, s, params)
        v = sum(gamma**k for k in range(t + 1))
        np.testing.assert_allclose(u["a"], -eta * a ** (-2 * t - 1) * v * grads["a"], rtol=1e-5)
        np.testing.assert_allclose(u["b"], -eta * v * grads["b"], rtol=1e-6)


def _random_direction_loss(dim):
    """L(w) = <xi, w / |w|> with xi ~ N(0, I) drawn from the key: scale invariant, and its
    gradient (I - w w^T / |w|^2) xi / |w| has mean square norm (dim - 1) / |w|^2."""

    def loss(p, key):
        w = p["w"]
        return jax.random.normal(key, w.shape) @ w / jnp.sqrt(w @ w)

    return loss


@pytest.mark.parametrize("gamma", [0.0, 0.9])
def test_equilibrium_norm_and_angular_update_against_simulation(gamma):
    dim, eta, lam, steps = 50, 0.1, 0.01, 6000
    loss = _random_direction_loss(dim)
    w0 = {"w": 3.0 * jax.random.normal(jax.random.key(0), (dim,))}
    tx = si.sgd_weight_decay(eta, lam, gamma)
    run = jax.jit(
        lambda p: si.track_norms(loss, p, tx, steps=steps, key=jax.random.key(1),
                                 groups=lambda t: [t])
    )(w0)
    late = slice(steps // 2, None)
    sq, g2, d2 = (np.asarray(a)[late, 0] for a in (run.sq_norm[:-1], run.sq_grad, run.sq_step))
    assert (g2 * sq).mean() == pytest.approx(dim - 1, rel=0.03)  # G^2 = E|xi_perp|^2
    angle = math.sqrt(d2.mean() / sq.mean())
    assert angle == pytest.approx(si.equilibrium_angular_update(eta, lam, gamma), rel=0.05)
    if gamma == 0:
        pred = float(si.equilibrium_sq_norm(eta, lam, dim - 1.0))
        assert sq.mean() == pytest.approx(pred, rel=0.05)
        # the deterministic recursion x -> (1 - eta lam)^2 x + eta^2 G^2 / x has that fixed point
        x = 1.0
        for _ in range(20000):
            x = (1 - eta * lam) ** 2 * x + eta**2 * (dim - 1) / x
        assert x == pytest.approx(pred, rel=1e-9)
        assert float(si.effective_learning_rate(eta, pred)) == pytest.approx(
            math.sqrt(eta * lam * (2 - eta * lam) / (dim - 1)), rel=1e-9
        )


def test_factories_train_a_batch_norm_mlp_with_fit():
    ds = data.mnist1d()
    ds = ds.replace(x=ds.x[:512], y=ds.y[:512])
    m = models.MLP((40, 32, 32, 10), normalization="batch", rngs=nnx.Rngs(0))
    kw = dict(key=jax.random.key(0), steps=200, learning_rate=0.05, batch_size=64, log_every=100)
    hyper = {"weight_decay": 5e-3, "momentum": 0.9}
    trained_wd, h_wd = train.fit(m, ds, optimizer=si.sgd_weight_decay,
                                 optimizer_kwargs={**hyper, "mask": "hidden"}, **kw)
    trained_exp, h_exp = train.fit(m, ds, optimizer=si.sgd_exponential_lr,
                                   optimizer_kwargs=hyper, **kw)
    assert h_wd.train_loss[-1] < 0.8 * h_wd.train_loss[0]
    assert h_exp.train_loss[-1] < 0.8 * h_exp.train_loss[0]
    a = si.growth_factor(0.05, 5e-3, 0.9)
    ratio = (float(jnp.sum(trained_exp.layers[0].w[...] ** 2))
             / float(jnp.sum(trained_wd.layers[0].w[...] ** 2)))
    assert ratio == pytest.approx(a ** (-400), rel=0.3)  # |w~|^2 = alpha^(-2t) |w|^2, roughly
    with pytest.raises(ValueError, match="mask"):
        si.sgd_weight_decay(0.1, 0.01, mask="last")


def test_no_real_growth_factor_for_too_much_weight_decay_with_momentum():
    with pytest.raises(ValueError, match="weight_decay"):
        si.exponential_schedule(0.5, 0.1, 0.9)
    assert si.equilibrium_angular_update(0.1, 0.01) == pytest.approx(math.sqrt(2e-3))
    with pytest.raises(ValueError, match="momentum"):
        si.equilibrium_angular_update(0.1, 0.01, -0.1)


def test_factories_accept_traced_hyperparameters():
    params = {"w": jnp.array([1.0, 2.0])}

    @jax.jit
    def one_step(lam):
        tx = si.sgd_exponential_lr(0.1, lam, 0.9, mask="all")
        u, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
        return u["w"]

    a = si.growth_factor(0.1, 0.01, 0.9)
    np.testing.assert_allclose(one_step(0.01), -0.1 / a * np.ones(2), rtol=1e-5)
    assert isinstance(si.sgd_weight_decay(0.1, 0.01), optax.GradientTransformation)
