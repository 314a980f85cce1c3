"""Predictions from kernel matrices: kernel ridge regression, Gaussian-process posteriors and
evidence, and the gradient-flow dynamics of a linearized network.

Given a kernel k, these are the closed-form predictors of the infinite-width theory:

- `kernel_regression`: ``k(x, X) (K + ridge I)^-1 y``, the minimum-norm interpolant in the
  kernel's RKHS at ``ridge = 0`` (the NNGP or NTK predictor of an infinitely wide network);
- `gp_posterior`: the posterior mean and variance of a zero-mean GP with Gaussian noise
  (Rasmussen & Williams 2006, eqs. 2.25-2.26), whose mean is kernel ridge regression;
- `gp_log_marginal_likelihood`: the GP evidence ``log p(y | X)`` (eq. 2.30), for many label
  vectors from one Cholesky factor;
- `gradient_flow_prediction`: the outputs of a linearized network trained by gradient flow on
  the MSE for time t (Lee et al. 2019, eq. 9), which tends to kernel regression with the NTK as
  t -> infinity.

The kernels come from `udl_jax.ntk` (analytic or empirical) or from anywhere else: every
function takes plain (n, n) and (m, n) arrays, and the full (n, n, K, K) empirical NTK where it
says so. Everything is float64 NumPy and SciPy (Cholesky, eigendecomposition), because kernel
matrices are ill-conditioned.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = [
    "kernel_regression",
    "gp_posterior",
    "Posterior",
    "gp_log_marginal_likelihood",
    "gradient_flow_prediction",
]


def _float64(a, name):
    a = np.asarray(a, np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values")
    return a


def _train_test(k_train, k_test_train, y_train, allow_full=True):
    """Check shapes; return (A, B, Y, unflatten) with A (nK', nK'), B (mK', nK'), Y (nK', R)."""
    k_train = _float64(k_train, "k_train")
    k_test_train = _float64(k_test_train, "k_test_train")
    y = _float64(y_train, "y_train")
    if k_train.ndim not in ((2, 4) if allow_full else (2,)):
        want = "(n, n) or (n, n, K, K)" if allow_full else "(n, n)"
        raise ValueError(f"k_train: expected shape {want}, got {k_train.shape}")
    n = k_train.shape[0]
    if k_train.shape[1] != n or (k_train.ndim == 4 and k_train.shape[2] != k_train.shape[3]):
        raise ValueError(f"k_train: expected a square kernel, got shape {k_train.shape}")
    if k_test_train.ndim != k_train.ndim or k_test_train.shape[1:] != k_train.shape[1:]:
        raise ValueError(
            f"k_test_train: expected shape (m, {', '.join(map(str, k_train.shape[1:]))}) to "
            f"match k_train {k_train.shape}, got {k_test_train.shape}"
        )
    if y.shape[:1] != (n,) or y.ndim > 2:
        raise ValueError(f"y_train: expected shape ({n},) or ({n}, K), got {y.shape}")
    m = k_test_train.shape[0]
    if k_train.ndim == 2:
        tail = y.shape[1:]
        return k_train, k_test_train, y.reshape(n, -1), lambda o: o.reshape(*o.shape[:-2], m, *tail)
    n_out = k_train.shape[2]
    if y.shape != (n, n_out):
        raise ValueError(f"y_train: expected shape ({n}, {n_out}) for a full kernel, got {y.shape}")
    a = k_train.transpose(0, 2, 1, 3).reshape(n * n_out, n * n_out)
    b = k_test_train.transpose(0, 2, 1, 3).reshape(m * n_out, n * n_out)
    return a, b, y.reshape(-1, 1), lambda o: o.reshape(*o.shape[:-2], m, n_out)


def kernel_regression(k_train, k_test_train, y_train, *, ridge: float = 0.0) -> np.ndarray:
    """Kernel (ridge) regression: ``k(x, X) (K + ridge I)^-1 y``.

    The same estimator as ``sklearn.kernel_ridge.KernelRidge(alpha=ridge, kernel="precomputed")``
    and as the GP posterior mean with ``noise_var=ridge``; with ``ridge=0`` it is the infinite-time
    limit of `gradient_flow_prediction` from a zero initial function.

    Args:
      k_train: (n, n) kernel on the training inputs, or a full (n, n, K, K) NTK.
      k_test_train: (m, n) kernel between test and training inputs (or (m, n, K, K)).
      y_train: (n,) or (n, K) targets ((n, K) for full kernels).
      ridge: the regularizer added to the diagonal, >= 0.

    Returns:
      Float64 predictions, (m,) or (m, K) like ``y_train``.
    """
    if ridge < 0:
        raise ValueError(f"ridge: expected >= 0, got {ridge}")
    a, b, y, unflatten = _train_test(k_train, k_test_train, y_train)
    a = a + ridge * np.eye(len(a))
    try:  # Cholesky: a kernel matrix is positive definite, and this is ~10x faster than LDL^T
        alpha = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True), y)
    except np.linalg.LinAlgError:  # only semi-definite (or indefinite by rounding): LDL^T
        alpha = scipy.linalg.solve(a, y, assume_a="sym")
    return unflatten(b @ alpha)


