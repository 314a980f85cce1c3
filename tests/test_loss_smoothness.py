import jax.numpy as jnp
import numpy as np
import pytest

from udl_jax import loss_smoothness as ls

H = jnp.diag(jnp.array([1.0, 4.0, 10.0]))


def quadratic(p):
    return 0.5 * p["w"] @ H @ p["w"]


def test_probe_on_a_quadratic_matches_the_closed_form():
    w = jnp.array([1.0, -1.0, 0.5])
    etas = np.array([0.01, 0.05, 0.1])
    probe = ls.probe_along_gradient(quadratic, {"w": w}, etas)
    g = np.asarray(H @ w)
    hg = np.asarray(H @ g)
    for i, eta in enumerate(etas):
        moved = np.asarray(w) - eta * g
        np.testing.assert_allclose(probe.loss[i], 0.5 * moved @ np.asarray(H) @ moved,
                                   rtol=1e-5)
        np.testing.assert_allclose(probe.grad_change[i], eta * np.linalg.norm(hg), rtol=1e-5)
    # along g the gradient changes by eta H g: beta is the Rayleigh-type ratio |Hg| / |g|
    np.testing.assert_allclose(probe.beta, np.linalg.norm(hg) / np.linalg.norm(g), rtol=1e-5)
    assert probe.beta <= 10.0 + 1e-5  # at most the largest curvature
    np.testing.assert_allclose(probe.grad_norm, np.linalg.norm(g), rtol=1e-6)
    values = np.append(probe.loss, probe.loss_at_w)
    assert probe.loss_range == pytest.approx(values.max() - values.min())


def test_probe_rejects_bad_step_sizes_and_zero_gradients():
    w = {"w": jnp.ones(3)}
    for bad in ([], [0.1, -0.1], [[0.1]]):
        with pytest.raises(ValueError, match="step_sizes"):
            ls.probe_along_gradient(quadratic, w, bad)
    with pytest.raises(ValueError, match="gradient"):
        ls.probe_along_gradient(quadratic, {"w": jnp.zeros(3)}, [0.1])
