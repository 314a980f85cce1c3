"""Lazy training and feature learning: how far weights and kernels move during training.

A network trained in the kernel regime barely moves its weights, so its neural tangent
kernel stays put and training is kernel regression (Jacot et al. 2018; Lee et al. 2019).
Chizat, Oyallon & Bach (2019) showed the regime is a matter of scale: train the centred,
scaled model ``g(w, x) = alpha (f(w, x) - f(w_0, x))`` on the loss divided by ``alpha^2``, and
the function moves at a speed independent of alpha while the weights move like ``1/alpha``.
This module holds the few measurements the chapter on the NTK needs: `scaled_gd` (full-batch
gradient descent on that model, one ``lax.scan``, vmappable over initializations), relative
changes of weights and kernels, the kernel-target alignment of Cristianini et al. (2002) in
the centred form of Cortes et al. (2012), and log-log slopes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import losses, train

__all__ = [
    "scaled_gd",
    "ScaledRun",
    "weight_changes",
    "kernel_alignment",
    "relative_change",
    "loglog_slope",
]


def relative_change(a, a0) -> jax.Array:
    """``||a - a0||_F / ||a0||_F`` for arrays of any (equal) shape."""
    a, a0 = jnp.asarray(a), jnp.asarray(a0)
    if a.shape != a0.shape:
        raise ValueError(f"a: expected the shape of a0 {a0.shape}, got {a.shape}")
    return jnp.linalg.norm((a - a0).ravel()) / jnp.linalg.norm(a0.ravel())


def weight_changes(params, params0) -> jax.Array:
    """Relative change of every weight matrix, in the order of ``jax.tree.leaves``.

    Weight matrices are the leaves with two or more dimensions (biases are skipped); for a
    `udl_jax.models.MLP` this is one entry per layer, input layer first.

    Args:
      params, params0: parameter pytrees of one structure (e.g. trained and initial).

    Returns:
      (L,) array of ``||W - W_0||_F / ||W_0||_F``.
    """
    if jax.tree.structure(params) != jax.tree.structure(params0):
        raise ValueError("params: expected the pytree structure of params0")
    pairs = [
        (a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params0), strict=True)
        if jnp.ndim(b) >= 2
    ]
    if not pairs:
        raise ValueError("params0: expected at least one leaf with two or more dimensions")
    return jnp.stack([relative_change(a, b) for a, b in pairs])


def kernel_alignment(k, y, *, centered: bool = True) -> jax.Array:
    """Kernel-target alignment ``<K, y y^T>_F / (||K||_F ||y y^T||_F)``.

    Cristianini et al. (2002) define it uncentred; Cortes, Mohri & Rostamizadeh (2012, Def. 1)
    centre both matrices first (``H K H`` with ``H = I - 11^T/n``), which removes the
    constant direction that any kernel of positive functions aligns with. 1 means the kernel
    is a multiple of ``y y^T`` (it sees only the target); 0 that it is orthogonal to it.

    Args:
      k: (n, n) kernel matrix.
      y: (n,) targets, or (n, K) (then ``y y^T`` sums over outputs, e.g. one-hot labels).
      centered: centre K and y y^T first.

    Returns:
      A scalar in [-1, 1].
    """
    k = jnp.asarray(k)
    y = jnp.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    n = k.shape[0]
    if k.ndim != 2 or k.shape != (n, n):
        raise ValueError(f"k: expected a square (n, n) kernel, got shape {k.shape}")
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"y: expected shape ({n},) or ({n}, K), got {y.shape}")
    t = y @ y.T
    if centered:
        h = jnp.eye(n) - 1.0 / n
        k, t = h @ k @ h, h @ t @ h
    return jnp.sum(k * t) / (jnp.linalg.norm(k) * jnp.linalg.norm(t))


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent p of ``y ~ x^p``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(
            f"x, y: expected two 1-D arrays of one length >= 2, got {x.shape}, {y.shape}"
        )
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x, y: expected positive values (their logarithms are fitted)")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


class ScaledRun(NamedTuple):
    """Result of `scaled_gd`: final ``params`` and the (steps + 1,) training ``loss`` of the
    scaled model g (unscaled MSE, `udl_jax.losses.mse`), at initialization and after each step."""

    params: object
    loss: jax.Array


def scaled_gd(
    apply_fn: Callable,
    params0,
    x,
    y,
    *,
    alpha: float = 1.0,
    learning_rate: float,
    steps: int,
    center: bool = True,
) -> ScaledRun:
    """Full-batch gradient descent on the scaled model of Chizat, Oyallon & Bach (2019).

    The model is ``g(w, x) = alpha (f(w, x) - f(w_0, x))`` (``center=False``: ``alpha f(w, x)``)
    and the loss ``mse(g(w, X), y) / alpha^2`` (`udl_jax.losses.mse`), minimized by
    ``optax.sgd(learning_rate)`` for ``steps`` steps inside one ``lax.scan``. The gradient is
    ``J^T (g - y) / alpha``, so g evolves as ``dg/dt = -(eta / n) Theta (g - y)``, with the
    NTK Theta of f, for every alpha, while the weights move ``1/alpha`` as far (Chizat et al.
    2019, Sec. 2). ``alpha = 1, center=False`` is plain gradient descent on f, as
    ``udl_jax.train.fit(..., optimizer=optax.sgd, batch_size=None, loss="mse")``. Pure and
    traceable: ``jax.vmap`` it over a stack of initializations.

    Args:
      apply_fn: ``apply_fn(params, x)`` returning (n, K) or (n,) outputs.
      params0: the initialization (a pytree).
      x: (n, ...) training inputs.
      y: (n,) or (n, K) float targets.
      alpha: output scale > 0 (may be traced).
      learning_rate: step size of gradient descent.
      steps: number of steps (static).
      center: subtract the initial function ``f(w_0, x)``.

    Returns:
      `ScaledRun` ``(params, loss)``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    f0 = apply_fn(params0, x) if center else 0.0

    def g(params):
        return alpha * (apply_fn(params, x) - f0)

    def loss_fn(params):
        mse = losses.mse(g(params), y)
        return mse / alpha**2, mse

    params, _, _, mses = train.optimize(loss_fn, optax.sgd(learning_rate), params0, steps)
    final = losses.mse(g(params), y)
    return ScaledRun(params, jnp.concatenate([mses, final[None]]))
