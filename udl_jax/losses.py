"""The book's one loss convention: ``loss(outputs, y) -> scalar``, a mean over samples.

Every training loop, Hessian, landscape and bound in `udl_jax` takes its loss in this form, by
name (``"cross_entropy"``, ``"mse"``) or as any function with this signature; `resolve` turns
either into the function and names the argument when it is neither. A loss of the *parameters*,
``loss_fn(params) -> scalar`` on fixed data, is made from a model by `udl_jax.models.loss_fn`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["cross_entropy", "mse", "accuracy", "LOSSES", "resolve"]


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy in nats. logits (n, k), y (n,) int labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def mse(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Half the mean over samples of the squared error ``0.5 * mean_i ||f(x_i) - y_i||^2``.

    Integer labels are one-hot encoded (regression on class indicators); a target of shape
    (n,) is compared with a single-output network's (n, 1) outputs.
    """
    if jnp.issubdtype(y.dtype, jnp.integer):
        y = jax.nn.one_hot(y, outputs.shape[-1])
    elif y.ndim == outputs.ndim - 1:
        y = y[..., None]
    return 0.5 * jnp.mean(jnp.sum((outputs - y) ** 2, axis=-1))


def accuracy(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of samples whose arg-max output is the label (0 for real-valued targets)."""
    if not jnp.issubdtype(y.dtype, jnp.integer):
        return jnp.zeros(())
    return jnp.mean(jnp.argmax(outputs, axis=-1) == y)


LOSSES: dict[str, Callable] = {"cross_entropy": cross_entropy, "mse": mse}
"""The losses known by name."""


def resolve(loss: str | Callable, name: str = "loss") -> Callable:
    """The loss function for a name in `LOSSES` or a callable ``loss(outputs, y)``.

    Args:
      loss: ``"cross_entropy"``, ``"mse"`` or a function ``loss(outputs, y) -> scalar``.
      name: the argument's name in the caller, for the error message.

    Returns:
      The function ``loss(outputs, y) -> scalar``.

    Raises:
      ValueError: ``loss`` is neither a known name nor callable.
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(
                f"{name}: expected one of {sorted(LOSSES)} or a callable, got {loss!r}"
            )
        return LOSSES[loss]
    if not callable(loss):
        raise ValueError(
            f"{name}: expected one of {sorted(LOSSES)} or a callable loss(outputs, y), "
            f"got {type(loss).__name__}"
        )
    return loss
