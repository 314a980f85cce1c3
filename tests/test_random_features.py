import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.linalg

from udl_jax import random_features


def _problem(n, num_features, seed=0, k=None):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n, num_features))
    y = rng.normal(size=(n,) if k is None else (n, k))
    return phi, y


# ------------------------------------------------------------------------------- features


def test_featurize_is_reproducible_and_applies_the_same_weights_to_test_inputs():
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    phi, params = random_features.random_relu_features(jax.random.key(1), x, 64, bias_scale=0.5)
    assert phi.shape == (30, 64) and params["w"].shape == (5, 64) and params["b"].shape == (64,)
    again = random_features.featurize(
        random_features.make_random_features(jax.random.key(1), 5, 64, bias_scale=0.5), x
    )
    np.testing.assert_array_equal(np.asarray(phi), np.asarray(again))
    np.testing.assert_array_equal(
        np.asarray(random_features.featurize(params, x[:7])), np.asarray(phi[:7])
    )
    other, _ = random_features.random_relu_features(jax.random.key(2), x, 64, bias_scale=0.5)
    assert not np.allclose(np.asarray(phi), np.asarray(other))
    assert np.all(np.asarray(phi) >= 0)


def test_featurize_gram_approaches_the_arc_cosine_kernel():
    """phi(x).phi(x') -> E relu(w.x) relu(w.x') = |x||x'| (sin t + (pi - t) cos t) / (2 pi d)."""
    x = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    phi, _ = random_features.random_relu_features(jax.random.key(0), x, 200_000)
    gram = np.asarray(phi, np.float64) @ np.asarray(phi, np.float64).T
    t = math.acos(0.6)  # angle between the unit inputs
    var_w = 1 / 2  # weight variance weight_scale^2 / d
    k01 = var_w * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)
    np.testing.assert_allclose(gram, [[var_w / 2, k01], [k01, var_w / 2]], rtol=0.02)


# ------------------------------------------------------------------------------- solvers


