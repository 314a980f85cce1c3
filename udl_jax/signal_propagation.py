"""Signal propagation through a deep random network: the mean-field recursions, and measurement.

At initialization, as the width grows, the pre-activations of every hidden layer of an MLP are
Gaussian with a variance ``q_l`` that follows a deterministic one-dimensional map (Poole et al.
2016; Schoenholz et al. 2017)::

    q_{l+1} = sigma_w^2 E_z[phi(sqrt(q_l) z)^2] + sigma_b^2,      z ~ N(0, 1),

and back-propagated gradients are multiplied, layer by layer, by::

    chi(q_l) = sigma_w^2 E_z[phi'(sqrt(q_l) z)^2].

At the fixed point ``q*`` of the variance map this factor is ``chi_1``: gradients vanish
exponentially with depth where ``chi_1 < 1`` (the *ordered* phase), explode where
``chi_1 > 1`` (the *chaotic* phase), and keep their size at ``chi_1 = 1``, the *edge of chaos*.
For ReLU without biases ``q_{l+1} = (sigma_w^2 / 2) q_l`` and ``chi = sigma_w^2 / 2``: the edge
is He et al.'s (2015) ``sigma_w^2 = 2``. The correlation of two inputs follows a map of its
own, whose slope at ``c = 1`` is again ``chi_1``.

Expectations are Gauss-Hermite quadratures (`gauss_expectation`), so every map here is exact
to float64 rounding for smooth activations and for ReLU's even moments. `layer_statistics`
measures the same quantities in a finite network (`udl_jax.models.MLP`), so a chapter can put
the recursion and the network side by side.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import optimize, special

__all__ = [
    "ACTIVATIONS",
    "gauss_expectation",
    "variance_map",
    "variance_recursion",
    "fixed_point_variance",
    "chi",
    "chi_1",
    "critical_weight_var",
    "gradient_recursion",
    "correlation_map",
    "correlation_recursion",
    "LayerStatistics",
    "layer_statistics",
]


def _relu(z):
    return np.maximum(z, 0.0)


ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "relu": (_relu, lambda z: (z > 0).astype(float)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "erf": (special.erf, lambda z: 2.0 / np.sqrt(np.pi) * np.exp(-(z**2))),
    "identity": (lambda z: z, np.ones_like),
}
"""Activations with their derivatives (NumPy, float64), by the names `udl_jax.models` uses."""

_NODES = 128  # even: no node at 0, so ReLU's step derivative integrates to exactly 1/2


def _activation(name: str, derivative: bool = False) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name][int(derivative)]


def _check_variances(weight_var, bias_var) -> tuple[float, float]:
    ok = all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
        for v in (weight_var, bias_var)
    )
    if not ok or weight_var <= 0 or bias_var < 0:
        raise ValueError(
            f"weight_var must be > 0 and bias_var >= 0, got {weight_var!r}, {bias_var!r}"
        )
    return float(weight_var), float(bias_var)


def _check_depth(depth) -> int:
    if not isinstance(depth, numbers.Integral) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth: expected a positive int, got {depth!r}")
    return int(depth)


@functools.lru_cache(maxsize=8)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal (weights sum to 1)."""
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    z, w = np.polynomial.hermite_e.hermegauss(int(n))
    return z, w / w.sum()


def gauss_expectation(f: Callable, q, n: int = _NODES) -> np.ndarray:
    """``E_z[f(sqrt(q) z)]`` for ``z ~ N(0, 1)``, by ``n``-point Gauss-Hermite quadrature.

    Args:
      f: a vectorized NumPy function.
      q: a variance >= 0, or an array of them.
      n: number of nodes (probabilists' Hermite polynomials); exact for polynomials of degree
        below ``2n``.

    Returns:
      An array of the shape of ``q`` (float64).
    """
    q = np.asarray(q, np.float64)
    if np.any(q < 0) or not np.all(np.isfinite(q)):
        raise ValueError(f"q: expected finite variances >= 0, got {q!r}")
    z, w = _nodes(n)
    return np.tensordot(f(np.sqrt(q)[..., None] * z), w, axes=1)


