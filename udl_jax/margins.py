"""Max-margin directions, normalized margins and angles: the implicit bias of gradient descent.

On linearly separable data the logistic loss has no minimizer: gradient descent drives the
weights to infinity. Soudry et al. (2018) show that their *direction* still converges, to the
hard-margin SVM solution, ``w(t) = w_hat log t + rho(t)`` with ``rho(t)`` bounded, so that the
angle to ``w_hat`` and the gap in normalized margin both fall like ``1 / log t``: the loss
never asked for a large margin, the algorithm supplies it. This module gives the reference
direction, the quantities that measure the convergence, and a separable toy set:

- `max_margin_direction`: the homogeneous hard-margin SVM ``min ||w||^2`` subject to
  ``y_i <x_i, w> >= 1`` (no intercept, as in the theorem), from scikit-learn's ``SVC``;
- `normalized_margin`, `angle`: ``min_i y_i <x_i, w> / ||w||`` and the angle between
  directions, vectorized over a trajectory of weights;
- `log_log_slope`: the exponent ``p`` in ``angle ~ (log t)^p`` fitted over a range of steps;
- `logistic_loss`: the binary logistic loss of a one-output model, for `udl_jax.train.fit`;
- `separable_gaussian`: Gaussian inputs labelled by a random hyperplane through the origin,
  with a band around it left empty.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .data import Dataset
from .lazy_training import loglog_slope

__all__ = [
    "signed_labels",
    "max_margin_direction",
    "normalized_margin",
    "angle",
    "log_log_slope",
    "logistic_loss",
    "separable_gaussian",
]


def signed_labels(y) -> np.ndarray:
    """Binary labels as -1/+1 floats: {0, 1} maps to {-1, +1}; {-1, +1} is kept.

    Raises:
      ValueError: naming ``y`` if it holds other values or is not 1D.
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y: expected a nonempty 1D array of binary labels, got shape {y.shape}")
    values = set(np.unique(y).tolist())
    if values <= {0, 1}:
        return np.where(y == 1, 1.0, -1.0)
    if values <= {-1, 1}:
        return y.astype(np.float64)
    raise ValueError(f"y: expected labels in {{0, 1}} or {{-1, +1}}, got values {sorted(values)}")


def _inputs(x, y):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2D array (samples, features), got shape {x.shape}")
    s = signed_labels(y)
    if len(s) != len(x):
        raise ValueError(f"y: expected {len(x)} labels (one per row of x), got {len(s)}")
    return x, s


def max_margin_direction(x, y, *, c: float = 1e8, tol: float = 1e-6) -> np.ndarray:
    """The homogeneous hard-margin SVM: ``argmin ||w||^2`` subject to ``y_i <x_i, w> >= 1``.

    This is the ``w_hat`` of Soudry et al. (2018): ``||w_hat||`` is the inverse of the largest
    achievable margin ``gamma* = max_{||w||=1} min_i y_i <x_i, w>``, and the support vectors
    have margin exactly 1. scikit-learn's ``SVC`` always fits an intercept; we fit it to the
    data together with its mirror image ``(-x_i, -y_i)``, which has the same constraints for a
    homogeneous ``w``. If ``(w, b)`` is feasible for the mirrored set so is ``(w, -b)``, hence
    by convexity ``(w, 0)`` with the same norm: the optimal intercept is 0 and the optimal
    ``w`` is the homogeneous solution. A large ``c`` makes the soft margin hard.

    Args:
      x: (n, d) inputs.
      y: (n,) labels in {0, 1} or {-1, +1}.
      c: the SVM's penalty on margin violations (large: hard margin).
      tol: the solver's tolerance; also the slack allowed in the separability check.

    Returns:
      ``w_hat``, a (d,) float64 array with ``min_i y_i <x_i, w_hat> = 1``.

    Raises:
      ValueError: if the data are not linearly separable through the origin.
    """
    from sklearn.svm import SVC

    x, s = _inputs(x, y)
    if len(np.unique(s)) < 2:
        raise ValueError("y: expected both classes; with one class every direction separates")
    clf = SVC(kernel="linear", C=c, tol=tol * 1e-2).fit(
        np.concatenate([x, -x]), np.concatenate([s, -s])
    )
    w = clf.coef_[0].astype(np.float64)
    margins = s * (x @ w)
    if margins.min() < 1 - 1e3 * tol or not np.isfinite(w).all():
        raise ValueError(
            "x, y: the data are not linearly separable through the origin (the hard-margin "
            f"SVM leaves a margin of {margins.min():.3g} < 1); add a constant feature for an "
            "intercept, or drop overlapping points"
        )
    return w / margins.min()  # exactly margin 1 (removes the solver's last digits of slack)


def normalized_margin(w, x, y) -> np.ndarray:
    """``min_i y_i <x_i, w> / ||w||``, for one weight vector or a trajectory of them.

    Args:
      w: (d,) or (T, d) weights.
      x: (n, d) inputs; y: (n,) binary labels.

    Returns:
      The smallest signed distance of a training point to the hyperplane ``<w, x> = 0``
      (negative if some point is misclassified), a float for one ``w``, a (T,) array for a
      trajectory.
    """
    x, s = _inputs(x, y)
    w = np.asarray(w, dtype=np.float64)
    if w.shape[-1] != x.shape[1]:
        raise ValueError(f"w: expected last axis of size d={x.shape[1]}, got shape {w.shape}")
    norm = np.linalg.norm(w, axis=-1)
    if np.any(norm == 0):
        raise ValueError("w: the zero vector has no direction")
    return (s * (w @ x.T)).min(-1) / norm