class Posterior(NamedTuple):
    """GP posterior at the test inputs: ``mean`` (m,) or (m, K), ``var`` (m,) or cov (m, m)."""

    mean: np.ndarray
    var: np.ndarray


def gp_posterior(
    k_train, k_test_train, k_test, y_train, *, noise_var: float = 0.0, jitter: float = 1e-6
) -> Posterior:
    """Posterior of a zero-mean GP given ``y = f(X) + noise`` (Rasmussen & Williams 2006, Ch. 2).

    ``mean = k(x, X) A^-1 y`` and ``cov = k(x, x) - k(x, X) A^-1 k(X, x)`` with
    ``A = K + (noise_var + jitter * mean(diag K)) I`` (eqs. 2.25-2.26), by a float64 Cholesky
    factorization (Algorithm 2.1). The
    jitter is relative to the kernel's scale, so 1e-6 means the same for an NNGP of order 1 and a
    standard-parametrization NTK of order 1000; it keeps noise-free posteriors computable.
    Outputs (columns of ``y``) are independent GPs with the same kernel.

    Args:
      k_train: (n, n) prior covariance of the training inputs.
      k_test_train: (m, n) covariance between test and training inputs.
      k_test: (m,) prior variances of the test inputs, or their (m, m) covariance.
      y_train: (n,) or (n, K) observations.
      noise_var: observation noise variance, >= 0.
      jitter: relative diagonal jitter, >= 0.

    Returns:
      `Posterior` ``(mean, var)``: mean (m,) or (m, K); the latent f's posterior variance (m,),
      or covariance (m, m) when ``k_test`` is (m, m). Add ``noise_var`` for that of new y.
    """
    if noise_var < 0 or jitter < 0:
        raise ValueError(f"noise_var and jitter: expected >= 0, got {noise_var}, {jitter}")
    a, b, y, unflatten = _train_test(k_train, k_test_train, y_train, allow_full=False)
    k_test = _float64(k_test, "k_test")
    m = b.shape[0]
    if k_test.shape not in ((m,), (m, m)):
        raise ValueError(f"k_test: expected shape ({m},) or ({m}, {m}), got {k_test.shape}")
    diag = noise_var + jitter * float(np.mean(np.diag(a)))
    chol = scipy.linalg.cholesky(a + diag * np.eye(len(a)), lower=True)
    mean = b @ scipy.linalg.cho_solve((chol, True), y)
    v = scipy.linalg.solve_triangular(chol, b.T, lower=True)  # (n, m)
    var = k_test - np.sum(v**2, 0) if k_test.ndim == 1 else k_test - v.T @ v
    return Posterior(unflatten(mean), var)


def gp_log_marginal_likelihood(k_train, y_train, *, noise_var: float = 0.0) -> np.ndarray:
    """Log marginal likelihood ``log p(y | X)`` of a zero-mean GP with Gaussian noise.

    ``-y^T A^-1 y / 2 - log det A / 2 - n log(2 pi) / 2`` with ``A = K + noise_var I``
    (Rasmussen & Williams 2006, eq. 2.30, Algorithm 2.1): the probability of the labels under
    the prior over functions, averaged over all functions rather than taken at the best fit.
    One float64 Cholesky factor of ``A`` serves every label vector.

    Args:
      k_train: (n, n) prior covariance of the training inputs.
      y_train: (n,) labels, or (m, n): m label vectors for the same inputs.
      noise_var: observation noise variance, >= 0 (added to the diagonal).

    Returns:
      The log likelihood in nats of each label vector, a float for (n,) labels and an (m,)
      array for (m, n) labels.
    """
    if noise_var < 0:
        raise ValueError(f"noise_var: expected >= 0, got {noise_var}")
    a = _float64(k_train, "k_train")
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"k_train: expected a square matrix, got shape {a.shape}")
    y = _float64(y_train, "y_train")
    if y.shape[-1] != n or y.ndim not in (1, 2):
        raise ValueError(f"y_train: expected shape ({n},) or (m, {n}), got {y.shape}")
    chol = scipy.linalg.cholesky(a + noise_var * np.eye(n), lower=True)
    ys = np.atleast_2d(y)
    alpha = scipy.linalg.cho_solve((chol, True), ys.T)  # (n, m)
    log_det = 2 * np.log(np.diag(chol)).sum()
    out = -0.5 * (np.sum(ys.T * alpha, 0) + log_det + n * np.log(2 * np.pi))
    return float(out[0]) if y.ndim == 1 else out


