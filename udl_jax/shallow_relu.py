"""Shallow ReLU networks as sums of hinges; universal approximation in 1D, constructively.

A network with one hidden layer of ReLUs computes ``f(x) = c + sum_i v_i relu(w_i x + b_i)``: a
constant plus hinges. Putting one hinge at each interior knot and choosing ``v_i`` as the change
of slope there makes ``f`` *equal* to the piecewise-linear interpolant of any function, which
converges to a smooth target at rate ``1/n^2`` in the number of hinges (Prince 2023, ch. 3;
Cybenko 1989 and Hornik 1991 for the general theorem).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .models import MLP

__all__ = ["interpolating_network", "hinge_terms"]


def interpolating_network(knots: np.ndarray, values: np.ndarray) -> MLP:
    """A 1 -> n -> 1 ReLU `MLP` equal to the piecewise-linear interpolant on the knots.

    With slopes ``s_i = (values[i+1] - values[i]) / (knots[i+1] - knots[i])``,
    ``f(x) = values[0] + s_0 relu(x - t_0) + sum_{i>=1} (s_i - s_{i-1}) relu(x - t_i)``:
    unit ``i`` is a hinge at knot ``t_i`` whose output weight is the change of slope there.

    Args:
      knots: (n + 1,) strictly increasing.
      values: (n + 1,) target values at the knots.

    Returns:
      An MLP with widths (1, n, 1) (n hidden units) in standard parametrization. Outside the
      knot interval it continues with the last slope on the right and is constant on the left.
    """
    t, v = np.asarray(knots, np.float64), np.asarray(values, np.float64)
    if t.ndim != 1 or t.shape != v.shape or len(t) < 2:
        raise ValueError(
            f"knots and values: expected two 1D arrays of equal length >= 2, "
            f"got shapes {t.shape} and {v.shape}"
        )
    if np.any(np.diff(t) <= 0):
        raise ValueError("knots: expected strictly increasing values")
    slopes = np.diff(v) / np.diff(t)
    n = len(slopes)
    net = MLP((1, n, 1), rngs=nnx.Rngs(0))
    first, last = net.layers
    first.w[...] = jnp.ones((1, n), jnp.float32)
    first.b[...] = jnp.asarray(-t[:-1], jnp.float32)
    last.w[...] = jnp.asarray(np.diff(slopes, prepend=0.0)[:, None], jnp.float32)
    last.b[...] = jnp.asarray([v[0]], jnp.float32)
    return net


def hinge_terms(model: MLP, x: np.ndarray) -> np.ndarray:
    """The individual hinges ``v_i relu(w_i x + b_i)`` of a 1 -> n -> 1 ReLU network.

    Args:
      model: an `MLP` with widths (1, n, 1), ReLU, standard parametrization.
      x: (m,) inputs.

    Returns:
      (m, n) array; its row sums plus the output bias equal ``model(x)``.
    """
    if len(model.widths) != 3 or model.widths[0] != 1 or model.widths[2] != 1:
        raise ValueError(f"model: expected a 1 -> n -> 1 network, got widths {model.widths}")
    if model.activation != "relu" or model.parametrization != "standard":
        raise ValueError("model: expected ReLU activation and standard parametrization")
    first, last = model.layers
    x = jnp.asarray(x, jnp.float32).reshape(-1, 1)
    return np.asarray(jnp.maximum(x @ first.w[...] + first.b[...], 0) * last.w[...][:, 0])