def angle(w, reference) -> np.ndarray:
    """The angle in radians between ``w`` (one vector or a (T, d) trajectory) and ``reference``.

    Computed as ``atan2(|w_perp|, <w, u>)`` with ``u`` the unit reference, accurate for small
    angles (``arccos`` of a cosine near 1 loses half the digits).
    """
    w = np.asarray(w, dtype=np.float64)
    u = np.asarray(reference, dtype=np.float64)
    if u.ndim != 1 or w.shape[-1] != u.shape[0]:
        raise ValueError(
            f"reference: expected a (d,) vector matching w's last axis, got {u.shape} and "
            f"{w.shape}"
        )
    nu = np.linalg.norm(u)
    if nu == 0 or np.any(np.linalg.norm(w, axis=-1) == 0):
        raise ValueError("w, reference: the zero vector has no direction")
    u = u / nu
    along = w @ u
    perp = np.linalg.norm(w - along[..., None] * u, axis=-1)
    return np.arctan2(perp, along)


def log_log_slope(steps, values, *, start: float | None = None) -> float:
    """The exponent ``p`` in ``values ~ C (log t)^p``: least-squares slope of ``log values``
    against ``log log t``, over the steps ``t >= start`` (default: all, which need ``t > 1``).

    For the angle of gradient descent to the max-margin direction, Soudry et al. (2018) give
    ``p = -1`` asymptotically; a power law ``t^(-a)`` would give a slope ``-a log t``, steep
    and growing, and no convergence a slope near 0.
    """
    t = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"steps, values: expected two 1D arrays of one length, got {t.shape}, "
                         f"{v.shape}")
    keep = t >= (start if start is not None else -np.inf)
    t, v = t[keep], v[keep]
    if len(t) < 2 or np.any(t <= 1) or np.any(v <= 0):
        raise ValueError("steps, values: expected at least 2 points with steps > 1 and "
                         "values > 0 in the fitted range")
    return loglog_slope(np.log(t), v)  # the slope against log t on log-log axes


def logistic_loss(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Mean binary logistic loss ``mean_i log(1 + exp(-s_i f(x_i)))``, ``s_i = 2 y_i - 1``.

    For a model with one output (shape (n,) or (n, 1)) and labels y in {0, 1}; pass it to
    `udl_jax.train.fit` as ``loss=``. (``losses.accuracy`` takes an arg-max over outputs and so
    means nothing for one output; use `normalized_margin` instead.)
    """
    if outputs.ndim == 2:
        if outputs.shape[1] != 1:
            raise ValueError(f"outputs: expected one output per sample, got shape "
                             f"{outputs.shape}")
        outputs = outputs[:, 0]
    s = 2.0 * y.astype(outputs.dtype) - 1.0
    return jnp.mean(jax.nn.softplus(-s * outputs))


def separable_gaussian(key: jax.Array, n: int, d: int, gap: float = 0.0,
                       n_test: int = 1000) -> Dataset:
    """Gaussian inputs labelled by a random hyperplane through the origin, with a gap.

    Points are drawn from N(0, I_d) and labelled ``y = 1[<u, x> > 0]`` for a random unit
    ``u``; points with ``|<u, x>| <= gap`` are dropped (rejection), so the classes are
    separated by a band of width ``2 gap`` and the data are separable through the origin.
    The max-margin direction is *not* ``u`` in general: it depends on the sample.

    Args:
      key: PRNG key (the teacher direction and the points).
      n, n_test: training and test points.
      d: input dimension, at least 2.
      gap: half-width of the empty band, >= 0.

    Returns:
      A `udl_jax.data.Dataset` with float32 x (n, d) and int32 y in {0, 1}.
    """
    if not (isinstance(n, int) and n >= 2 and isinstance(n_test, int) and n_test >= 1):
        raise ValueError(f"n, n_test: expected ints n >= 2, n_test >= 1, got {n!r}, {n_test!r}")
    if not (isinstance(d, int) and d >= 2):
        raise ValueError(f"d: expected an int >= 2, got {d!r}")
    if not (np.ndim(gap) == 0 and 0 <= float(gap) < 3):
        raise ValueError(f"gap: expected a number in [0, 3), got {gap!r}")
    ku, kx = jax.random.split(key)
    u = np.asarray(jax.random.normal(ku, (d,)), dtype=np.float64)
    u /= np.linalg.norm(u)
    need, pts, draw = n + n_test, [], 0
    while sum(len(p) for p in pts) < need:
        x = np.asarray(jax.random.normal(jax.random.fold_in(kx, draw), (2 * need, d)))
        pts.append(x[np.abs(x @ u) > gap])
        draw += 1
    x = np.concatenate(pts)[:need]
    y = (x @ u > 0).astype(np.int32)
    return Dataset(x[:n].astype(np.float32), y[:n], x[n:].astype(np.float32), y[n:])
