"""Lazy training and feature learning: how far weights and kernels move during training.

A network trained in the kernel regime barely moves its weights, so its neural tangent
kernel stays put and training is kernel regression (Jacot et al. 2018; Lee et al. 2019).
Chizat, Oyallon & Bach (2019) showed the regime is a matter of scale: train the centred,
scaled model ``g(w, x) = alpha (f(w, x) - f(w_0, x))`` on the loss divided by ``alpha^2``, and
the function moves at a speed independent of alpha while the weights move like ``1/alpha``.
This module holds the few measurements the chapter on the NTK needs: `scaled_gd` (full-batch
gradient descent on that model, one ``lax.scan``, vmappable over initializations), relative
changes of weights and kernels, the kernel-target alignment of Cristianini et al. (2002) in
the centred form of Cortes et al. (2012), and log-log slopes; `lazy_runs` makes all of these
measurements for a stack of MLPs trained at several output scales in one compiled call, and
`lazy_width_sweep` repeats it over the hidden width (Lee et al. 2019, Theorem 2.1: weights and
kernel move like ``n^{-1/2}``).
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

from . import losses, models, ntk, train

__all__ = [
    "scaled_gd",
    "ScaledRun",
    "weight_changes",
    "kernel_alignment",
    "relative_change",
    "loglog_slope",
    "lazy_runs",
    "LazyRuns",
    "lazy_width_sweep",
    "LazyWidthSweep",
]


def relative_change(a, a0) -> jax.Array:
    """The relative Frobenius distance ``||a - a0||_F / ||a0||_F``.

    How far weights or a kernel moved from their start, or how far an estimate is from its
    reference. Traceable (``jit``, ``vmap``).

    Args:
      a: an array of ``a0``'s shape, or a stack of them, ``(..., *a0.shape)``.
      a0: the reference.

    Returns:
      A scalar, or one value per leading index of ``a`` (...).
    """
    a, a0 = jnp.asarray(a), jnp.asarray(a0)
    if a.ndim < a0.ndim or a.shape[a.ndim - a0.ndim :] != a0.shape:
        raise ValueError(
            f"a: expected the shape of a0 {a0.shape} or (..., *{a0.shape}), got {a.shape}"
        )
    diff = (a - a0).reshape(*a.shape[: a.ndim - a0.ndim], -1)
    return jnp.linalg.norm(diff, axis=-1) / jnp.linalg.norm(a0.ravel())


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


class LazyRuns(NamedTuple):
    """Result of `lazy_runs`: NumPy arrays with leading axes (alpha, seed).

    Attributes:
      loss0, loss: (A, S) training loss of the scaled model (`ScaledRun.loss`) at
        initialization and after the last step.
      dw: (A, S, L) relative change of each weight matrix, input layer first
        (`weight_changes`).
      dk: (A, S) relative change of the empirical NTK (traced over outputs) on the training
        inputs (`relative_change`).
      align0, align1: (A, S) centred kernel-target alignment of that NTK with the targets,
        before and after training (`kernel_alignment`).
    """

    loss0: np.ndarray
    loss: np.ndarray
    dw: np.ndarray
    dk: np.ndarray
    align0: np.ndarray
    align1: np.ndarray


def lazy_runs(
    spec: models.MLPSpec,
    x,
    y,
    alphas: Sequence[float],
    *,
    seeds: int,
    learning_rate: float,
    steps: int,
    center: bool = True,
    seed: int = 0,
) -> LazyRuns:
    """Train `seeds` MLPs at every output scale alpha and measure how far weights and NTK move.

    Network ``s`` is ``spec.build(nnx.Rngs(seed + s))``; each is trained by `scaled_gd` at each
    alpha (the scaled model of Chizat, Oyallon & Bach 2019, Sec. 2), and its empirical NTK on
    ``x`` (`udl_jax.ntk.mlp_ntk_block`, traced over outputs) is compared before and after. In
    the lazy regime (large width, or large alpha) the weights move like ``1/alpha`` and the
    kernel barely moves; for small alpha the kernel moves by O(1) and aligns with ``y y^T``
    (Chizat et al. 2019, Sec. 3; Lee et al. 2019, Theorem 2.1). All runs are one ``jax.jit``
    of two ``jax.vmap`` (over alphas, over networks).

    Args:
      spec: the architecture, a `udl_jax.models.MLPSpec`.
      x: (n, d) training inputs, ``d = spec.widths[0]``.
      y: (n,) or (n, K) float targets.
      alphas: (A,) positive output scales.
      seeds: number S of networks (initializations).
      learning_rate: step size of gradient descent.
      steps: number of gradient-descent steps.
      center: subtract the initial function (see `scaled_gd`).
      seed: network ``s`` is initialized from ``nnx.Rngs(seed + s)``.

    Returns:
      `LazyRuns` of (A, S) arrays ((A, S, L) for ``dw``, L = the number of layers).
    """
    if not isinstance(spec, models.MLPSpec):
        raise ValueError(f"spec: expected a udl_jax.models.MLPSpec, got {type(spec).__name__}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected a positive int, got {seeds!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    alphas = np.asarray(alphas, np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas > 0):
        raise ValueError(f"alphas: expected a 1-D sequence of positive scales, got {alphas!r}")
    x, target = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or x.shape[1] != spec.widths[0]:
        raise ValueError(f"x: expected shape (n, {spec.widths[0]}), got {x.shape}")
    if target.ndim not in (1, 2) or target.shape[0] != x.shape[0]:
        raise ValueError(
            f"y: expected shape ({x.shape[0]},) or ({x.shape[0]}, K), got {target.shape}"
        )

    nets = [spec.build(nnx.Rngs(seed + s)) for s in range(seeds)]
    graphdef = nnx.split(nets[0])[0]
    params0 = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.split(m)[1] for m in nets])

    def apply_fn(p, xx):
        return nnx.merge(graphdef, p)(xx)

    def one(p0, alpha):
        run = scaled_gd(
            apply_fn,
            p0,
            x,
            target,
            alpha=alpha,
            learning_rate=learning_rate,
            steps=steps,
            center=center,
        )
        k0 = ntk.mlp_ntk_block(nnx.merge(graphdef, p0), x, x, trace=True)
        k1 = ntk.mlp_ntk_block(nnx.merge(graphdef, run.params), x, x, trace=True)
        return dict(
            loss0=run.loss[0],
            loss=run.loss[-1],
            dw=weight_changes(run.params, p0),
            dk=relative_change(k1, k0),
            align0=kernel_alignment(k0, target),
            align1=kernel_alignment(k1, target),
        )

    runs = jax.jit(jax.vmap(jax.vmap(one, (0, None)), (None, 0)))(params0, jnp.asarray(alphas))
    return LazyRuns(**{name: np.asarray(a) for name, a in runs.items()})


class LazyWidthSweep(NamedTuple):
    """Result of `lazy_width_sweep`, NumPy arrays.

    Attributes:
      loss_ratio: (W, S) final over initial training loss, per width and network.
      dw: (W, S, L) relative change of each weight matrix, input layer first.
      dk: (W, S) relative change of the empirical NTK on the training inputs.
      w_slopes: (L, S) log-log slope against the width of each layer's weight change
        (`loglog_slope`), per network.
      k_slopes: (S,) log-log slope against the width of the kernel change, per network.
    """

    loss_ratio: np.ndarray
    dw: np.ndarray
    dk: np.ndarray
    w_slopes: np.ndarray
    k_slopes: np.ndarray


def lazy_width_sweep(
    spec: models.MLPSpec,
    widths: Sequence[int],
    x,
    y,
    *,
    seeds: int,
    learning_rate: float,
    steps: int,
    seed: int = 0,
) -> LazyWidthSweep:
    """How far weights and NTK move in plain gradient descent, as the hidden width grows.

    For each width n every hidden layer of ``spec`` is set to n, and `lazy_runs` trains
    `seeds` networks (``alpha = 1``, not centred: full-batch gradient descent on the MSE) and
    measures the relative weight change of each layer and the relative change of the
    empirical NTK. In NTK parametrization both fall with the width, like ``n^{-1/2}`` (Jacot
    et al. 2018; Lee et al. 2019, Theorem 2.1; the n x n middle layers like ``n^{-1}`` in
    relative Frobenius norm, since their norm grows like n); the slopes of their log-log
    lines measure the exponents.

    Args:
      spec: the architecture; its hidden widths are replaced by each of ``widths``.
      widths: (W,) hidden widths, positive ints, at least two.
      x: (n, d) training inputs, ``d = spec.widths[0]``.
      y: (n,) or (n, K) float targets.
      seeds: number S of networks per width; network ``s`` of every width is initialized from
        ``nnx.Rngs(seed + s)``.
      learning_rate: step size of gradient descent.
      steps: number of gradient-descent steps.
      seed: see ``seeds``.

    Returns:
      `LazyWidthSweep`.
    """
    if not isinstance(spec, models.MLPSpec):
        raise ValueError(f"spec: expected a udl_jax.models.MLPSpec, got {type(spec).__name__}")
    widths = tuple(widths)
    if len(widths) < 2 or not all(isinstance(n, int) and n > 0 for n in widths):
        raise ValueError(f"widths: expected at least two positive ints, got {widths!r}")
    runs = [
        lazy_runs(
            dataclasses.replace(
                spec, widths=(spec.widths[0], *(n,) * spec.depth, spec.widths[-1])
            ),
            x,
            y,
            [1.0],
            seeds=seeds,
            learning_rate=learning_rate,
            steps=steps,
            center=False,
            seed=seed,
        )
        for n in widths
    ]
    dw = np.stack([r.dw[0] for r in runs])  # (width, seed, layer)
    dk = np.stack([r.dk[0] for r in runs])  # (width, seed)
    loss_ratio = np.stack([r.loss[0] / r.loss0[0] for r in runs])
    w_slopes = np.array(
        [[loglog_slope(widths, dw[:, s, j]) for s in range(seeds)] for j in range(dw.shape[2])]
    )
    k_slopes = np.array([loglog_slope(widths, dk[:, s]) for s in range(seeds)])
    return LazyWidthSweep(loss_ratio, dw, dk, w_slopes, k_slopes)
