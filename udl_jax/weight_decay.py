"""Weight decay and L2 regularization under Adam: the same for SGD, different for Adam.

For plain gradient descent, adding ``(lambda / 2) |w|^2`` to the loss (L2 regularization) and
shrinking the weights by ``(1 - eta lambda)`` at every step (weight decay) are the same update.
Adam divides each gradient coordinate by a running root mean square of its past values, and
Loshchilov & Hutter (2019) point out that the two then part ways:

- **Adam + L2** adds ``lambda w`` to the gradient *before* Adam's normalization, so the decay
  is normalized too: coordinates with large past gradients are decayed less, and with no loss
  gradient at all the weights move by about ``eta`` per step, whatever ``lambda`` is;
- **AdamW** (decoupled weight decay) shrinks the weights *after* it: ``w <- w - eta (adam(g) +
  lambda w)``, a decay by the factor ``(1 - eta lambda)`` per step whatever the gradients.

`adam_decay` builds both (and their sum) from optax's own pieces as one optimizer factory with
two numeric hyperparameters, so `udl_jax.train.fit_many` can train Adam, Adam + L2 and AdamW
side by side in one compiled, vectorized run; `zero_loss_run` applies any optax optimizer to a
loss that is identically zero, where only the decay acts.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import train

__all__ = ["adam_decay", "zero_loss_run"]


def adam_decay(
    learning_rate,
    l2: float = 0.0,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam with an L2 term in the gradient and decoupled weight decay, both optional.

    The update is ``-eta (adam(g + l2 w) + weight_decay w)``:

    - ``l2=0``: exactly ``optax.adamw(eta, b1, b2, eps, weight_decay=weight_decay)``;
    - ``weight_decay=0``: exactly ``optax.chain(optax.add_decayed_weights(l2),
      optax.adam(eta, b1, b2, eps))``, Adam on the loss ``L + (l2 / 2) |w|^2``;
    - both 0: ``optax.adam``.

    Args:
      learning_rate: eta, or an optax schedule.
      l2: the L2 coefficient added to the gradient before Adam's normalization.
      weight_decay: the decoupled decay, applied after it (optax's and PyTorch's convention:
        the weights shrink by ``eta * weight_decay`` of themselves per step).
      b1, b2, eps: Adam's hyperparameters.

    Returns:
      An optax `GradientTransformation`. Every leaf of the parameters is decayed.
    """
    return optax.chain(
        optax.add_decayed_weights(l2),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def zero_loss_run(factory: Callable[..., optax.GradientTransformation], params, steps: int,
                  **hyperparameters) -> np.ndarray:
    """Run an optimizer on a loss that is identically zero; return the weights' norms.

    With zero loss gradients only the regularization moves the weights, which isolates it:
    AdamW shrinks them by exactly ``(1 - eta lambda)`` per step, Adam + L2 by about ``eta`` per
    coordinate per step.

    Args:
      factory: an optax optimizer factory, e.g. `adam_decay` or ``optax.adamw``.
      params: the starting parameter pytree.
      steps: number of steps.
      **hyperparameters: the factory's arguments (``learning_rate=...``, ...). Numbers are
        traced, so runs that differ only in them share one compilation.

    Returns:
      The Euclidean norm of all parameters before each step and after the last, a float64
      NumPy array of shape ``(steps + 1,)``.
    """
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if not callable(factory) or isinstance(factory, optax.GradientTransformation):
        raise TypeError(
            "factory: expected an optax optimizer factory such as optax.adamw (not an "
            f"optimizer instance), got {type(factory).__name__}"
        )
    return np.asarray(_zero_loss_norms(factory, params, int(steps), hyperparameters), np.float64)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _zero_loss_norms(factory, params, steps, hyperparameters):
    optimizer = optax.inject_hyperparams(factory)(**hyperparameters)

    def zero_loss(p):  # gradient zero; records the norm before each step
        return jnp.zeros(()), optax.tree_utils.tree_norm(p)

    final, _, _, norms = train.optimize(zero_loss, optimizer, params, steps)
    return jnp.concatenate([norms, optax.tree_utils.tree_norm(final)[None]])
