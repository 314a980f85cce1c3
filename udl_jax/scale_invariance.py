"""Scale invariance from batch norm, and why weight decay then acts as a learning-rate schedule.

In training mode batch norm divides each pre-activation by its standard deviation over the
batch, so the loss does not change when the affine layer before it, ``w = (W, b)``, is
multiplied by any ``c > 0``: ``L(c w) = L(w)``. Differentiating this identity in ``c`` and in
``w`` gives the two facts everything here rests on:

    <grad L(w), w> = 0          (the gradient is orthogonal to the weights)
    grad L(c w) = grad L(w) / c (larger weights, proportionally smaller gradients)

So the norm of ``w`` changes nothing the network computes, only how far a step turns it: a
step ``-eta grad L(w)`` turns ``w / |w|`` by about ``eta |grad L(w / |w|)| / |w|^2``, and
``eta / |w|^2`` is the *effective learning rate* (van Laarhoven 2017). Weight decay shrinks
``|w|`` and so raises the effective learning rate. This module makes that exact and measurable:

- `growth_factor`, `exponential_schedule`, `sgd_weight_decay`, `sgd_exponential_lr`,
  `weight_decay_vs_exponential_lr`: (stochastic) gradient descent with weight decay ``lambda``
  and a constant learning rate ``eta``, with or without heavy-ball momentum ``gamma``, is, step
  by step, the same descent *without* weight decay and with the exponentially growing learning
  rate ``eta * alpha^(-2t-1)``; the iterates are related by ``w~_t = alpha^(-t) w_t``
  (Li & Arora 2020).
- `equilibrium_sq_norm`, `equilibrium_angular_update`, `effective_learning_rate`,
  `track_norms`: with weight decay the norm settles where the outward push of the gradient
  steps balances the decay, and the effective learning rate and the angle turned per step then
  settle at values set by ``eta * lambda`` (van Laarhoven 2017; Li, Lyu & Arora 2020;
  Wan et al. 2021). For SGD without momentum and ``G = |grad L(w / |w|)|``::

      |w|^4 = eta G^2 / (lambda (2 - eta lambda)),
      eta / |w|^2 = sqrt(eta lambda (2 - eta lambda)) / G,

  and with momentum ``gamma`` the weights turn by ``sqrt(2 eta lambda / (1 + gamma))`` radians
  per step (root mean square), whatever the loss.

Optimizers are optax transformations; the only things written out by hand are the ones the book
teaches: the growth factor, the schedule, the matching initial momentum and the equilibria.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import train

__all__ = [
    "hidden_layers_mask",
    "rescale",
    "sq_norm",
    "Defects",
    "invariance_defects",
    "growth_factor",
    "exponential_schedule",
    "sgd_weight_decay",
    "sgd_exponential_lr",
    "EquivalenceRun",
    "weight_decay_vs_exponential_lr",
    "effective_learning_rate",
    "equilibrium_sq_norm",
    "equilibrium_angular_update",
    "NormTrajectory",
    "track_norms",
]

MASKS = ("hidden", "all")
"""Named parameter selections: ``"hidden"`` (`hidden_layers_mask`) or ``"all"`` parameters."""


# ---------------------------------------------------------------------------- which weights


def hidden_layers_mask(params) -> Any:
    """Select the hidden affine layers of a `udl_jax.models.MLP`: ``layers[i]``, i < last.

    In an MLP with ``normalization="batch"`` each of these layers feeds a batch norm, so each
    one's ``(w, b)`` is scale invariant (in training mode, exactly for ``norm_epsilon=0``). The
    last layer and batch norm's own ``scale`` and ``bias`` are not selected. Without batch norm
    the same leaves are selected, for comparison, though nothing is then scale invariant.

    Args:
      params: the `nnx.Param` state of an MLP (``models.functional(model)[1]``).

    Returns:
      A pytree like ``params`` with a Python bool at every leaf (usable as an optax mask).
    """
    try:
        n_layers = len(params["layers"])
    except (KeyError, TypeError) as err:
        raise ValueError(
            "params: expected the parameters of a udl_jax.models.MLP (with a 'layers' entry), "
            f"got {type(params).__name__}"
        ) from err

    def select(path, _):
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        return len(keys) > 1 and keys[0] == "layers" and int(keys[1]) < n_layers - 1

    return jax.tree_util.tree_map_with_path(select, params)


def _all_leaves(params) -> Any:
    return jax.tree.map(lambda _: True, params)


def _mask_fn(mask) -> Callable:
    if isinstance(mask, str):
        if mask not in MASKS:
            raise ValueError(f"mask: expected one of {MASKS} or a function of params, got {mask!r}")
        return hidden_layers_mask if mask == "hidden" else _all_leaves
    if callable(mask):
        return mask
    raise ValueError(f"mask: expected one of {MASKS} or a function of params, got {mask!r}")


def _not(mask_fn: Callable) -> Callable:
    return lambda p: jax.tree.map(lambda m: not m, mask_fn(p))


def rescale(params, c, mask="hidden"):
    """Multiply the selected leaves of ``params`` by ``c``; the others are returned unchanged.

    Args:
      params: a parameter pytree.
      c: a scalar (may be traced).
      mask: ``"hidden"``, ``"all"``, or a function ``params -> pytree of bools``.
    """
    m = _mask_fn(mask)(params)
    return jax.tree.map(lambda p, sel: p * c if sel else p, params, m)


def _sq_norm(tree) -> jax.Array:
    return optax.tree_utils.tree_norm(tree, squared=True)


def sq_norm(params, mask="hidden") -> jax.Array:
    """Squared Euclidean norm of the selected leaves of ``params`` (see `rescale` for ``mask``)."""
    return _sq_norm(_select(params, _mask_fn(mask)(params)))


def _select(tree, mask_tree):
    """The selected leaves of ``tree`` as a list (static selection)."""
    return [a for a, m in zip(jax.tree.leaves(tree), jax.tree.leaves(mask_tree), strict=True) if m]


# ------------------------------------------------------------------- measuring the invariance


class Defects(NamedTuple):
    """How far a loss is from scale invariant in the selected weights ``w`` (all >= 0; all 0 for
    an exactly scale-invariant loss).

    Attributes:
      loss_change: ``max_c |L(c w) - L(w)| / |L(w)|`` over the scales tried.
      gradient_cosine: ``|<grad_w L, w>| / (|grad_w L| |w|)``, the cosine between the gradient
        and the weights.
      gradient_scaling: ``max_c |c grad_w L(c w) - grad_w L(w)| / |grad_w L(w)|``.
    """

    loss_change: float
    gradient_cosine: float
    gradient_scaling: float


def invariance_defects(
    loss_fn: Callable, params, *, mask="hidden", scales: Sequence[float] = (0.1, 10.0)
) -> Defects:
    """Test ``L(c w) = L(w)`` and its two consequences at ``params``.

    Args:
      loss_fn: scalar function of ``params`` (for batch norm: evaluated in training mode).
      params: where to test.
      mask: which leaves form ``w`` (see `rescale`); the others are held fixed.
      scales: the factors ``c > 0`` to try.

    Returns:
      `Defects`, as Python floats.
    """
    try:
        scales = [float(c) for c in scales]
    except (TypeError, ValueError) as err:
        raise ValueError(f"scales: expected positive numbers, got {scales!r}") from err
    if not scales or not all(math.isfinite(c) and c > 0 for c in scales):
        raise ValueError(f"scales: expected positive numbers, got {scales!r}")
    mask_fn = _mask_fn(mask)
    if not any(jax.tree.leaves(mask_fn(params))):
        raise ValueError("mask: selects no parameters")
    out = _defects_fn(loss_fn, mask_fn)(params, jnp.asarray(scales))
    loss0, losses, inner, g_sq, w_sq, diff_sq = (jax.device_get(a) for a in out)
    return Defects(
        float(abs(losses - loss0).max() / abs(loss0)),
        float(abs(inner) / math.sqrt(g_sq * w_sq)),
        float(math.sqrt(diff_sq.max() / g_sq)),
    )


@functools.lru_cache(maxsize=16)
def _defects_fn(loss_fn, mask_fn):
    vg = jax.value_and_grad(loss_fn)

    @jax.jit
    def defects(params, scales):
        mask_tree = mask_fn(params)
        loss0, g0 = vg(params)
        w_sel, g_sel = _select(params, mask_tree), _select(g0, mask_tree)
        inner = sum(jnp.vdot(g, w) for g, w in zip(g_sel, w_sel, strict=True))

        def at_scale(c):
            loss_c, g_c = vg(rescale(params, c, lambda _: mask_tree))
            diff = [c * a - b for a, b in zip(_select(g_c, mask_tree), g_sel, strict=True)]
            return loss_c, sum(jnp.vdot(d, d) for d in diff)

        losses, diff_sq = jax.lax.map(at_scale, scales)
        return loss0, losses, inner, _sq_norm(g_sel), _sq_norm(w_sel), diff_sq

    return defects


# ---------------------------------------------------- weight decay = exponential learning rate


def _check_hparams(learning_rate, weight_decay, momentum):
    for name, v, ok, want in (
        ("learning_rate", learning_rate, lambda x: x > 0, "> 0"),
        ("weight_decay", weight_decay, lambda x: x >= 0, ">= 0"),
        ("momentum", momentum, lambda x: 0 <= x < 1, "in [0, 1)"),
    ):
        if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)):
            raise ValueError(f"{name}: expected a real number {want}, got {v!r}")
        if not ok(v):
            raise ValueError(f"{name}: expected a real number {want}, got {v!r}")
    return float(learning_rate), float(weight_decay), float(momentum)


def _growth(learning_rate, weight_decay, momentum):
    """`growth_factor` without checks, for traced hyperparameters."""
    el = learning_rate * weight_decay
    disc = (1.0 - momentum) ** 2 - el * (2.0 * (1.0 + momentum) - el)  # b^2 - 4 gamma, stably
    return 0.5 * (1.0 + momentum - el + jnp.sqrt(jnp.maximum(disc, 0.0)))


def growth_factor(learning_rate: float, weight_decay: float, momentum: float = 0.0) -> float:
    """The factor ``alpha`` by which weight decay shrinks scale-invariant weights per step.

    Heavy-ball SGD with weight decay, ``v_t = gamma v_{t-1} + grad L(w_t) + lambda w_t``,
    ``w_{t+1} = w_t - eta v_t``, is the recursion
    ``w_{t+1} = (1 + gamma - eta lambda) w_t - gamma w_{t-1} - eta grad L(w_t)``. Substituting
    ``w_t = alpha^t w~_t`` and using ``grad L(alpha^t w~) = alpha^(-t) grad L(w~)`` turns it into
    heavy ball *without* weight decay, with momentum ``gamma`` and learning rate
    ``eta alpha^(-2t-1)``, exactly when ``alpha + gamma / alpha = 1 + gamma - eta lambda``,
    i.e. ``alpha`` is a root of ``x^2 - (1 + gamma - eta lambda) x + gamma = 0`` (Li & Arora
    2020). We take the larger root, about ``1 - eta lambda / (1 - gamma)``; without momentum it
    is ``1 - eta lambda``.

    Args:
      learning_rate: eta > 0.
      weight_decay: lambda >= 0.
      momentum: gamma in [0, 1).

    Returns:
      alpha in (0, 1] as a float. Raises ValueError when the roots are not real, which happens
      for ``eta lambda > (1 - sqrt(gamma))^2``.
    """
    eta, lam, gamma = _check_hparams(learning_rate, weight_decay, momentum)
    b = 1.0 + gamma - eta * lam
    disc = (1.0 - gamma) ** 2 - eta * lam * (2.0 * (1.0 + gamma) - eta * lam)  # b^2 - 4 gamma
    if b <= 0 or disc < 0:
        raise ValueError(
            f"weight_decay: eta * lambda = {eta * lam:.4g} must be below "
            f"(1 - sqrt(momentum))^2 = {(1 - math.sqrt(gamma)) ** 2:.4g} for a real growth "
            "factor; lower the learning rate or the weight decay"
        )
    return 0.5 * (b + math.sqrt(disc))


def exponential_schedule(
    learning_rate: float, weight_decay: float, momentum: float = 0.0
) -> optax.Schedule:
    """The learning rate ``eta_t = eta alpha^(-2t-1)`` that replaces weight decay (an optax
    schedule of the step count t = 0, 1, ...; ``alpha`` from `growth_factor`)."""
    alpha = growth_factor(learning_rate, weight_decay, momentum)
    return lambda count: learning_rate * jnp.power(alpha, -2.0 * count - 1.0)


def sgd_weight_decay(learning_rate, weight_decay, momentum=0.0, mask: str = "all"):
    """Heavy-ball SGD with L2 weight decay on the ``mask`` leaves (an optax factory).

    ``v_t = gamma v_{t-1} + g_t + lambda w_t`` (on selected leaves), ``w_{t+1} = w_t - eta v_t``:
    ``optax.add_decayed_weights`` then ``optax.sgd``, the convention of PyTorch's SGD. Usable as
    ``train.fit(..., optimizer=sgd_weight_decay, optimizer_kwargs={"weight_decay": ...,
    "momentum": ...})``; pass ``mask`` as a string there (optax's ``inject_hyperparams`` would
    take a function for a schedule).

    Args:
      learning_rate, weight_decay, momentum: eta, lambda, gamma (numbers or traced arrays).
      mask: ``"all"``, ``"hidden"``, or a function ``params -> pytree of bools``.
    """
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=_mask_fn(mask)),
        optax.sgd(learning_rate, momentum=momentum),
    )


def sgd_exponential_lr(learning_rate, weight_decay, momentum=0.0, mask: str = "hidden"):
    """Heavy-ball SGD without weight decay whose learning rate grows as ``eta alpha^(-2t-1)`` on
    the ``mask`` leaves and stays ``eta`` on the others (an optax factory).

    On a loss that is scale invariant in the selected leaves this is, step by step, the same
    run as ``sgd_weight_decay(eta, lambda, gamma, mask)``, rescaled by ``alpha^(-t)`` (see
    `growth_factor`; unselected leaves get no weight decay in either). The velocity is
    ``v_t = gamma v_{t-1} + g_t`` and the step ``-eta_t v_t``, as in ``optax.sgd`` with a
    schedule. To match from the first step the velocity must start at
    ``(alpha - 1) / (alpha eta) w_0`` rather than 0 (`weight_decay_vs_exponential_lr` does
    this). Started at 0, with momentum, the exponential run misses a displacement of about
    ``gamma (1 - alpha) / (1 - gamma)`` times ``w_0``, spread over its first
    ``1 / (1 - gamma)`` steps, and the two runs then differ by more than rounding.

    Args:
      learning_rate, weight_decay, momentum: eta, lambda, gamma (numbers or traced arrays;
        ``eta lambda <= (1 - sqrt(gamma))^2`` for a real ``alpha``).
      mask: ``"hidden"`` (default), ``"all"``, or a function ``params -> pytree of bools``.
    """
    alpha = _growth(learning_rate, weight_decay, momentum)
    selected = _mask_fn(mask)

    def schedule(count):
        return -learning_rate * alpha ** (-2.0 * count - 1.0)

    return optax.chain(
        optax.trace(decay=momentum),
        optax.masked(optax.scale_by_schedule(schedule), selected),
        optax.masked(optax.scale(-learning_rate), _not(selected)),
    )


class EquivalenceRun(NamedTuple):
    """Two runs from the same start: with weight decay, and with the exponential schedule.

    Attributes:
      growth: ``alpha``.
      learning_rate: (steps,) the exponential run's learning rate on the selected leaves.
      distance: (steps + 1,) ``|R_t(w_t) - w~_t| / |w~_t|`` over all parameters, where
        ``w_t`` is the weight-decay run, ``w~_t`` the exponential one, and ``R_t`` multiplies
        the selected leaves by ``alpha^(-t)``: zero for an exactly scale-invariant loss.
      loss_weight_decay, loss_exponential: (steps + 1,) the loss along each run.
      sq_norm_weight_decay, sq_norm_exponential: (steps + 1,) squared norm of the selected
        leaves along each run.
    """

    growth: float
    learning_rate: jax.Array
    distance: jax.Array
    loss_weight_decay: jax.Array
    loss_exponential: jax.Array
    sq_norm_weight_decay: jax.Array
    sq_norm_exponential: jax.Array


def weight_decay_vs_exponential_lr(
    loss_fn: Callable,
    params,
    *,
    learning_rate: float,
    weight_decay: float,
    momentum: float = 0.0,
    steps: int,
    mask="hidden",
    match_velocity: bool = True,
) -> EquivalenceRun:
    """Run `sgd_weight_decay` and `sgd_exponential_lr` side by side on a deterministic loss.

    Both start at ``params`` with zero velocity, except that with ``match_velocity`` the
    exponential run's velocity starts at ``(alpha - 1) / (alpha eta) w_0`` on the selected
    leaves: the image of the weight-decay run's zero velocity under ``w~_t = alpha^(-t) w_t``
    (the step ``w~_0 - w~_{-1}`` must be ``(1 - alpha) w_0``, not 0). Without momentum the
    velocity does not carry over and this changes nothing. Run under ``jax.enable_x64(True)``
    with float64 ``params`` to see the equivalence to rounding error.

    Args:
      loss_fn: scalar function of ``params`` (e.g. a full-batch loss, BN in training mode).
      params: the common initial point.
      learning_rate, weight_decay, momentum: eta, lambda, gamma.
      steps: number of steps.
      mask: the leaves that get weight decay, or the exponential schedule: ``"hidden"``,
        ``"all"``, or a function ``params -> pytree of bools``.
      match_velocity: start the exponential run's velocity as above (else at 0).

    Returns:
      `EquivalenceRun`.
    """
    eta, lam, gamma = _check_hparams(learning_rate, weight_decay, momentum)
    alpha = growth_factor(eta, lam, gamma)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    mask_fn = _mask_fn(mask)
    run = _equivalence_fn(loss_fn, mask_fn, steps, bool(match_velocity))
    out = run(params, eta, lam, gamma, alpha)
    return EquivalenceRun(alpha, *out)


@functools.lru_cache(maxsize=16)
def _equivalence_fn(loss_fn, mask_fn, steps, match_velocity):
    @jax.jit
    def run(params, eta, lam, gamma, alpha):
        mask_tree = mask_fn(params)
        tx_wd = sgd_weight_decay(eta, lam, gamma, mask=lambda _: mask_tree)
        tx_exp = sgd_exponential_lr(eta, lam, gamma, mask=lambda _: mask_tree)
        s_wd, s_exp = tx_wd.init(params), tx_exp.init(params)
        if match_velocity:
            v0 = jax.tree.map(
                lambda p, m: (alpha - 1.0) / (alpha * eta) * p if m else jnp.zeros_like(p),
                params,
                mask_tree,
            )
            s_exp = (s_exp[0]._replace(trace=v0), *s_exp[1:])
        vg = jax.value_and_grad(loss_fn)

        def sel_sq(p):
            return sum(jnp.vdot(a, a) for a in _select(p, mask_tree))

        def measure(p_wd, p_exp, t):
            mapped = rescale(p_wd, alpha ** (-t), lambda _: mask_tree)
            diff = jax.tree.map(lambda a, b: a - b, mapped, p_exp)
            return jnp.sqrt(_sq_norm(diff) / _sq_norm(p_exp)), sel_sq(p_wd), sel_sq(p_exp)

        def step(carry, t):
            p_wd, s_wd, p_exp, s_exp = carry
            l_wd, g_wd = vg(p_wd)
            l_exp, g_exp = vg(p_exp)
            dist, n_wd, n_exp = measure(p_wd, p_exp, t)
            u, s_wd = tx_wd.update(g_wd, s_wd, p_wd)
            p_wd = optax.apply_updates(p_wd, u)
            u, s_exp = tx_exp.update(g_exp, s_exp, p_exp)
            p_exp = optax.apply_updates(p_exp, u)
            lr = eta * alpha ** (-2.0 * t - 1.0)
            return (p_wd, s_wd, p_exp, s_exp), (lr, dist, l_wd, l_exp, n_wd, n_exp)

        dtype = jax.tree.leaves(params)[0].dtype
        ts = jnp.arange(steps, dtype=dtype)
        (p_wd, _, p_exp, _), hist = jax.lax.scan(step, (params, s_wd, params, s_exp), ts)
        lr, dist, l_wd, l_exp, n_wd, n_exp = hist
        d_last, nw_last, ne_last = measure(p_wd, p_exp, jnp.asarray(steps, dtype))

        def app(a, last):
            return jnp.concatenate([a, last[None]])

        return (
            lr,
            app(dist, d_last),
            app(l_wd, loss_fn(p_wd)),
            app(l_exp, loss_fn(p_exp)),
            app(n_wd, nw_last),
            app(n_exp, ne_last),
        )

    return run


# ------------------------------------------------------------------------ the equilibrium


def effective_learning_rate(learning_rate, weight_sq_norm):
    """``eta / |w|^2``: the step size that the direction ``w / |w|`` of scale-invariant weights
    sees (van Laarhoven 2017): a step ``-eta grad L(w)`` moves ``w / |w|`` by
    ``-(eta / |w|^2) grad L(w / |w|)`` to first order. Works on numbers and arrays."""
    return learning_rate / weight_sq_norm


def equilibrium_sq_norm(learning_rate, weight_decay, unit_grad_sq_norm):
    """The squared norm at which SGD with weight decay (no momentum) holds scale-invariant
    weights.

    With ``<g, w> = 0`` one step ``w' = (1 - eta lambda) w - eta g`` gives
    ``|w'|^2 = (1 - eta lambda)^2 |w|^2 + eta^2 |g|^2``, and ``|g|^2 = G^2 / |w|^2`` where
    ``G = |grad L(w / |w|)|`` is the gradient at unit norm. The norm stops changing (on
    average, for stochastic gradients: ``G^2`` is then the mean of ``|g|^2 |w|^2``) where::

        |w|^4 = eta G^2 / (lambda (2 - eta lambda))       (about eta G^2 / (2 lambda)),

    and there the effective learning rate is ``eta / |w|^2 = sqrt(eta lambda (2 - eta lambda))
    / G``: set by the product ``eta lambda`` (the intrinsic learning rate of Li, Lyu & Arora
    2020) and by the loss, not by the initial norm. Near it, ``|w|^2`` relaxes by a factor
    about ``1 - 4 eta lambda`` per step.

    Args:
      learning_rate: eta.
      weight_decay: lambda > 0.
      unit_grad_sq_norm: ``G^2``.

    Returns:
      ``|w|^2`` at equilibrium (a float for floats, an array for arrays).
    """
    lam_eta = learning_rate * weight_decay
    return (learning_rate * unit_grad_sq_norm / (weight_decay * (2.0 - lam_eta))) ** 0.5


def equilibrium_angular_update(learning_rate: float, weight_decay: float, momentum: float = 0.0):
    """Root-mean-square relative step ``|w_{t+1} - w_t| / |w_t|`` once the norm has settled.

    Write ``D_t = w_{t+1} - w_t``, ``N = E|w|^2``, ``A = E<w_t, D_t>``, ``D = E|D_t|^2``.
    ``|w_{t+1}|^2 = |w_t|^2 + 2 <w_t, D_t> + |D_t|^2`` is stationary iff ``2A + D = 0``; heavy
    ball gives ``D_t = gamma D_{t-1} - eta (g_t + lambda w_t)`` and, with ``<g_t, w_t> = 0``,
    ``A = gamma (A + D) - eta lambda N``. Together: ``D / N = 2 eta lambda / (1 + gamma)``
    (Wan et al. 2021; for gamma = 0 directly from `equilibrium_sq_norm`). Nothing about the loss
    enters: the weights turn by ``sqrt(2 eta lambda / (1 + gamma))`` radians per step.
    """
    eta, lam, gamma = _check_hparams(learning_rate, weight_decay, momentum)
    return math.sqrt(2.0 * eta * lam / (1.0 + gamma))


class NormTrajectory(NamedTuple):
    """Per-step norms of weight groups along a run (see `track_norms`).

    Attributes:
      sq_norm: (steps + 1, G) ``|w_t|^2`` of each group, t = 0 ... steps.
      sq_grad: (steps, G) ``|g_t|^2``, the squared norm of each group's (minibatch) gradient.
      sq_step: (steps, G) ``|w_{t+1} - w_t|^2``.
      loss: (steps,) the minibatch loss at each step.
    """

    sq_norm: jax.Array
    sq_grad: jax.Array
    sq_step: jax.Array
    loss: jax.Array


def track_norms(
    loss_fn: Callable,
    params,
    tx: optax.GradientTransformation,
    *,
    steps: int,
    key: jax.Array,
    groups: Callable,
) -> NormTrajectory:
    """Train with ``tx`` and record the norms of weight groups, their gradients and their steps.

    Pure and traceable (one ``lax.scan``): wrap it in ``jax.jit``, and in ``jax.vmap`` to run
    several initializations or weight decays at once.

    Args:
      loss_fn: ``loss_fn(params, key)``, the loss on the minibatch that ``key`` picks.
      params: initial parameters.
      tx: an optax transformation (e.g. ``sgd_weight_decay(eta, lam)``).
      steps: number of steps (a Python int).
      key: PRNG key, split into one key per step.
      groups: ``groups(tree) -> list of pytrees``, e.g.
        ``lambda p: [p["layers"][0], p["layers"][1]]``; applied to parameters and gradients.

    Returns:
      `NormTrajectory`.
    """

    def norms(tree):
        return jnp.stack([_sq_norm(g) for g in groups(tree)])

    def record(p, g, p_new):
        return norms(p), norms(g), norms(jax.tree.map(lambda a, b: a - b, p_new, p))

    p_last, _, loss, (sq_norm, sq_grad, sq_step) = train.optimize(
        lambda p, k: (loss_fn(p, k), None),
        tx,
        params,
        xs=jax.random.split(key, steps),
        record=record,
    )
    sq_norm = jnp.concatenate([sq_norm, norms(p_last)[None]])
    return NormTrajectory(sq_norm, sq_grad, sq_step, loss)
