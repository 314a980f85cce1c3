"""High-degree polynomials with a soft, order-dependent preference for simplicity.

Wilson (2025) argues that fitting noise and generalizing are compatible once a model's inductive
bias is *soft*: a degree-150 polynomial can represent almost anything on a handful of points, but a
penalty that grows with the order of each coefficient makes it prefer low-order explanations
whenever the data allow one. The fit is penalized (generalized ridge) least squares, solved
exactly in float64; nothing here is trained by gradient descent.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import legendre

__all__ = [
    "fit_legendre",
    "predict_legendre",
    "legendre_features",
    "order_penalty",
    "penalized_lstsq",
]


def legendre_features(x: np.ndarray, degree: int) -> np.ndarray:
    """Legendre polynomials ``P_0(x), ..., P_degree(x)`` evaluated at ``x``.

    The Legendre basis is orthogonal on [-1, 1] and bounded by 1 there, so high degrees stay
    numerically tame, unlike the monomials ``x^k``.

    Args:
      x: inputs in [-1, 1], shape (n,).
      degree: highest order K >= 0.

    Returns:
      A float64 array of shape (n, K + 1), column k holding ``P_k(x)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x: expected a 1D array, got shape {x.shape}")
    if not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree: expected an int >= 0, got {degree!r}")
    if x.size and (x.min() < -1 - 1e-12 or x.max() > 1 + 1e-12):
        raise ValueError(f"x: expected values in [-1, 1], got range [{x.min()}, {x.max()}]")
    return legendre.legvander(x, int(degree))


def order_penalty(degree: int, scale: float, power: float) -> np.ndarray:
    """The diagonal penalty ``scale * (k + 1) ** power`` for orders ``k = 0 .. degree``.

    ``power = 0`` penalizes every coefficient equally (plain ridge); larger powers make
    high orders ever more expensive, the soft bias towards simple functions.

    Args:
      degree: highest order K >= 0.
      scale: lambda >= 0, the overall strength.
      power: p >= 0, how fast the penalty grows with the order.

    Returns:
      A float64 array of shape (K + 1,).
    """
    if not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree: expected an int >= 0, got {degree!r}")
    if scale < 0:
        raise ValueError(f"scale: expected >= 0, got {scale}")
    if power < 0:
        raise ValueError(f"power: expected >= 0, got {power}")
    return scale * (np.arange(degree + 1, dtype=np.float64) + 1.0) ** power


def penalized_lstsq(features: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Coefficients minimizing ``||features @ a - y||^2 + sum_k penalty[k] * a[k]^2``.

    Solved as the ordinary least-squares problem on the stacked system
    ``[features; diag(sqrt(penalty))] a = [y; 0]`` with an SVD (``numpy.linalg.lstsq``), which
    avoids squaring the condition number as the normal equations
    ``(features^T features + diag(penalty)) a = features^T y`` would. Where the problem is
    rank deficient (zero penalty and more coefficients than points) the minimum-norm solution
    is returned.

    Args:
      features: design matrix, shape (n, K).
      y: targets, shape (n,).
      penalty: nonnegative per-coefficient weights, shape (K,).

    Returns:
      float64 coefficients, shape (K,).
    """
    features = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    penalty = np.asarray(penalty, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features: expected a 2D array, got shape {features.shape}")
    if y.shape != (features.shape[0],):
        raise ValueError(f"y: expected shape {(features.shape[0],)}, got {y.shape}")
    if penalty.shape != (features.shape[1],):
        raise ValueError(f"penalty: expected shape {(features.shape[1],)}, got {penalty.shape}")
    if np.any(penalty < 0):
        raise ValueError("penalty: expected nonnegative values")
    a = np.vstack([features, np.diag(np.sqrt(penalty))])
    b = np.concatenate([y, np.zeros(features.shape[1])])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def fit_legendre(
    x: np.ndarray, y: np.ndarray, degree: int, scale: float = 0.0, power: float = 0.0
) -> np.ndarray:
    """Penalized least-squares fit of a degree-K Legendre series (see `penalized_lstsq`).

    With ``scale = 0`` and ``degree + 1 == len(x)`` (distinct points) this is the unique
    interpolating polynomial; with ``scale = 0`` and more coefficients than points it is the
    minimum-norm interpolant.

    Args:
      x: inputs in [-1, 1], shape (n,).
      y: targets, shape (n,).
      degree: highest order K.
      scale, power: the penalty ``scale * (k + 1) ** power`` (`order_penalty`).

    Returns:
      Legendre coefficients, shape (K + 1,); evaluate with `predict_legendre`.
    """
    return penalized_lstsq(
        legendre_features(x, degree), y, order_penalty(degree, scale, power)
    )


def predict_legendre(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The Legendre series ``sum_k coef[k] P_k(x)``, shape like ``x``."""
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 1:
        raise ValueError(f"coef: expected a 1D array, got shape {coef.shape}")
    return legendre.legval(np.asarray(x, dtype=np.float64), coef)