def variance_map(q, activation: str = "relu", weight_var: float = 2.0, bias_var: float = 0.0):
    """One layer of the variance recursion: ``sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``.

    Args:
      q: the pre-activation variance of a layer (scalar or array).
      activation: a key of `ACTIVATIONS`.
      weight_var, bias_var: sigma_w^2 and sigma_b^2 (as in `udl_jax.models.MLP`).

    Returns:
      The variance of the next layer's pre-activations, shaped like ``q``.
    """
    weight_var, bias_var = _check_variances(weight_var, bias_var)
    phi = _activation(activation)
    return weight_var * gauss_expectation(lambda u: phi(u) ** 2, q) + bias_var


def variance_recursion(
    q1: float, depth: int, activation: str = "relu", weight_var: float = 2.0, bias_var: float = 0.0
) -> np.ndarray:
    """``(q_1, ..., q_depth)``: the pre-activation variance of each hidden layer.

    Args:
      q1: the first hidden layer's variance, ``sigma_w^2 |x|^2 / d_in + sigma_b^2`` for an
        input ``x`` of dimension ``d_in``.
      depth: the number of hidden layers.
      activation, weight_var, bias_var: as in `variance_map`.

    Returns:
      A float64 array of shape (depth,).
    """
    depth = _check_depth(depth)
    q = [float(q1)]
    for _ in range(depth - 1):
        q.append(float(variance_map(q[-1], activation, weight_var, bias_var)))
    return np.array(q)


def fixed_point_variance(
    activation: str = "tanh", weight_var: float = 1.0, bias_var: float = 0.0
) -> float:
    """The stable fixed point ``q*`` of `variance_map`, where the recursion ends up.

    For ``tanh`` and ``erf`` (bounded, odd) it is 0 when ``sigma_b^2 = 0`` and
    ``sigma_w^2 phi'(0)^2 <= 1``, and otherwise the positive root of ``variance_map(q) = q``
    (Brent's method). For ``relu`` and ``identity`` the map is linear, ``q -> a q + sigma_b^2``
    with ``a = sigma_w^2 / 2`` or ``sigma_w^2``: ``q* = sigma_b^2 / (1 - a)`` for ``a < 1``.

    Raises:
      ValueError: where the variance has no stable finite fixed point (ReLU with
        ``sigma_w^2 >= 2``, identity with ``sigma_w^2 >= 1``: it grows without bound, or at the
        boundary without bias stays wherever it starts).
    """
    weight_var, bias_var = _check_variances(weight_var, bias_var)
    _activation(activation)
    if activation in ("relu", "identity"):
        slope = weight_var / 2 if activation == "relu" else weight_var
        if slope >= 1:
            raise ValueError(
                f"the variance map of {activation} with weight_var={weight_var} has no stable "
                "finite fixed point: q_l grows (or, without bias, stays where it starts)"
            )
        return bias_var / (1 - slope)
    slope0 = weight_var * float(_activation(activation, derivative=True)(np.zeros(1))[0]) ** 2
    if bias_var == 0 and slope0 <= 1:
        return 0.0

    def gap(q):
        return float(variance_map(q, activation, weight_var, bias_var)) - q

    lo = max(bias_var, 1e-12) if bias_var == 0 else bias_var
    hi = weight_var + bias_var + 1.0  # the map is bounded by sigma_w^2 + sigma_b^2
    return float(optimize.brentq(gap, lo, hi, xtol=1e-14, rtol=1e-13))


def chi(q, activation: str = "relu", weight_var: float = 2.0) -> np.ndarray:
    """The factor ``sigma_w^2 E[phi'(sqrt(q) z)^2]`` by which a layer of variance ``q``
    multiplies the squared norm of a back-propagated gradient (mean field)."""
    weight_var, _ = _check_variances(weight_var, 0.0)
    dphi = _activation(activation, derivative=True)
    return weight_var * gauss_expectation(lambda u: dphi(u) ** 2, q)


