"""How smooth a loss is along the gradient: Santurkar et al.'s (2018) three probes.

Santurkar et al. argue that batch norm helps optimization not by fixing the distribution of
each layer's inputs but by making the loss smoother: along the direction of the gradient the
loss changes less abruptly, and the gradient itself changes less, so a step can be longer and
the gradient stays predictive of the loss after it. At parameters ``w`` with gradient ``g``,
for step sizes ``eta``, they measure

- the loss landscape: ``L(w - eta g)``, whose spread over ``eta`` says how much the loss varies
  along the step;
- gradient predictiveness: ``|grad L(w - eta g) - g|``, how much the gradient changes;
- effective beta-smoothness: ``max_eta |grad L(w - eta g) - g| / (eta |g|)``, a local
  Lipschitz constant of the gradient in the direction the optimizer moves.

`probe_along_gradient` computes all three for one loss function at one point, with every
step size in one vectorized call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["GradientProbe", "probe_along_gradient"]


class GradientProbe(NamedTuple):
    """The three probes of `probe_along_gradient` at one point.

    Attributes:
      step_sizes: (k,) the step sizes ``eta``.
      loss: (k,) ``L(w - eta g)``.
      grad_change: (k,) ``|grad L(w - eta g) - g|`` (Euclidean norm over all parameters).
      grad_norm: ``|g|``, a float.
      loss_at_w: ``L(w)``, a float.
    """

    step_sizes: np.ndarray
    loss: np.ndarray
    grad_change: np.ndarray
    grad_norm: float
    loss_at_w: float

    @property
    def loss_range(self) -> float:
        """``max - min`` of the loss over the step sizes and ``w`` itself."""
        values = np.append(self.loss, self.loss_at_w)
        return float(values.max() - values.min())

    @property
    def beta(self) -> float:
        """The effective beta-smoothness, ``max_eta |grad L(w - eta g) - g| / (eta |g|)``."""
        return float(np.max(self.grad_change / (self.step_sizes * self.grad_norm)))


def probe_along_gradient(loss_fn: Callable, params, step_sizes) -> GradientProbe:
    """Loss and gradient change along the negative gradient, for several step sizes.

    Args:
      loss_fn: a scalar function of a parameter pytree (e.g. a fixed batch's loss, with batch
        norm in training mode). The probe is compiled once per ``loss_fn`` object: define it
        once and probe many points with it.
      params: the point ``w``.
      step_sizes: positive step sizes ``eta`` (a 1-D sequence).

    Returns:
      A `GradientProbe`.
    """
    etas = np.asarray(step_sizes, np.float64)
    if etas.ndim != 1 or etas.size == 0 or not np.all(etas > 0) or not np.all(np.isfinite(etas)):
        raise ValueError(
            f"step_sizes: expected a 1-D sequence of positive numbers, got {step_sizes!r}"
        )
    loss, gnorm, values, changes = _probe(loss_fn, params, jnp.asarray(etas, jnp.float32))
    gnorm = float(gnorm)
    if not np.isfinite(gnorm) or gnorm == 0:
        raise ValueError(f"params: the gradient norm is {gnorm}; nothing to probe along")
    return GradientProbe(etas, np.asarray(values, np.float64), np.asarray(changes, np.float64),
                         gnorm, float(loss))


@functools.partial(jax.jit, static_argnums=0)
def _probe(loss_fn, params, etas):
    # One jitted value_and_grad, called twice: traced and lowered once.
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    loss, grad = value_and_grad(params)

    def at(eta):
        moved = jax.tree.map(lambda p, g: p - eta * g, params, grad)
        value, g2 = value_and_grad(moved)
        diff = jax.tree.map(lambda a, b: a - b, g2, grad)
        return value, optax.tree_utils.tree_norm(diff)

    values, changes = jax.lax.map(at, etas)
    return loss, optax.tree_utils.tree_norm(grad), values, changes
