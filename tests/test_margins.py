import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy.optimize import minimize

from udl_jax import data, margins, train


def _separable(seed=0, n=30, d=3, gap=0.2):
    return margins.separable_gaussian(jax.random.key(seed), n=n, d=d, gap=gap, n_test=5)


def test_max_margin_matches_a_quadratic_program_solved_by_scipy():
    """Independent reference: the primal QP min |w|^2 s.t. y_i <x_i, w> >= 1 by SLSQP."""
    ds = _separable()
    x, s = ds.x.astype(np.float64), margins.signed_labels(ds.y)
    w = margins.max_margin_direction(x, ds.y)
    res = minimize(lambda v: v @ v, x0=np.ones(3), jac=lambda v: 2 * v, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda v: s * (x @ v) - 1,
                                 "jac": lambda v: s[:, None] * x}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success
    np.testing.assert_allclose(w, res.x, rtol=1e-5, atol=1e-6)
    assert (s * (x @ w)).min() == pytest.approx(1.0, abs=1e-12)


def test_max_margin_beats_every_direction_on_a_fine_grid():
    ds = _separable(seed=3, n=25, d=2)
    w = margins.max_margin_direction(ds.x, ds.y)
    phis = np.linspace(0, 2 * np.pi, 200_001)
    dirs = np.stack([np.cos(phis), np.sin(phis)], 1)
    grid = margins.normalized_margin(dirs, ds.x, ds.y)
    best = margins.normalized_margin(w, ds.x, ds.y)
    assert best == pytest.approx(1 / np.linalg.norm(w), rel=1e-9)
    assert grid.max() <= best + 1e-9
    assert grid.max() == pytest.approx(best, rel=1e-4)  # a kink: first order in the step
    assert margins.angle(dirs[grid.argmax()], w) < 1e-4


def test_max_margin_rejects_non_separable_and_one_class_data():
    x = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(ValueError, match="not linearly separable"):
        margins.max_margin_direction(x, np.array([1, 1, 0, 0]))  # XOR through the origin
    with pytest.raises(ValueError, match="both classes"):
        margins.max_margin_direction(x, np.ones(4, int))
    with pytest.raises(ValueError, match="y:"):
        margins.max_margin_direction(x, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="y:"):
        margins.max_margin_direction(x, np.array([0, 1, 1]))


def test_angle_is_accurate_for_small_and_large_angles_and_vectorized():
    u = np.array([1.0, 0.0, 0.0])
    for a in (1e-9, 1e-4, 0.3, 2.0, np.pi):
        w = 5 * np.array([np.cos(a), np.sin(a), 0.0])
        assert margins.angle(w, u) == pytest.approx(a, rel=1e-9, abs=1e-15)
    traj = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(margins.angle(traj, 3 * u), [np.pi / 4, np.pi / 2])
    with pytest.raises(ValueError, match="zero vector"):
        margins.angle(np.zeros(3), u)
    with pytest.raises(ValueError, match="reference"):
        margins.angle(traj, np.ones(2))


def test_normalized_margin_by_hand():
    x = np.array([[2.0, 0.0], [0.0, -1.0]])
    y = np.array([1, 0])
    # w = (1, 1)/|.|: margins 2/sqrt2 and 1/sqrt2
    assert margins.normalized_margin(np.array([3.0, 3.0]), x, y) == pytest.approx(
        1 / np.sqrt(2))
    assert margins.normalized_margin(np.array([-1.0, 0.0]), x, y) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="w:"):
        margins.normalized_margin(np.ones(3), x, y)


def test_log_log_slope_recovers_known_exponents():
    t = np.logspace(1, 6, 50)
    assert margins.log_log_slope(t, 3 / np.log(t)) == pytest.approx(-1.0, abs=1e-12)
    assert margins.log_log_slope(t, np.log(t) ** -0.5, start=1e3) == pytest.approx(-0.5)
    # a power law t^(-1/2) looks far steeper than any power of log t
    assert margins.log_log_slope(t, t**-0.5, start=1e3) < -4
    with pytest.raises(ValueError, match="steps > 1"):
        margins.log_log_slope([1.0, 10.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="1D arrays"):
        margins.log_log_slope([10.0, 100.0], [1.0])


def test_logistic_loss_closed_form_and_shapes():
    out = jnp.array([[2.0], [-1.0], [0.0]])
    y = jnp.array([1, 1, 0])
    expected = np.mean(np.log1p(np.exp(-np.array([2.0, -1.0, -0.0]))))
    assert float(margins.logistic_loss(out, y)) == pytest.approx(expected, rel=1e-6)
    assert float(margins.logistic_loss(out[:, 0], y)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="outputs"):
        margins.logistic_loss(jnp.zeros((3, 2)), y)


def test_gradient_descent_through_fit_matches_a_numpy_loop():
    """The chapter's GD: `train.fit` with a bias-free linear model, full batch, the logistic
    loss; checked against the closed-form gradient -mean_i s_i x_i sigmoid(-s_i <x_i, w>)."""
    ds = _separable(seed=1, n=20, d=3)
    x, s = ds.x.astype(np.float64), margins.signed_labels(ds.y)
    eta, steps = 0.7, 50
    w = np.zeros(3)
    for _ in range(steps):
        w -= eta * -(x * (s / (1 + np.exp(s * (x @ w))))[:, None]).mean(0)
    probe = ds.replace(x_test=np.eye(3, dtype=np.float32), y_test=np.zeros(3, np.int32))
    model = nnx.Linear(3, 1, use_bias=False, kernel_init=nnx.initializers.zeros_init(),
                       rngs=nnx.Rngs(0))
    trained, hist = train.fit(model, probe, key=jax.random.key(0), steps=steps,
                              learning_rate=eta, optimizer=optax.sgd, batch_size=None,
                              loss=margins.logistic_loss, log_every=10, record_outputs=True,
                              progress=False)
    np.testing.assert_allclose(trained.kernel[...][:, 0], w, rtol=1e-5)
    np.testing.assert_allclose(hist.test_outputs[-1, :, 0], w, rtol=1e-5)  # unit-vector probe


def test_separable_gaussian_has_its_gap_and_is_deterministic():
    ds = margins.separable_gaussian(jax.random.key(4), n=300, d=5, gap=0.5, n_test=100)
    assert ds.x.shape == (300, 5) and ds.x_test.shape == (100, 5)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    assert set(np.unique(ds.y)) == {0, 1}
    w = margins.max_margin_direction(ds.x, ds.y)
    assert margins.normalized_margin(w, ds.x, ds.y) >= 0.5 - 1e-5  # the band is empty
    again = margins.separable_gaussian(jax.random.key(4), n=300, d=5, gap=0.5, n_test=100)
    np.testing.assert_array_equal(ds.x, again.x)
    assert isinstance(ds, data.Dataset)
    for bad in ({"n": 1}, {"d": 1}, {"gap": -0.1}, {"n_test": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            margins.separable_gaussian(jax.random.key(0), **{"n": 10, "d": 2, **bad})
