"""Random-features regression: the simplest model with a double-descent curve.

Fix a random first layer, train only the last one by least squares: this is a kernel machine
with a random, finite approximation of the kernel (Rahimi & Recht 2007). Sweeping the number of
features N past the number of samples n, the *minimum-norm* least-squares fit reproduces the
double-descent curve of deep networks (Belkin et al. 2019): the test risk peaks where the
model can first interpolate, N = n, and falls again beyond it (Mei & Montanari 2022). For
Gaussian covariates the expected risk of the min-norm fit is known exactly at finite n and p
(`min_norm_risk_isotropic`; Belkin, Hsu & Xu 2020; Hastie et al. 2022).

Conventions. Features are computed in JAX from an explicit PRNG key (`make_random_features`,
`featurize`); the solvers work in float64 NumPy/SciPy, because near N = n the feature matrix is
ill-conditioned and float32 would lose every digit. Feature matrices are (n, N): samples by
features. Regression targets are (n,) or (n, k); weights come back as (N,) or (N, k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

__all__ = [
    "make_random_features",
    "featurize",
    "random_relu_features",
    "min_norm_solution",
    "ridge_solution",
    "FORMS",
    "squared_error",
    "FeatureSweep",
    "feature_count_sweep",
    "min_norm_risk_isotropic",
]


FORMS = ("auto", "primal", "dual")
"""The ``form`` a solver works in: over the N weights (``"primal"``), over the n samples (the
kernel form, ``"dual"``), or primal for N <= n and dual for N > n (``"auto"``)."""


# ------------------------------------------------------------------------------- features


def make_random_features(
    key: jax.Array,
    d: int,
    num_features: int,
    *,
    weight_scale: float = 1.0,
    bias_scale: float = 0.0,
) -> dict[str, jax.Array]:
    """Draw the fixed first layer of a random ReLU feature map.

    ``w_ij ~ N(0, weight_scale^2 / d)`` and ``b_j ~ N(0, bias_scale^2)``, so that ``x w_j``
    has variance ``weight_scale^2 ||x||^2 / d``: order one for inputs with entries of order one.

    Args:
      key: PRNG key; the same key gives the same features.
      d: input dimension.
      num_features: N, the number of random features.
      weight_scale: standard deviation of the weights times ``sqrt(d)``.
      bias_scale: standard deviation of the biases (0: no bias, all features homogeneous).

    Returns:
      ``{"w": (d, N), "b": (N,)}`` float32 arrays, for `featurize`.
    """
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d: expected a positive int (input dimension), got {d!r}")
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features: expected a positive int, got {num_features!r}")
    if not weight_scale > 0:
        raise ValueError(f"weight_scale: expected a positive float, got {weight_scale!r}")
    if not bias_scale >= 0:
        raise ValueError(f"bias_scale: expected a float >= 0, got {bias_scale!r}")
    kw, kb = jax.random.split(key)
    w = jax.random.normal(kw, (d, num_features)) * (weight_scale / math.sqrt(d))
    b = jax.random.normal(kb, (num_features,)) * bias_scale
    return {"w": w, "b": b}


def featurize(params: dict[str, jax.Array], x) -> jax.Array:
    """Random ReLU features ``phi(x) = relu(x w + b) / sqrt(N)``.

    With the ``1 / sqrt(N)`` factor, ``phi(x) . phi(x')`` converges as N grows to the
    arc-cosine kernel of degree 1 (Cho & Saul 2009), so feature models of every width
    approximate one kernel machine (Rahimi & Recht 2007). Apply the *same* `params` to training
    and test inputs.

    Args:
      params: from `make_random_features`.
      x: (n, d) inputs.

    Returns:
      (n, N) feature matrix.
    """
    w, b = params["w"], params["b"]
    x = jnp.asarray(x, w.dtype)
    if x.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"x: expected shape (n, {w.shape[0]}), got {x.shape}")
    return jax.nn.relu(x @ w + b) / math.sqrt(w.shape[1])


def random_relu_features(
    key: jax.Array,
    x,
    num_features: int,
    *,
    weight_scale: float = 1.0,
    bias_scale: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Features of `x` and the params that produced them (to featurize test inputs alike).

    ``random_relu_features(key, x, N)`` is ``featurize(make_random_features(key, d, N), x)``.

    Returns:
      ``(phi, params)``: phi (n, N); params for ``featurize(params, x_test)``.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2D array (n, d), got shape {x.shape}")
    params = make_random_features(
        key, int(x.shape[1]), num_features, weight_scale=weight_scale, bias_scale=bias_scale
    )
    return featurize(params, x), params


# ------------------------------------------------------------------------------- solvers


def _check(phi, y, form):
    phi = np.asarray(phi, np.float64)
    y = np.asarray(y, np.float64)
    if phi.ndim != 2:
        raise ValueError(f"phi: expected a 2D (n, N) feature matrix, got shape {phi.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != phi.shape[0]:
        raise ValueError(
            f"y: expected shape ({phi.shape[0]},) or ({phi.shape[0]}, k), got {y.shape}"
        )
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    if form == "auto":
        form = "primal" if phi.shape[1] <= phi.shape[0] else "dual"
    return phi, y, form



def _spd_solve(a: np.ndarray, b: np.ndarray, why: str) -> np.ndarray:
    """Solve ``a x = b`` for symmetric positive definite ``a`` by Cholesky, refusing
    numerically singular ``a``.

    Whether a Cholesky factorization of a singular matrix fails depends on rounding (a
    duplicated row can leave a tiny positive pivot), so the reciprocal condition number is
    estimated from the factor (LAPACK ``pocon``, O(n^2)) and compared with ``n * eps``.
    """
    n = a.shape[0]
    try:
        c, lower = scipy.linalg.cho_factor(a, lower=False, check_finite=True)
    except np.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(
            f"min_norm_solution: the Gram matrix phi phi^T ({n} x {n}) is not positive "
            f"definite ({why}); use form='primal'"
        ) from e
    anorm = np.linalg.norm(a, 1)
    rcond, info = scipy.linalg.lapack.dpocon(c, anorm)
    if info != 0 or not rcond > n * np.finfo(np.float64).eps:
        raise np.linalg.LinAlgError(
            f"min_norm_solution: the Gram matrix phi phi^T ({n} x {n}) is numerically "
            f"singular (reciprocal condition number {rcond:.1e} <= n * eps; {why}); "
            f"use form='primal'"
        )
    return scipy.linalg.cho_solve((c, lower), b, check_finite=False)

def min_norm_solution(phi, y, *, form: str = "auto") -> np.ndarray:
    """The minimum-norm least-squares weights ``w = phi^+ y`` (``^+``: pseudo-inverse).

    Gradient descent from zero on the square loss converges to exactly this solution, which is
    why it is the model of "training to convergence" in double-descent experiments
    (Belkin et al. 2019; Hastie et al. 2022).

    - ``"primal"``: least squares, ``w = argmin ||phi w - y||`` with the smallest ``||w||`` if
      not unique, by `scipy.linalg.lstsq` (SVD-based, ``gelsd``): valid for any shape and rank;
      equals ``(phi^T phi)^{-1} phi^T y`` when phi has full column rank (N <= n). Singular
      values below ``eps * max(n, N)`` times the largest count as zero (NumPy's convention).
    - ``"dual"``: the kernel form ``w = phi^T (phi phi^T)^{-1} y``, by a Cholesky solve of the
      n x n Gram matrix: cheaper when N > n, and exactly interpolating. Requires rank n (so
      N >= n); no jitter is added (that would be ridge). Singularity is tested explicitly:
      LAPACK's condition estimate of the Cholesky factor (``pocon``) must exceed
      ``n * eps``, else `numpy.linalg.LinAlgError` is raised. (Cholesky itself may succeed on
      a numerically singular matrix, e.g. one with a duplicated row, depending on rounding.)
      The Gram matrix's condition number is the square of phi's, so close to N = n prefer
      ``"primal"``.
    - ``"auto"``: primal for N <= n, dual for N > n.

    Args:
      phi: (n, N) feature matrix.
      y: (n,) or (n, k) targets.
      form: ``"auto"``, ``"primal"`` or ``"dual"``.

    Returns:
      Float64 weights (N,) or (N, k).
    """
    phi, y, form = _check(phi, y, form)
    if form == "primal":
        cond = np.finfo(np.float64).eps * max(phi.shape)  # numpy.linalg.lstsq's default rcond
        return scipy.linalg.lstsq(phi, y, cond=cond)[0]
    gram = phi @ phi.T
    alpha = _spd_solve(gram, y, f"phi has {phi.shape[1]} features for {phi.shape[0]} samples")
    return phi.T @ alpha


def ridge_solution(phi, y, lam: float, *, form: str = "auto") -> np.ndarray:
    """Ridge-regression weights ``argmin_w ||phi w - y||^2 + lam ||w||^2``.

    - ``"primal"``: ``w = (phi^T phi + lam I_N)^{-1} phi^T y``, an N x N Cholesky solve.
    - ``"dual"``: ``w = phi^T (phi phi^T + lam I_n)^{-1} y``, an n x n Cholesky solve (kernel
      ridge regression with the Gram matrix; cheaper when N > n). The two are equal by the
      push-through identity ``(A^T A + lam I)^{-1} A^T = A^T (A A^T + lam I)^{-1}``.
    - ``"auto"``: primal for N <= n, dual for N > n.

    The penalty is not divided by n (scikit-learn's ``Ridge(alpha=lam, fit_intercept=False)``
    convention). As ``lam -> 0`` the solution tends to `min_norm_solution`.

    Args:
      phi: (n, N) feature matrix.
      y: (n,) or (n, k) targets.
      lam: ridge penalty, > 0 (use `min_norm_solution` for 0).
      form: ``"auto"``, ``"primal"`` or ``"dual"``.

    Returns:
      Float64 weights (N,) or (N, k).
    """
    phi, y, form = _check(phi, y, form)
    if not (isinstance(lam, (int, float)) and lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam: expected a positive finite float, got {lam!r}")
    if form == "primal":
        a = phi.T @ phi
        a[np.diag_indices_from(a)] += lam
        return scipy.linalg.solve(a, phi.T @ y, assume_a="pos")
    k = phi @ phi.T
    k[np.diag_indices_from(k)] += lam
    return phi.T @ scipy.linalg.solve(k, y, assume_a="pos")


# ---------------------------------------------------------------------------- exact risk


def squared_error(pred, target) -> float:
    """Mean over samples of the squared norm of the residual, ``mean_i ||pred_i - target_i||^2``.

    Args:
      pred, target: (n, k) arrays (e.g. predictions and one-hot targets).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"pred, target: expected two (n, k) arrays of one shape, got {pred.shape} and "
            f"{target.shape}"
        )
    return float(np.mean(np.sum((pred - target) ** 2, axis=1)))


class FeatureSweep(NamedTuple):
    """Result of `feature_count_sweep`: arrays of shape (n_draws, len(ridges), len(n_features)).

    Attributes:
      train_mse, test_mse: `squared_error` of the fit against one-hot targets.
      test_error: the test classification error of the arg-max prediction.
    """

    train_mse: np.ndarray
    test_mse: np.ndarray
    test_error: np.ndarray


def feature_count_sweep(
    key: jax.Array,
    x,
    y,
    x_test,
    y_test,
    n_features: Sequence[int],
    *,
    ridges: Sequence[float] = (0.0,),
    n_draws: int = 1,
    num_classes: int | None = None,
) -> FeatureSweep:
    """Random-features classifiers fitted to one-hot targets, over the number of features N.

    For each draw ``s`` one first layer of ``max(n_features)`` features is made from
    ``jax.random.fold_in(key, s)`` (`make_random_features`), and the model with N features uses
    its first N, rescaled by ``1/sqrt(N)`` as in `featurize`: the models of one draw are
    nested, so the curve over N moves one feature at a time, as in Belkin et al. (2019). Each
    is fitted by `min_norm_solution` (ridge 0) or `ridge_solution` in float64.

    Args:
      key: PRNG key of the random features.
      x, x_test: (n, d) and (n_test, d) inputs.
      y, y_test: integer labels, (n,) and (n_test,).
      n_features: the numbers of features N, positive ints.
      ridges: penalties, 0 for the minimum-norm interpolant.
      n_draws: independent draws of the first layer.
      num_classes: k, the width of the one-hot targets (default: the largest label + 1).

    Returns:
      A `FeatureSweep`.
    """
    n_features = np.asarray(n_features)
    if n_features.ndim != 1 or n_features.size == 0 or not np.all(n_features >= 1):
        raise ValueError(f"n_features: expected positive ints, got {n_features!r}")
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws: expected a positive int, got {n_draws!r}")
    if any(lam < 0 for lam in ridges):
        raise ValueError(f"ridges: expected nonnegative penalties, got {ridges!r}")
    y, y_test = np.asarray(y), np.asarray(y_test)
    k = int(max(y.max(), y_test.max())) + 1 if num_classes is None else num_classes
    targets, targets_test = np.eye(k)[y], np.eye(k)[y_test]
    n_max = int(n_features.max())
    shape = (n_draws, len(ridges), len(n_features))
    train, test, err = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for s in range(n_draws):
        params = make_random_features(jax.random.fold_in(key, s), np.shape(x)[1], n_max)
        # unnormalized features relu(x W) in float64 for the solvers; model N takes N columns
        raw = math.sqrt(n_max) * np.asarray(featurize(params, x), np.float64)
        raw_test = math.sqrt(n_max) * np.asarray(featurize(params, x_test), np.float64)
        for j, n_feat in enumerate(n_features):
            scale = np.sqrt(n_feat)
            phi, phi_test = raw[:, :n_feat] / scale, raw_test[:, :n_feat] / scale
            for i, lam in enumerate(ridges):
                if lam == 0:
                    w = min_norm_solution(phi, targets)
                else:
                    w = ridge_solution(phi, targets, lam)
                pred_test = phi_test @ w
                train[s, i, j] = squared_error(phi @ w, targets)
                test[s, i, j] = squared_error(pred_test, targets_test)
                err[s, i, j] = np.mean(np.argmax(pred_test, axis=1) != y_test)
    return FeatureSweep(train, test, err)


def min_norm_risk_isotropic(
    n: int, p, noise_var: float, signal_norm2: float, *, test_noise: bool = False
):
    """Exact expected risk of min-norm least squares with isotropic Gaussian covariates.

    Model: rows ``x_i ~ N(0, I_p)`` i.i.d., ``y_i = x_i . beta + eps_i`` with
    ``eps_i ~ N(0, noise_var)``, a fixed ``beta`` with ``||beta||^2 = signal_norm2``, all p
    features observed; ``beta_hat = X^+ y`` (`min_norm_solution`). The excess risk
    ``E (x . beta_hat - x . beta)^2 = E ||beta_hat - beta||^2``, averaged over X and eps, is

        p <= n - 2:          noise_var * p / (n - p - 1)
        n - 1 <= p <= n + 1: +inf
        p >= n + 2:          signal_norm2 * (1 - n / p) + noise_var * n / (p - n - 1)

    This is Belkin, Hsu & Xu (2020, Thm. 1) with every feature selected (their missing-feature
    term vanishes), minus the test noise. Proof sketch: for p < n, ``beta_hat - beta =
    (X^T X)^{-1} X^T eps`` and ``E (X^T X)^{-1} = I / (n - p - 1)`` (inverse-Wishart mean);
    for p > n, ``beta_hat - beta = -(I - P) beta + X^T (X X^T)^{-1} eps`` with P the projection
    on the row space, ``E ||(I - P) beta||^2 = (1 - n/p) ||beta||^2`` by rotation invariance,
    and ``E tr (X X^T)^{-1} = n / (p - n - 1)``. As ``n, p -> inf`` with ``p / n -> gamma``
    this tends to ``noise_var gamma / (1 - gamma)`` and ``signal_norm2 (1 - 1/gamma) +
    noise_var / (gamma - 1)``, Hastie et al. (2022, Thm. 1). Without noise the infinite window
    disappears: the risk is 0 for p <= n and ``signal_norm2 (1 - n/p)`` beyond.

    Args:
      n: number of training samples (positive int).
      p: number of features (positive int, or an integer array for a whole curve).
      noise_var: label-noise variance sigma^2 >= 0.
      signal_norm2: ``||beta||^2 >= 0``.
      test_noise: add ``noise_var`` (the irreducible error of a noisy test label), giving the
        prediction risk ``E (y - x . beta_hat)^2`` that Belkin, Hsu & Xu report.

    Returns:
      Float64 array shaped like `p` (a float for scalar p); ``inf`` in the window.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    p_arr = np.asarray(p)
    if not np.issubdtype(p_arr.dtype, np.integer) or p_arr.size == 0 or np.any(p_arr < 1):
        raise ValueError(f"p: expected a positive int or an array of positive ints, got {p!r}")
    if not noise_var >= 0:
        raise ValueError(f"noise_var: expected a float >= 0, got {noise_var!r}")
    if not signal_norm2 >= 0:
        raise ValueError(f"signal_norm2: expected a float >= 0, got {signal_norm2!r}")
    pf = p_arr.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(
            pf <= n - 2, pf / (n - pf - 1), np.where(pf >= n + 2, n / (pf - n - 1), np.inf)
        )
        bias = np.where(pf > n, signal_norm2 * (1.0 - n / pf), 0.0)
    risk = bias + (noise_var * variance if noise_var > 0 else 0.0)
    if test_noise:
        risk = risk + noise_var
    risk = np.asarray(risk, np.float64)
    return float(risk) if risk.ndim == 0 else risk
