import numpy as np
import pytest
from numpy.polynomial import legendre
from sklearn.linear_model import Ridge

from udl_jax import polynomial


def test_legendre_features_match_numpy_and_orthogonality():
    x = np.linspace(-1, 1, 7)
    phi = polynomial.legendre_features(x, 4)
    assert phi.shape == (7, 5) and phi.dtype == np.float64
    for k in range(5):
        np.testing.assert_allclose(phi[:, k], legendre.Legendre.basis(k)(x), atol=1e-12)
    # orthogonality on [-1, 1]: int P_j P_k = 2 / (2k + 1) delta_jk (Gauss-Legendre quadrature)
    nodes, weights = legendre.leggauss(20)
    g = polynomial.legendre_features(nodes, 6)
    np.testing.assert_allclose(g.T @ (weights[:, None] * g), np.diag(2 / (2 * np.arange(7) + 1)),
                               atol=1e-12)


def test_order_penalty():
    np.testing.assert_allclose(polynomial.order_penalty(3, 2.0, 2), [2, 8, 18, 32])
    np.testing.assert_allclose(polynomial.order_penalty(2, 0.5, 0), [0.5, 0.5, 0.5])


def test_penalized_lstsq_matches_sklearn_ridge_and_normal_equations():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 30)
    y = np.sin(3 * x) + 0.1 * rng.normal(size=30)
    phi = polynomial.legendre_features(x, 12)
    pen = polynomial.order_penalty(12, 1e-2, 2)
    a = polynomial.penalized_lstsq(phi, y, pen)
    # substitute b = sqrt(pen) a: a ridge problem with alpha = 1 on rescaled features
    ridge = Ridge(alpha=1.0, fit_intercept=False, solver="svd").fit(phi / np.sqrt(pen), y)
    np.testing.assert_allclose(a, ridge.coef_ / np.sqrt(pen), rtol=1e-8, atol=1e-10)
    normal = np.linalg.solve(phi.T @ phi + np.diag(pen), phi.T @ y)
    np.testing.assert_allclose(a, normal, rtol=1e-7, atol=1e-9)


def test_fit_legendre_interpolates_and_recovers_polynomials():
    x = np.linspace(-1, 1, 9)
    y = np.cos(5 * x)
    exact = polynomial.fit_legendre(x, y, degree=8)  # unique interpolant
    np.testing.assert_allclose(polynomial.predict_legendre(exact, x), y, atol=1e-10)
    # more coefficients than points, tiny penalty: still interpolates
    soft = polynomial.fit_legendre(x, y, degree=40, scale=1e-12, power=2)
    np.testing.assert_allclose(polynomial.predict_legendre(soft, x), y, atol=1e-5)
    # a low-order polynomial is recovered from enough points
    coef = np.array([0.5, -1.0, 0.25, 2.0])
    xs = np.linspace(-1, 1, 25)
    fitted = polynomial.fit_legendre(xs, legendre.legval(xs, coef), degree=3)
    np.testing.assert_allclose(fitted, coef, atol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="x: expected values in"):
        polynomial.legendre_features(np.array([0.0, 2.0]), 3)
    with pytest.raises(ValueError, match="degree"):
        polynomial.legendre_features(np.zeros(3), -1)
    with pytest.raises(ValueError, match="scale"):
        polynomial.order_penalty(3, -1.0, 2)
    with pytest.raises(ValueError, match="penalty: expected nonnegative"):
        polynomial.penalized_lstsq(np.eye(2), np.ones(2), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="y: expected shape"):
        polynomial.penalized_lstsq(np.eye(2), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="coef"):
        polynomial.predict_legendre(np.ones((2, 2)), np.zeros(3))