def chi_1(activation: str = "tanh", weight_var: float = 1.0, bias_var: float = 0.0) -> float:
    """``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]`` at the fixed point ``q*`` (Schoenholz et al.
    2017, eq. 5): < 1 ordered, > 1 chaotic, = 1 the edge of chaos. For ReLU without bias the
    variance has no fixed point but ``chi = sigma_w^2 / 2`` at every ``q``, which is returned."""
    if activation == "relu" and bias_var == 0:
        return float(chi(1.0, activation, weight_var))
    q_star = fixed_point_variance(activation, weight_var, bias_var)
    return float(chi(q_star, activation, weight_var))


def critical_weight_var(
    activation: str = "tanh", bias_var: float = 0.0, bracket: tuple[float, float] = (0.5, 10.0)
) -> float:
    """The ``sigma_w^2`` at which ``chi_1 = 1`` for a given ``sigma_b^2`` (the edge of chaos).

    Args:
      activation: a key of `ACTIVATIONS`.
      bias_var: sigma_b^2.
      bracket: an interval of ``sigma_w^2`` on which ``chi_1 - 1`` changes sign.

    Returns:
      The root, found by Brent's method.
    """
    _check_variances(1.0, bias_var)
    if activation == "relu":
        return 2.0

    def gap(weight_var):
        return chi_1(activation, weight_var, bias_var) - 1.0

    lo, hi = bracket
    if gap(lo) * gap(hi) > 0:
        raise ValueError(f"bracket: chi_1 - 1 has the same sign at both ends of {bracket}")
    return float(optimize.brentq(gap, lo, hi, xtol=1e-10))


def gradient_recursion(q, activation: str = "relu", weight_var: float = 2.0) -> np.ndarray:
    """Mean-field squared gradient norms ``|dL/dz_l|^2`` of hidden layers ``l = 1..L``,
    relative to the last one, given their variances ``q = (q_1, ..., q_L)``:
    ``prod_{k=l+1}^{L} chi(q_k)`` (1 for the last layer).

    Back-propagation through layer ``k+1`` multiplies the gradient by ``W_{k+1}`` and by
    ``phi'(z_k)``: in mean field, its squared norm by ``chi(q_k)``. So the gradient at layer
    ``l`` picks up the factors of layers ``l .. L-1``.
    """
    c = chi(np.asarray(q, np.float64), activation, weight_var)
    factors = np.concatenate([c[:-1], [1.0]])  # layer l's gradient is chi(q_l) x layer l+1's
    return np.cumprod(factors[::-1])[::-1]


def correlation_map(
    c, q: float, activation: str = "tanh", weight_var: float = 1.0, bias_var: float = 0.0,
    n: int = 64,
) -> np.ndarray:
    """One layer of the correlation map at variance ``q`` (the same for both inputs):
    ``(sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q_next`` with ``(u_1, u_2)`` Gaussian of
    variance ``q`` and correlation ``c`` (Poole et al. 2016, eq. 5), by 2D Gauss-Hermite
    quadrature with ``n^2`` nodes; ``q_next = variance_map(q)``.
    """
    weight_var, bias_var = _check_variances(weight_var, bias_var)
    c = np.asarray(c, np.float64)
    if np.any(np.abs(c) > 1):
        raise ValueError(f"c: expected correlations in [-1, 1], got {c!r}")
    phi = _activation(activation)
    z, w = _nodes(n)
    z1, z2 = z[:, None], z[None, :]
    s = np.sqrt(q)
    c_ = c[..., None, None]
    u1 = s * z1
    u2 = s * (c_ * z1 + np.sqrt(1 - c_**2) * z2)
    cov = np.einsum("...ij,i,j->...", phi(u1) * phi(u2), w, w)
    return (weight_var * cov + bias_var) / variance_map(q, activation, weight_var, bias_var)


def correlation_recursion(
    c1: float, q1: float, depth: int, activation: str = "tanh", weight_var: float = 1.0,
    bias_var: float = 0.0,
) -> np.ndarray:
    """``(c_1, ..., c_depth)``: the correlation of two inputs' pre-activations, layer by layer,
    for two inputs of equal norm (both with variance ``q_l`` at layer ``l``)."""
    depth = _check_depth(depth)
    q = variance_recursion(q1, depth, activation, weight_var, bias_var)
    c = [float(c1)]
    for k in range(depth - 1):
        c.append(float(np.clip(correlation_map(c[-1], q[k], activation, weight_var, bias_var),
                               -1, 1)))
    return np.array(c)


