"""Full-batch gradient descent with its sharpness tracked inside one compiled scan.

The edge of stability (Cohen et al. 2021) is seen by watching the sharpness, the top eigenvalue
of the loss Hessian, at many points of a gradient-descent run. Alternating `udl_jax.train.fit`
chunks with `udl_jax.hessian.sharpness` does this, but each Lanczos product then costs a round
trip from Python (a dispatch, a transfer, a small eigenproblem on the host), which for a small
network is slower than the product itself. Here ``every`` GD steps and a fixed number of
warm-started Lanczos steps run together in one ``jax.lax.scan`` under one ``jax.jit``: the
previous top eigenvector starts the next Lanczos run, so a few products per measurement suffice
while the eigenvector moves slowly. `tests/test_edge_of_stability.py` checks the result against
`udl_jax.train.fit` and `udl_jax.hessian.sharpness`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from . import train
from .hessian import lanczos_top

__all__ = [
    "gd_with_sharpness",
    "GDRun",
]


class GDRun(NamedTuple):
    """Result of `gd_with_sharpness`.

    Attributes:
      params: the parameters after ``steps`` GD steps (a pytree like the input).
      loss: (steps + 1,) NumPy array, ``loss[t]`` = the loss after t steps.
      sharpness_steps: (steps // every + 1,) the steps 0, every, 2 every, ..., steps at which
        the sharpness was measured.
      sharpness: (steps // every + 1,) the top Hessian eigenvalue at those steps.
      eigenvector: (P,) flat top eigenvector at the last measurement (``ravel_pytree`` order),
        to warm-start a continuation.
    """

    params: Any
    loss: np.ndarray
    sharpness_steps: np.ndarray
    sharpness: np.ndarray
    eigenvector: jax.Array


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _run(loss_fn, every, n_chunks, num_iter, num_iter_first, params, learning_rate, v0):
    flat0, unravel = ravel_pytree(params)
    tx = optax.sgd(learning_rate)

    def flat_loss(flat):
        return loss_fn(unravel(flat)), None

    def top(flat, v, m):
        def hvp(u):
            g = lambda f: ravel_pytree(jax.grad(loss_fn)(unravel(f)))[0]  # noqa: E731
            return jax.jvp(g, (flat,), (u,))[1]

        return lanczos_top(hvp, v, m)

    def chunk(carry, _):
        flat, v = carry
        flat, _, losses, _ = train.optimize(flat_loss, tx, flat, every)  # w <- w - eta grad
        lam, v = top(flat, v, num_iter)
        return (flat, v), (losses, lam)

    lam0, v = top(flat0, v0, num_iter_first)
    (flat, v), (losses, lams) = jax.lax.scan(chunk, (flat0, v), None, length=n_chunks)
    final = loss_fn(unravel(flat))
    losses = jnp.concatenate([losses.reshape(-1), final[None]])
    return unravel(flat), losses, jnp.concatenate([lam0[None], lams]), v


def gd_with_sharpness(
    loss_fn: Callable,
    params,
    *,
    learning_rate: float,
    steps: int,
    every: int,
    key: jax.Array,
    num_iter: int = 20,
    num_iter_first: int | None = None,
    v0=None,
) -> GDRun:
    """Full-batch gradient descent ``theta <- theta - eta grad L(theta)``, tracking the sharpness.

    Every ``every`` steps (and at step 0) the top Hessian eigenvalue is estimated by
    `udl_jax.hessian.lanczos_top` with ``num_iter`` Hessian-vector products (forward-over-
    reverse, Pearlmutter 1994), warm-started from the previous eigenvector; the first
    measurement starts from ``v0`` or a random vector and uses ``num_iter_first`` products.
    Everything runs in one jitted scan, compiled once per ``loss_fn`` object and setting
    (``every``, ``steps``, ``num_iter``): reuse the same ``loss_fn`` (not a fresh lambda) to
    share the compilation across learning rates and starting points. The GD steps are those of
    `udl_jax.train.fit` with ``optimizer=optax.sgd, batch_size=None``.

    Args:
      loss_fn: scalar loss of a parameter pytree over the full training set, e.g.
        ``models.loss_fn(model, x, y, "mse")``.
      params: starting parameter pytree (floating point).
      learning_rate: the step size eta (a float; changing it does not recompile).
      steps: number of GD steps, a positive multiple of ``every``.
      every: steps between sharpness measurements.
      key: PRNG key for the random start vector (used when ``v0`` is None).
      num_iter: products per warm-started measurement.
      num_iter_first: products for the first measurement (default ``3 * num_iter``).
      v0: optional (P,) flat starting vector for the first measurement.

    Returns:
      A `GDRun` (params, loss, sharpness_steps, sharpness, eigenvector). The loss curve has one
      entry per step, computed for free in the gradient evaluation.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a scalar function of params, got "
                        f"{type(loss_fn).__name__}")
    for name, value in (("steps", steps), ("every", every), ("num_iter", num_iter)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if steps % every:
        raise ValueError(f"steps: expected a multiple of every={every}, got {steps}")
    num_iter_first = 3 * num_iter if num_iter_first is None else num_iter_first
    flat, _ = ravel_pytree(params)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(f"params: expected floating-point leaves, got {flat.dtype}")
    p = flat.shape[0]
    num_iter, num_iter_first = min(num_iter, p), min(num_iter_first, p)
    if v0 is None:
        v0 = jax.random.normal(key, (p,), flat.dtype)
    v0 = jnp.asarray(v0, flat.dtype).reshape(-1)
    if v0.shape != (p,):
        raise ValueError(f"v0: expected a flat vector of shape ({p},), got {v0.shape}")
    out, losses, lams, v = _run(loss_fn, every, steps // every, num_iter, num_iter_first,
                                params, jnp.asarray(learning_rate, flat.dtype), v0)
    return GDRun(out, np.asarray(losses), np.arange(0, steps + 1, every), np.asarray(lams), v)