def _initial_outputs(f0, shape, name):
    """f0 as float64 of ``shape``; a single-output network's (rows, 1) fits targets (rows,)."""
    if f0 is None:
        return np.zeros(shape)
    f0 = _float64(f0, name)
    if f0.shape != shape and f0.shape == (*shape, 1):
        f0 = f0[..., 0]
    if f0.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (rows like y_train), got {f0.shape}")
    return f0


def gradient_flow_prediction(
    ntk_train,
    ntk_test_train,
    y_train,
    t,
    *,
    learning_rate: float,
    f0_train=None,
    f0_test=None,
) -> np.ndarray:
    """Outputs of a linearized network after gradient flow on the MSE for time ``t``.

    ``f_t(x) = f_0(x) + Theta(x, X) Theta^-1 (I - exp(-eta Theta t / n)) (y - f_0(X))``
    (Lee et al. 2019, eq. 9). The ``1/n`` is our loss normalization: `udl_jax.losses.mse` is
    ``0.5 * mean_i ||f(x_i) - y_i||^2`` over n samples, whose gradient flow at rate eta is
    ``df/dt = -(eta / n) Theta (f - y)``. Time is counted in steps: gradient descent with
    learning rate ``eta`` for s steps approaches ``t = s`` when ``eta * lambda_max(Theta) / n``
    is small. ``t = inf`` gives kernel regression on the residual ``y - f_0(X)``.

    Computed from the eigendecomposition of Theta(X, X) with ``-expm1(-a lambda) / lambda``
    (which tends to ``a`` as lambda -> 0), so a singular kernel is fine at finite t.

    Args:
      ntk_train: (n, n) NTK of the training inputs (shared by the outputs) or the full
        (n, n, K, K) empirical NTK.
      ntk_test_train: (m, n) or (m, n, K, K) NTK between test and training inputs.
      y_train: (n,) or (n, K) targets ((n, K) for full kernels).
      t: time, a scalar or a 1-D array of times (may include ``np.inf``).
      learning_rate: eta > 0.
      f0_train, f0_test: the network's outputs at initialization, shaped like ``y_train`` with n
        and m rows (a single-output network's (n, 1) is accepted for (n,) targets); default
        zero (the mean of the infinite-width prior).

    Returns:
      Float64 predictions at the test inputs, (m,) or (m, K) like ``y_train``, with a leading
      axis over times if ``t`` is an array.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected > 0, got {learning_rate}")
    times = np.asarray(t, np.float64)
    if times.ndim > 1 or np.any(times < 0) or np.any(np.isnan(times)):
        raise ValueError(f"t: expected a time >= 0 or a 1-D array of them, got shape {times.shape}")
    a, b, _, unflatten = _train_test(ntk_train, ntk_test_train, y_train)
    y = _float64(y_train, "y_train")
    n, m = y.shape[0], np.shape(ntk_test_train)[0]
    f0_train = _initial_outputs(f0_train, (n, *y.shape[1:]), "f0_train")
    f0_test = _initial_outputs(f0_test, (m, *y.shape[1:]), "f0_test")
    residual = (y - f0_train).reshape(a.shape[0], -1)
    lam, vec = np.linalg.eigh(a)
    proj = vec.T @ residual  # (nK', R)
    cutoff = np.finfo(np.float64).eps * max(float(np.abs(lam).max()), 1e-300) * len(lam)
    rate = learning_rate / n
    outs = []
    for s in np.atleast_1d(times):
        if np.isinf(s):
            g = np.where(lam > cutoff, 1.0 / np.where(lam > cutoff, lam, 1.0), 0.0)
        else:
            small = np.abs(lam) <= cutoff
            safe = np.where(small, 1.0, lam)
            g = np.where(small, rate * s, -np.expm1(-rate * s * safe) / safe)
        outs.append(b @ (vec @ (g[:, None] * proj)))
    out = unflatten(np.stack(outs)) + f0_test
    return out if times.ndim else out[0]