@pytest.mark.parametrize("num_features", [10, 35])
def test_min_norm_primal_matches_lstsq_when_underparametrized(num_features):
    phi, y = _problem(40, num_features)
    w = random_features.min_norm_solution(phi, y)
    np.testing.assert_allclose(w, np.linalg.lstsq(phi, y, rcond=None)[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w, np.linalg.pinv(phi) @ y, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("num_features", [60, 400])
def test_min_norm_dual_interpolates_and_matches_pinv_when_overparametrized(num_features):
    phi, y = _problem(40, num_features, seed=1)
    w = random_features.min_norm_solution(phi, y)  # auto: dual
    np.testing.assert_allclose(phi @ w, y, atol=1e-9)  # interpolates
    np.testing.assert_allclose(w, np.linalg.pinv(phi) @ y, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        w, random_features.min_norm_solution(phi, y, form="primal"), atol=1e-10
    )
    # w lies in the row space of phi: it is the minimum-norm interpolant
    null = np.linalg.svd(phi)[2][40:]
    assert np.abs(null @ w).max() < 1e-10


def test_min_norm_handles_several_targets_and_rank_deficiency():
    phi, y = _problem(30, 50, seed=2, k=3)
    w = random_features.min_norm_solution(phi, y)
    assert w.shape == (50, 3)
    np.testing.assert_allclose(w, np.linalg.pinv(phi) @ y, atol=1e-10)
    # duplicated samples make the Gram matrix singular: the dual refuses, the primal copes
    phi2 = np.vstack([phi, phi[:1]])
    y2 = np.vstack([y, y[:1]])
    with pytest.raises(np.linalg.LinAlgError, match="form='primal'"):
        random_features.min_norm_solution(phi2, y2, form="dual")
    np.testing.assert_allclose(
        random_features.min_norm_solution(phi2, y2, form="primal"), w, atol=1e-9
    )


def test_min_norm_dual_detects_singularity_without_relying_on_cholesky_failing():
    # Cholesky succeeds on diag(1, 9e-18) (exact, positive pivots), whose condition number
    # 1.1e17 is beyond float64: the explicit condition test must refuse it on every machine.
    phi = np.diag([1.0, 3e-9])
    y = np.array([1.0, 1.0])
    scipy.linalg.cho_factor(phi @ phi.T)  # does not raise: the old code would have solved
    with pytest.raises(np.linalg.LinAlgError, match="numerically singular"):
        random_features.min_norm_solution(phi, y, form="dual")
    # a well-conditioned neighbour is accepted and agrees with the pseudo-inverse
    phi_ok = np.diag([1.0, 1e-3])
    np.testing.assert_allclose(
        random_features.min_norm_solution(phi_ok, y, form="dual"),
        np.linalg.pinv(phi_ok) @ y,
        rtol=1e-10,
    )


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


# OpenBLAS kernels by the instruction set they need. On SkylakeX (AVX-512) the Cholesky
# factorization of the duplicated-row Gram matrix above *succeeds* (pivot ~1e-17), on Haswell
# it fails: the old code raised on one machine and silently solved on the other.
_KERNELS = {"SkylakeX": "avx512f", "Haswell": "avx2", "Sandybridge": "avx"}
_SCRIPT = """
import numpy as np
from udl_jax import random_features
phi = np.random.default_rng(2).normal(size=(30, 50))
phi2 = np.vstack([phi, phi[:1]])
try:
    random_features.min_norm_solution(phi2, np.ones(31), form="dual")
    print("solved")
except np.linalg.LinAlgError:
    print("refused")
"""


@pytest.mark.parametrize("kernel", sorted(_KERNELS))
def test_min_norm_dual_refuses_singular_gram_on_every_blas_kernel(kernel):
    if _KERNELS[kernel] not in _cpu_flags():
        pytest.skip(f"this CPU lacks {_KERNELS[kernel]} for OpenBLAS's {kernel} kernel")
    env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "refused", (kernel, out.stdout)


@pytest.mark.parametrize("log_cond", [2, 8, 14])
def test_spd_condition_estimate_matches_dense_condition_number(log_cond):
    # LAPACK's pocon estimate of 1/cond_1 against NumPy's exact 1-norm condition number
    rng = np.random.default_rng(log_cond)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = (q * np.logspace(0, -log_cond, 30)) @ q.T
    a = (a + a.T) / 2
    c, _ = scipy.linalg.cho_factor(a)
    rcond, info = scipy.linalg.lapack.dpocon(c, np.linalg.norm(a, 1))
    assert info == 0
    exact = 1 / np.linalg.cond(a, 1)
    assert exact / 10 <= rcond <= exact * 10, (rcond, exact)


@pytest.mark.parametrize("num_features", [15, 80])
def test_ridge_primal_equals_dual_and_tends_to_min_norm(num_features):
    phi, y = _problem(40, num_features, seed=3)
    for lam in (1e-2, 1.0, 100.0):
        primal = random_features.ridge_solution(phi, y, lam, form="primal")
        dual = random_features.ridge_solution(phi, y, lam, form="dual")
        np.testing.assert_allclose(primal, dual, rtol=1e-9, atol=1e-12)
        direct = np.linalg.solve(phi.T @ phi + lam * np.eye(num_features), phi.T @ y)
        np.testing.assert_allclose(random_features.ridge_solution(phi, y, lam), direct, rtol=1e-9)
    w0 = random_features.min_norm_solution(phi, y)
    gaps = [
        np.linalg.norm(random_features.ridge_solution(phi, y, lam) - w0)
        for lam in (1e-2, 1e-4, 1e-6)
    ]
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 1e-5 * np.linalg.norm(w0)


# ----------------------------------------------------------------------------- exact risk


def test_isotropic_risk_matches_monte_carlo():
    """E||beta_hat - beta||^2 over 400 draws of (X, eps), for n = 40, within 4 standard errors."""
    n, noise_var, trials = 40, 0.5, 400
    rng = np.random.default_rng(0)
    for p in (10, 20, 60, 100):
        beta = rng.normal(size=p)
        beta *= 1.5 / np.linalg.norm(beta)  # ||beta||^2 = 2.25
        losses = np.empty(trials)
        for t in range(trials):
            x = rng.normal(size=(n, p))
            y = x @ beta + math.sqrt(noise_var) * rng.normal(size=n)
            losses[t] = np.sum((random_features.min_norm_solution(x, y) - beta) ** 2)
        exact = random_features.min_norm_risk_isotropic(n, p, noise_var, 2.25)
        se = losses.std(ddof=1) / math.sqrt(trials)
        assert abs(losses.mean() - exact) < 4 * se, (p, losses.mean(), exact, se)


def test_isotropic_risk_formula_values_and_shape():
    # hand values: n = 40, sigma^2 = 1, ||beta||^2 = 1
    assert random_features.min_norm_risk_isotropic(40, 10, 1.0, 1.0) == pytest.approx(10 / 29)
    assert random_features.min_norm_risk_isotropic(40, 60, 1.0, 1.0) == pytest.approx(
        1 / 3 + 40 / 19
    )
    assert random_features.min_norm_risk_isotropic(
        40, 10, 1.0, 1.0, test_noise=True
    ) == pytest.approx(1 + 10 / 29)
    ps = np.arange(1, 121)
    risk = random_features.min_norm_risk_isotropic(40, ps, 1.0, 1.0)
    assert risk.shape == ps.shape
    assert np.all(np.isinf(risk[(ps >= 39) & (ps <= 41)]))
    assert np.all(np.isfinite(risk[(ps <= 38) | (ps >= 42)]))
    # the peak: near p = n the risk is far above both ends, and it grows with the noise
    assert risk[37] > 10 * risk[9] and risk[42] > 5 * risk[-1]
    r_low, r_high = (
        random_features.min_norm_risk_isotropic(40, [38, 42], v, 1.0) for v in (0.1, 1.0)
    )
    assert np.all(r_high > r_low)
    # no noise: no peak at all
    clean = random_features.min_norm_risk_isotropic(40, ps, 0.0, 1.0)
    assert np.all(np.isfinite(clean)) and np.all(clean[ps <= 40] == 0)


def test_isotropic_risk_tends_to_the_asymptotic_formula():
    """Hastie et al. (2022, Thm. 1): sigma^2 g / (1 - g), r^2 (1 - 1/g) + sigma^2 / (g - 1)."""
    n, s2, r2 = 1_000_000, 0.7, 2.0
    for g in (0.3, 0.8, 1.5, 4.0):
        limit = s2 * g / (1 - g) if g < 1 else r2 * (1 - 1 / g) + s2 / (g - 1)
        value = random_features.min_norm_risk_isotropic(n, int(g * n), s2, r2)
        assert value == pytest.approx(limit, rel=1e-4)


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument():
    phi, y = _problem(10, 5)
    with pytest.raises(ValueError, match="form"):
        random_features.min_norm_solution(phi, y, form="svd")
    with pytest.raises(ValueError, match="phi"):
        random_features.min_norm_solution(phi[0], y)
    with pytest.raises(ValueError, match="y: expected shape"):
        random_features.min_norm_solution(phi, y[:-1])
    with pytest.raises(ValueError, match="lam"):
        random_features.ridge_solution(phi, y, 0.0)
    with pytest.raises(ValueError, match="num_features"):
        random_features.make_random_features(jax.random.key(0), 3, 0)
    with pytest.raises(ValueError, match="d: expected"):
        random_features.make_random_features(jax.random.key(0), 0, 4)
    with pytest.raises(ValueError, match="x: expected shape"):
        random_features.featurize(
            random_features.make_random_features(jax.random.key(0), 3, 4), np.ones((2, 4))
        )
    with pytest.raises(ValueError, match="n: expected"):
        random_features.min_norm_risk_isotropic(0, 5, 1.0, 1.0)
    with pytest.raises(ValueError, match="p: expected"):
        random_features.min_norm_risk_isotropic(10, 2.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="noise_var"):
        random_features.min_norm_risk_isotropic(10, 5, -1.0, 1.0)
    with pytest.raises(ValueError, match="signal_norm2"):
        random_features.min_norm_risk_isotropic(10, 5, 1.0, -1.0)


def test_feature_count_sweep_matches_pseudo_inverse_and_scikit_learn_ridge():
    """Model N of draw s uses the first N columns of one draw of max(N) features; min-norm
    fits equal NumPy's pseudo-inverse, ridge fits scikit-learn's Ridge (no intercept)."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(20, 4)), rng.normal(size=(15, 4))
    y, y_test = rng.integers(0, 3, 20), rng.integers(0, 3, 15)
    key, ns, ridges = jax.random.key(5), (3, 20, 45), (0.0, 0.1)
    sweep = random_features.feature_count_sweep(
        key, x, y, x_test, y_test, ns, ridges=ridges, n_draws=2
    )
    assert sweep.test_mse.shape == (2, 2, 3)
    onehot, onehot_test = np.eye(3)[y], np.eye(3)[y_test]
    for s in range(2):
        w = np.asarray(random_features.make_random_features(jax.random.fold_in(key, s), 4, 45)["w"])
        for j, n in enumerate(ns):
            phi = np.maximum(x.astype(np.float32) @ w[:, :n], 0) / np.sqrt(n)
            phi_test = np.maximum(x_test.astype(np.float32) @ w[:, :n], 0) / np.sqrt(n)
            fits = [np.linalg.pinv(phi) @ onehot,
                    Ridge(alpha=0.1, fit_intercept=False).fit(phi, onehot).coef_.T]
            for i, coef in enumerate(fits):
                pred = phi_test @ coef
                np.testing.assert_allclose(
                    sweep.train_mse[s, i, j], np.mean(np.sum((phi @ coef - onehot) ** 2, 1)),
                    rtol=1e-3, atol=1e-6)
                np.testing.assert_allclose(
                    sweep.test_mse[s, i, j], np.mean(np.sum((pred - onehot_test) ** 2, 1)),
                    rtol=1e-3)
                assert sweep.test_error[s, i, j] == pytest.approx(
                    np.mean(pred.argmax(1) != y_test))
    assert np.all(sweep.train_mse[:, 0, 1:] < 1e-8)  # N >= n: the min-norm fit interpolates
    with pytest.raises(ValueError, match="ridges"):
        random_features.feature_count_sweep(key, x, y, x_test, y_test, ns, ridges=(-1.0,))
    with pytest.raises(ValueError, match="pred, target"):
        random_features.squared_error(np.ones((3, 2)), np.ones((3, 3)))