class LayerStatistics(NamedTuple):
    """Measured signal propagation through the hidden layers of one network at one batch.

    Attributes:
      pre_var: (L,) the mean square of each hidden layer's pre-activations, over units and
        inputs: the finite-width ``q_l``.
      grad_sq: (L,) ``|dL/dz_l|^2``, the squared norm over units of the gradient of a random
        projection of the output with respect to layer ``l``'s pre-activations, averaged over
        inputs.
      correlation: (L,) the correlation (cosine) of the pre-activations of the first two
        inputs at each layer.
    """

    pre_var: np.ndarray
    grad_sq: np.ndarray
    correlation: np.ndarray


def layer_statistics(model: nnx.Module, x, key: jax.Array) -> LayerStatistics:
    """Measure `LayerStatistics` of a `udl_jax.models.MLP` (plain or residual) on inputs ``x``.

    The output is projected on a random Gaussian direction ``v`` (one per input), and
    ``L = sum_i <v_i, f(x_i)>`` is back-propagated: its gradients with respect to the
    pre-activations are what the mean-field ``chi`` multiplies.

    Args:
      model: a `udl_jax.models.MLP` without normalization or dropout.
      x: inputs of shape (n, widths[0]), n >= 2.
      key: PRNG key for the projection ``v``.

    Returns:
      A `LayerStatistics` of float64 NumPy arrays.
    """
    if not all(hasattr(model, a) for a in ("layers", "activation", "residual")):
        raise TypeError(f"model: expected a udl_jax.models.MLP, got {type(model).__name__}")
    if getattr(model, "normalization", None) is not None or getattr(model, "dropout", 0) > 0:
        raise ValueError("model: expected an MLP without normalization and without dropout")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != model.widths[0]:
        raise ValueError(
            f"x: expected shape (n >= 2, {model.widths[0]}), got {tuple(x.shape)}"
        )
    if getattr(model, "parametrization", "standard") != "standard":
        raise ValueError("model: expected an MLP in standard parametrization")
    ws = [layer.w[...] for layer in model.layers]
    bs = [layer.b[...] for layer in model.layers]
    masks = None if model.max_width is None else [m[...] for m in model.masks]
    v = jax.random.normal(key, (x.shape[0], model.widths[-1]))
    pre_var, grad_sq, corr = _propagate(ws, bs, masks, x, v, model.activation, model.residual)
    return LayerStatistics(*(np.asarray(a, np.float64) for a in (pre_var, grad_sq, corr)))


@functools.partial(jax.jit, static_argnames=("activation", "residual"))
def _propagate(ws, bs, masks, x, v, activation, residual):
    from .models import ACTIVATIONS as _ACT

    act = _ACT[activation]

    def output(eps):
        pre, h = [], x
        for i in range(len(ws) - 1):
            z = h @ ws[i] + bs[i] + eps[i]
            pre.append(z)
            a = act(z)
            if masks is not None:
                a = a * masks[i]
            h = h + a if (residual and h.shape[-1] == a.shape[-1]) else a
        return jnp.sum(v * (h @ ws[-1] + bs[-1])), pre

    eps = [jnp.zeros((x.shape[0], w.shape[1])) for w in ws[:-1]]
    grads, pre = jax.grad(output, has_aux=True)(eps)
    pre_var = jnp.stack([jnp.mean(z**2) for z in pre])
    grad_sq = jnp.stack([jnp.mean(jnp.sum(g**2, axis=-1)) for g in grads])
    corr = jnp.stack(
        [jnp.vdot(z[0], z[1]) / jnp.sqrt(jnp.vdot(z[0], z[0]) * jnp.vdot(z[1], z[1])) for z in pre]
    )
    return pre_var, grad_sq, corr
