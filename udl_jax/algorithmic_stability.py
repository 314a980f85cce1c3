"""Algorithmic stability measured directly, its bounds, and the coherence of gradients.

An algorithm generalizes in expectation exactly as much as it is *stable*: replace one training
example and see how much the trained model's loss changes (Bousquet & Elisseeff 2002). Hardt,
Recht & Singer (2016) bound this change for stochastic gradient methods by following two runs
on neighbouring data sets with the same randomness: the runs only part when the replaced example
is drawn, and in between a convex, smooth loss never pushes them further apart. Here we run the
same experiment on real networks and compare:

- `replace_one`, `coupled_fits`: a data set and its neighbour, trained by `udl_jax.train.fit`
  with one key, hence the same minibatch indices at every step ("the same randomness");
- `loss_divergence`, `parameter_distance`: how far the coupled runs are apart, in loss on
  test points (the quantity uniform stability bounds) and in parameters; `measure_stability`
  summarizes a `coupled_fits` result with both and the base run's generalization gap;
- `convex_stability_bound` (their Theorem 3.8) and `nonconvex_stability_bound` (their
  Theorem 3.12), and `softmax_regression_constants` for the Lipschitz and smoothness
  constants of an affine softmax classifier; `plug_in_constants` measures them at a trained
  network, where they are not known in closed form;
- `per_example_gradients`, `coherence`: the coherence of per-example gradients of Chatterjee &
  Zielinski (2022), ``alpha = ||E g_i||^2 / E ||g_i||^2`` and the m-coherence ``m alpha``: 1 for
  orthogonal gradients of equal size, m when all m gradients are equal. Coherent gradients
  are their proposed mechanism of stability: a step helps many examples at once, so no single
  example moves the model much.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from . import hessian, models, train
from .data import Dataset

__all__ = [
    "replace_one",
    "CoupledRuns",
    "coupled_fits",
    "loss_divergence",
    "parameter_distance",
    "measure_stability",
    "StabilityMeasurement",
    "softmax_regression_constants",
    "plug_in_constants",
    "convex_stability_bound",
    "nonconvex_stability_bound",
    "per_example_gradients",
    "coherence",
]


# ------------------------------------------------------------------------- coupled runs


def replace_one(data: Dataset, index: int, x_new, y_new) -> Dataset:
    """The neighbouring data set ``S^(i)``: training example ``index`` replaced by ``(x_new,
    y_new)``; the test set and every other example are unchanged.

    Raises:
      ValueError: naming the argument, if ``index`` is out of range or ``x_new`` has the
        wrong shape.
    """
    n = len(data.x)
    if not (isinstance(index, (int, np.integer)) and 0 <= index < n):
        raise ValueError(f"index: expected an int in [0, {n}), got {index!r}")
    x_new = np.asarray(x_new, dtype=data.x.dtype)
    if x_new.shape != data.x.shape[1:]:
        raise ValueError(f"x_new: expected shape {data.x.shape[1:]}, got {x_new.shape}")
    x, y = data.x.copy(), data.y.copy()
    x[index], y[index] = x_new, y_new
    return data.replace(x=x, y=y)


@dataclasses.dataclass(frozen=True)
class CoupledRuns:
    """Result of `coupled_fits`.

    Attributes:
      base: ``(model, history)`` trained on the original data ``S``.
      replaced: one ``(model, history)`` per replaced index, trained on ``S^(i)``.
      indices: the replaced training indices.
    """

    base: tuple
    replaced: list
    indices: np.ndarray


def coupled_fits(
    make_model: Callable[[], nnx.Module],
    data: Dataset,
    *,
    indices: Sequence[int],
    x_new,
    y_new,
    key: jax.Array,
    **fit_kwargs,
) -> CoupledRuns:
    """Train on ``S`` and on each neighbour ``S^(i)`` with the same initialization and key.

    `udl_jax.train.fit` draws the minibatch indices from ``key`` alone, so runs with one key
    and one training-set size see the same indices at every step: the runs on ``S`` and on
    ``S^(i)`` differ only at the steps whose minibatch contains ``i``. This is the coupling of
    Hardt et al. (2016). Test outputs are recorded at every log (``record_outputs=True``), so
    `loss_divergence` can follow the runs apart.

    Args:
      make_model: returns a fresh model, the same initialization at every call (e.g.
        ``lambda: models.MLP(widths, rngs=nnx.Rngs(seed))``).
      data: the training set ``S`` and the test set on which divergence is measured.
      indices: k training indices to replace, one neighbour each.
      x_new: (k, d) replacement inputs; y_new: (k,) their labels. Take them from data the
        runs never see otherwise (e.g. held out from the test set).
      key: the one PRNG key of every run.
      **fit_kwargs: passed to `udl_jax.train.fit` (steps, learning_rate, optimizer,
        batch_size, log_every, ...).

    Returns:
      A `CoupledRuns`.
    """
    indices = np.asarray(indices)
    x_new, y_new = np.asarray(x_new), np.asarray(y_new)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(f"indices: expected a nonempty 1D sequence, got shape {indices.shape}")
    if len(x_new) != len(indices) or len(y_new) != len(indices):
        raise ValueError(
            f"x_new, y_new: expected {len(indices)} replacements (one per index), got "
            f"{len(x_new)} and {len(y_new)}"
        )
    if fit_kwargs.get("record_outputs") is False:
        raise ValueError("record_outputs: coupled_fits records the test outputs; leave it out")
    fit_kwargs = {"progress": False, **fit_kwargs, "record_outputs": True}
    base = train.fit(make_model(), data, key=key, **fit_kwargs)
    replaced = [
        train.fit(make_model(), replace_one(data, int(i), xi, yi), key=key, **fit_kwargs)
        for i, xi, yi in zip(indices, x_new, y_new, strict=True)
    ]
    return CoupledRuns(base, replaced, indices)


def _per_example_loss(outputs, y, loss):
    if loss == "cross_entropy":
        y = jnp.broadcast_to(jnp.asarray(y), outputs.shape[:-1])
        return optax.softmax_cross_entropy_with_integer_labels(outputs, y)
    if callable(loss):
        return loss(outputs, y)
    raise ValueError(f"loss: expected 'cross_entropy' or a per-example loss function, got "
                     f"{loss!r}")


def loss_divergence(outputs_a, outputs_b, y, loss: str | Callable = "cross_entropy"):
    """How far two runs' losses are apart on each test point, at each log.

    Uniform stability (Bousquet & Elisseeff 2002; Hardt et al. 2016, Definition 2.1) is the
    largest expected change ``|f(A(S); z) - f(A(S'); z)|`` over points ``z``; this returns
    its empirical counterparts over the test points.

    Args:
      outputs_a, outputs_b: (..., m, k) logits of the two runs (e.g. ``history.test_outputs``,
        shape (T, m, k)).
      y: (m,) integer labels.
      loss: ``"cross_entropy"``, or a function ``loss(outputs, y)`` returning per-point losses.

    Returns:
      ``(max_gap, mean_gap)``: NumPy arrays of shape ``outputs.shape[:-2]``, the largest and
      the mean over the m points of the absolute loss difference.
    """
    a, b = jnp.asarray(outputs_a), jnp.asarray(outputs_b)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"outputs_a, outputs_b: expected equal shapes (..., m, k), got "
                         f"{a.shape} and {b.shape}")
    if np.shape(y) != a.shape[-2:-1]:
        raise ValueError(f"y: expected shape {a.shape[-2:-1]}, got {np.shape(y)}")
    gap = jnp.abs(_per_example_loss(a, y, loss) - _per_example_loss(b, y, loss))
    return np.asarray(gap.max(-1)), np.asarray(gap.mean(-1))


def parameter_distance(model_a, model_b) -> float:
    """Euclidean distance between two models' parameters (all `nnx.Param` leaves)."""
    pa, pb = (ravel_pytree(nnx.state(m, nnx.Param))[0] for m in (model_a, model_b))
    if pa.shape != pb.shape:
        raise ValueError(f"model_a, model_b: expected one architecture, got {pa.shape[0]} and "
                         f"{pb.shape[0]} parameters")
    return float(jnp.linalg.norm(pa - pb))


class StabilityMeasurement(NamedTuple):
    """Result of `measure_stability`; T is the number of logs of the runs.

    Attributes:
      steps: (T,) the logged steps.
      eps: (T,) the largest loss difference over the test points (`loss_divergence`), mean
        over the neighbours: the empirical uniform stability of Hardt et al. (2016).
      dist: parameter distance between the final base model and each neighbour's
        (`parameter_distance`), mean over the neighbours.
      gap: (T,) generalization gap of the base run, test loss minus training loss.
      train, test: final training and test accuracy of the base run.
    """

    steps: np.ndarray
    eps: np.ndarray
    dist: float
    gap: np.ndarray
    train: float
    test: float


def measure_stability(runs: CoupledRuns, y_test) -> StabilityMeasurement:
    """How far coupled runs part, in loss and in parameters, beside the generalization gap.

    Uniform stability bounds the expected generalization gap (Bousquet & Elisseeff 2002; Hardt
    et al. 2016, Theorem 2.2), so the two are put side by side: the loss divergence of every
    neighbour ``S^(i)`` from the base run on ``S`` at each log, and the base run's gap.

    Args:
      runs: a `CoupledRuns` from `coupled_fits` (its histories hold the test outputs).
      y_test: (m,) labels of the test set the runs were evaluated on.

    Returns:
      A `StabilityMeasurement`.
    """
    if not isinstance(runs, CoupledRuns):
        raise ValueError(f"runs: expected a CoupledRuns, got {type(runs).__name__}")
    base, hist = runs.base
    eps = np.mean(
        [loss_divergence(hist.test_outputs, h.test_outputs, y_test)[0] for _, h in runs.replaced],
        axis=0,
    )
    dist = np.mean([parameter_distance(base, m) for m, _ in runs.replaced])
    return StabilityMeasurement(
        steps=hist.steps,
        eps=eps,
        dist=dist,
        gap=hist.test_loss - hist.train_loss,
        train=hist.train_accuracy[-1],
        test=hist.test_accuracy[-1],
    )


def plug_in_constants(model: nnx.Module, x, y, *, key: jax.Array) -> tuple[float, float]:
    """Lipschitz and smoothness constants of the cross-entropy, measured at a trained model.

    The stability bounds need the Lipschitz constant L of the per-example loss and the
    smoothness beta of the loss. For a network neither is known in closed form; at the
    model's parameters we measure the largest per-example gradient norm (``<= L``) and the
    top Hessian eigenvalue of the training loss (`udl_jax.hessian.sharpness`, ``<= beta``).
    Both are lower bounds on the true constants along the whole run, so a bound that uses
    them is optimistic (Hardt et al. 2016 state theirs for known constants).

    Args:
      model: the trained NNX model.
      x: (n, ...) training inputs; y: (n,) integer labels.
      key: PRNG key of the Lanczos start.

    Returns:
      ``(L, beta)``, floats.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x, y: expected equal nonzero lengths, got {len(x)} and {len(y)}")
    _, params, _ = models.functional(model)
    train_loss = models.loss_fn(model, x, y)
    g = per_example_gradients(models.loss_fn(model), params, x, y)
    lipschitz = float(jnp.linalg.norm(g, axis=1).max())
    return lipschitz, hessian.sharpness(train_loss, params, key=key)


# ----------------------------------------------------------------------------- bounds


def softmax_regression_constants(x) -> tuple[float, float]:
    """Lipschitz and smoothness constants of the cross-entropy of an affine softmax model.

    For logits ``W x + b`` the gradient with respect to ``(W, b)`` is ``(p - e_y) x~^T`` with
    ``x~ = (x, 1)``, of norm ``|p - e_y| |x~| <= sqrt(2) |x~|``; the Hessian is
    ``(diag p - p p^T) (x) x~ x~^T``, whose top eigenvalue is at most ``|x~|^2 / 2``
    (Gershgorin: row k of ``diag p - p p^T`` sums to ``2 p_k (1 - p_k) <= 1/2`` in absolute
    value). Over inputs with ``|x| <= R``: ``L = sqrt(2 (R^2 + 1))``, ``beta = (R^2 + 1) / 2``.

    Args:
      x: (n, d) every input the loss will see (training and replacement points).

    Returns:
      ``(L, beta)`` as floats.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x: expected a nonempty 2D array, got shape {x.shape}")
    r2 = float((x**2).sum(1).max()) + 1.0
    return float(np.sqrt(2 * r2)), r2 / 2


def _positive(v, name):
    if not (np.ndim(v) == 0 and np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {v!r}")
    return float(v)


def _sample_size(n):
    if not (isinstance(n, (int, np.integer)) and n >= 2):
        raise ValueError(f"n: expected an int >= 2 (training-set size), got {n!r}")
    return int(n)


def convex_stability_bound(step_sizes, lipschitz: float, n: int, smoothness: float | None = None):
    """Hardt, Recht & Singer (2016), Theorem 3.8: SGD on a convex, L-Lipschitz, beta-smooth
    loss with steps ``alpha_t <= 2 / beta`` is uniformly stable with::

        E |w_T - w'_T| <= (2 L / n) sum_{t<=T} alpha_t,
        eps_stab       <= (2 L^2 / n) sum_{t<=T} alpha_t,

    (the first inequality is the theorem's proof, the second its statement, via
    ``|f(w) - f(w')| <= L |w - w'|``). The proof holds unchanged for minibatches of any size
    drawn with replacement: a step on the examples other than i is a gradient step on a
    convex, at most beta-smooth function, hence non-expansive, and example i enters with
    weight (its count)/b, whose expectation is 1/n.

    Args:
      step_sizes: (T,) the step sizes ``alpha_1 ... alpha_T``.
      lipschitz: L; n: the training-set size.
      smoothness: beta; if given, the step sizes are checked against ``2 / beta``.

    Returns:
      ``(parameter_bound, loss_bound)``: (T,) arrays, the bounds after each step.
    """
    a = np.asarray(step_sizes, dtype=np.float64)
    if a.ndim != 1 or len(a) == 0 or np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"step_sizes: expected a nonempty 1D array of nonnegative numbers, "
                         f"got shape {a.shape}")
    lip, n = _positive(lipschitz, "lipschitz"), _sample_size(n)
    if smoothness is not None and a.max() > 2 / _positive(smoothness, "smoothness") * (1 + 1e-9):
        raise ValueError(
            f"step_sizes: the theorem needs alpha_t <= 2/beta = {2 / smoothness:.4g}, got a "
            f"step of {a.max():.4g}"
        )
    param = 2 * lip * np.cumsum(a) / n
    return param, lip * param


def nonconvex_stability_bound(steps, c: float, lipschitz: float, smoothness: float, n: int):
    """Hardt, Recht & Singer (2016), Theorem 3.12: SGD with one example per step, on a loss
    with values in [0, 1] that is L-Lipschitz and beta-smooth but not convex, with
    non-increasing steps ``alpha_t <= c / t``, is uniformly stable with

        eps_stab <= (1 + 1 / (beta c)) / (n - 1) * (2 c L^2)^(1 / (beta c + 1))
                    * T^(beta c / (beta c + 1)).

    Once ``beta c`` is large the bound grows almost like T / n, the number of epochs.

    Args:
      steps: T, a number or an array of step counts.
      c: the step-size constant; lipschitz: L; smoothness: beta; n: training-set size.

    Returns:
      The bound, a float or an array shaped like ``steps``.
    """
    t = np.asarray(steps, dtype=np.float64)
    if np.any(t < 1) or not np.all(np.isfinite(t)):
        raise ValueError(f"steps: expected step counts >= 1, got {steps!r}")
    c, lip = _positive(c, "c"), _positive(lipschitz, "lipschitz")
    bc, n = _positive(smoothness, "smoothness") * c, _sample_size(n)
    out = (1 + 1 / bc) / (n - 1) * (2 * c * lip**2) ** (1 / (bc + 1)) * t ** (bc / (bc + 1))
    return float(out) if np.ndim(steps) == 0 else out


# -------------------------------------------------------------------------- coherence


def per_example_gradients(loss_fn: Callable, params, x, y) -> jax.Array:
    """The gradient of each example's loss, flattened: an (m, P) array.

    Args:
      loss_fn: ``loss_fn(params, x, y)`` -> scalar, the mean loss of a batch, e.g.
        ``models.loss_fn(model)`` (`udl_jax.models.loss_fn`); it is evaluated on batches of
        one example, ``(x[i:i+1], y[i:i+1])``.
      params: the parameter pytree.
      x: (m, ...) inputs; y: (m,) targets.

    Returns:
      (m, P) gradients in ``ravel_pytree`` order (``jax.vmap`` of ``jax.grad``). Call it
      inside ``jax.jit`` (as the chapter does): eagerly, every operation is dispatched alone.
    """
    if len(x) != len(y):
        raise ValueError(f"x, y: expected equal lengths, got {len(x)} and {len(y)}")
    grad = jax.grad(lambda p, xi, yi: loss_fn(p, xi[None], yi[None]))
    return jax.vmap(lambda xi, yi: ravel_pytree(grad(params, xi, yi))[0])(
        jnp.asarray(x), jnp.asarray(y)
    )


def coherence(grads) -> tuple[float, float]:
    """Coherence of per-example gradients (Chatterjee & Zielinski 2022).

    ``alpha = |E_i g_i|^2 / E_i |g_i|^2`` over the m rows, and the m-coherence ``m alpha``.
    Since ``|E g|^2 = (1/m^2) sum_{i,j} <g_i, g_j>``, m orthogonal gradients of equal norm
    give ``alpha = 1/m`` (m-coherence 1) and m equal gradients give ``alpha = 1``
    (m-coherence m): the m-coherence counts how many examples a step on one of them helps,
    to first order.

    Args:
      grads: (m, P) per-example gradients, m >= 2 (see `per_example_gradients`).

    Returns:
      ``(alpha, m_coherence)`` as floats.
    """
    g = jnp.asarray(grads)
    if g.ndim != 2 or g.shape[0] < 2:
        raise ValueError(f"grads: expected an (m, P) array with m >= 2, got shape {g.shape}")
    mean_sq = jnp.mean(jnp.sum(g * g, axis=1))
    if not mean_sq > 0:
        raise ValueError("grads: every gradient is zero; the coherence is undefined")
    alpha = float(jnp.sum(jnp.mean(g, axis=0) ** 2) / mean_sq)
    return alpha, alpha * g.shape[0]
