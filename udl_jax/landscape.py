"""Loss landscapes: random directions, 1D and 2D slices, paths between minima.

A network's loss lives in a space of millions of dimensions; all we can draw are its restrictions
to lines and planes through parameter space. How those are chosen decides what the picture says:

- *Filter-normalized* random directions (Li et al. 2018) give each filter of the direction the
  norm of the corresponding filter of the weights. Without that, a picture's scale depends on
  the weights' scale, which in a ReLU network (or before a normalization layer) can change without
  changing the function at all, so "sharp" and "flat" would be artefacts of the parametrization.
- The straight line from initialization to the solution (Goodfellow et al. 2015) asks whether
  training had obstacles to get around.
- A quadratic Bezier curve trained between two minima (Garipov et al. 2018) asks whether the two
  are connected by a path of low loss, when the straight line between them is not.

Conventions. A *loss function* is ``loss_fn(params, batch) -> scalar``, pure, with ``params`` a
pytree (e.g. the `nnx.State` of `udl_jax.models.functional`) and ``batch`` any pytree of arrays
whose leaves share a leading sample axis (e.g. ``(x, y)``); `loss_function` makes one from an NNX
model. Every loss evaluation below is jitted with ``loss_fn`` as a static argument, so reuse *one*
``loss_fn`` object across calls to compile once. Grid points are evaluated with `jax.lax.map`,
``batch_size`` points at a time (vectorized with `jax.vmap` inside a batch), which bounds memory.

For a parameter leaf of shape (..., n_out) (a `Dense` kernel (fan_in, fan_out), an `nnx.Conv`
kernel (k, c_in, c_out)) a *filter* is one slice ``w[..., j]`` along the last axis: the weights
into one output unit or channel. Leaves with fewer than two dimensions (biases, normalization
scales and offsets) get a zero direction, as in Li et al. (2018): slices move the weights only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import losses, train
from .models import MLP, functional

__all__ = [
    "loss_function",
    "random_direction",
    "normalize_direction",
    "slice_1d",
    "slice_2d",
    "interpolate",
    "bezier_point",
    "bezier_losses",
    "fit_bezier",
    "plane_through",
    "hessian_eigenvalues_2d",
    "relu_rescale",
    "NORMALIZATIONS",
]

NORMALIZATIONS = ("filter", "layer", "none")
"""Direction normalizations, per filter (Li et al. 2018), per leaf (layer), or none (raw)."""

_EPS = 1e-10  # as in Li et al.'s code: d * |w| / (|d| + eps)


# ------------------------------------------------------------------------------- checks


def _leaves_like(tree, ref, name: str, ref_name: str = "params"):
    """Raise a ValueError naming ``name`` unless ``tree`` has the structure and shapes of
    ``ref``."""
    t_leaves, t_def = jax.tree.flatten(tree)
    r_leaves, r_def = jax.tree.flatten(ref)
    if t_def != r_def:
        raise ValueError(f"{name}: expected a pytree with the structure of {ref_name}, "
                         f"got {t_def} instead of {r_def}")
    for a, b in zip(t_leaves, r_leaves, strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{name}: expected leaf shapes like {ref_name}'s, "
                             f"got {np.shape(a)} where {ref_name} has {np.shape(b)}")


def _grid(ts, name: str) -> jax.Array:
    ts = jnp.asarray(ts, jnp.float32)
    if ts.ndim != 1 or ts.size < 1:
        raise ValueError(f"{name}: expected a non-empty 1D array of coordinates, "
                         f"got shape {ts.shape}")
    return ts


def _check_batch_size(batch_size) -> None:
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def _check_loss_fn(loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a function loss_fn(params, batch), "
                        f"got {type(loss_fn).__name__}")


# ---------------------------------------------------------------------- loss functions


def loss_function(model: nnx.Module, loss: str | Callable = "cross_entropy"):
    """A pure loss function of the parameters, and the model's parameters.

    Args:
      model: any NNX module; it is evaluated in evaluation mode (`udl_jax.models.functional`).
      loss: ``"cross_entropy"``, ``"mse"`` (`udl_jax.losses.LOSSES`) or a function
        ``loss(outputs, y) -> scalar``.

    Returns:
      ``(loss_fn, params)``: ``loss_fn(params, (x, y))`` is the mean loss of the model with
      parameters ``params`` on inputs x (n, d) and targets y (n,); it accepts the parameters of
      any model with the same architecture. ``params`` is the model's `nnx.State` of parameters.
    """
    loss = losses.resolve(loss)
    apply_fn, params, rest = functional(model)

    def loss_fn(params, batch):
        x, y = batch
        return loss(apply_fn(params, x, rest), y)

    return loss_fn, params


# --------------------------------------------------------------------------- directions


def normalize_direction(direction, params, normalization: str = "filter"):
    """Rescale a direction to the scale of ``params``, filter by filter (Li et al. 2018).

    Filter normalization replaces each filter ``d[..., j]`` of a leaf of ``direction`` by
    ``d[..., j] * |w[..., j]| / (|d[..., j]| + 1e-10)``, where ``w`` is the same leaf of
    ``params`` and norms are Frobenius norms over all axes but the last. Leaves with fewer than two
    dimensions (biases, normalization parameters) are set to zero.

    The point (Li et al. 2018): if a filter of ``params`` is multiplied by ``c > 0`` the
    normalized direction's filter is multiplied by ``c`` too, so slices through reparametrized but
    equivalent networks (`relu_rescale`) coincide. Only rescalings of whole filters are absorbed.

    Args:
      direction: a pytree with the structure and shapes of ``params``.
      params: the point the direction is for.
      normalization: ``"filter"`` (the above), ``"layer"`` (one factor per leaf:
        ``d * |w| / (|d| + 1e-10)``) or ``"none"`` (``direction`` returned as is, 1D leaves
        included).

    Returns:
      A pytree like ``params``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}")
    _leaves_like(direction, params, "direction")
    if normalization == "none":
        return direction
    return _normalize(direction, params, normalization)


@functools.partial(jax.jit, static_argnames="normalization")
def _normalize(direction, params, normalization):
    def one(d, w):
        if d.ndim < 2:
            return jnp.zeros_like(d)
        axes = tuple(range(d.ndim - 1)) if normalization == "filter" else None
        w_norm = jnp.sqrt(jnp.sum(w**2, axis=axes, keepdims=True))
        d_norm = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))
        return d * (w_norm / (d_norm + _EPS))

    return jax.tree.map(one, direction, params)


def random_direction(key: jax.Array, params, normalization: str = "filter"):
    """A Gaussian random direction in parameter space, normalized by `normalize_direction`.

    Args:
      key: PRNG key. The draw depends only on ``key`` and the structure and shapes of
        ``params``, not on their values.
      params: the point the direction is for (a pytree of float arrays).
      normalization: ``"filter"`` (Li et al. 2018), ``"layer"`` or ``"none"``; see
        `normalize_direction`.

    Returns:
      A pytree like ``params``; with ``"none"`` every entry is standard normal.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}")
    return normalize_direction(_gaussian_like(key, params), params, normalization)


def _gaussian_like(key, params):
    # One draw for the whole pytree, cut into leaves outside JAX: a single random-number
    # kernel compiles far faster than one per leaf, or than a jitted split into many leaves.
    leaves, treedef = jax.tree.flatten(params)
    shapes = [jnp.shape(w) for w in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = np.asarray(jax.random.normal(key, (sum(sizes),), jnp.result_type(*leaves)))
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return jax.tree.unflatten(treedef, [jnp.asarray(p.reshape(s)) for p, s in zip(parts, shapes,
                                                                                  strict=True)])


# --------------------------------------------------------------------- loss evaluation


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size"))
def _combination_losses(loss_fn, points, weights, batch, batch_size):
    """Losses at ``sum_k weights[i, k] * points[k]`` for every row i of ``weights`` (N, K)."""

    def at(w):
        p = jax.tree.map(lambda *leaves: sum(wk * leaf for wk, leaf in zip(w, leaves,
                                                                            strict=True)),
                         *points)
        return loss_fn(p, batch)

    return jax.lax.map(at, weights, batch_size=min(batch_size, weights.shape[0]))


def _losses(loss_fn, points, weights, batch, batch_size):
    _check_loss_fn(loss_fn)
    _check_batch_size(batch_size)
    return _combination_losses(loss_fn, tuple(points), jnp.asarray(weights, jnp.float32), batch,
                               batch_size)


def slice_1d(loss_fn: Callable, params, direction, ts, batch, *, batch_size: int = 16) -> jax.Array:
    """The loss along a line, ``L(params + t * direction)`` for each ``t`` in ``ts``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the centre of the line (t = 0).
      direction: a pytree like ``params`` (e.g. from `random_direction`).
      ts: (T,) coordinates along the line, in units of ``direction``.
      batch: the data passed to ``loss_fn`` (e.g. the whole training set ``(x, y)``).
      batch_size: grid points evaluated together (memory grows with it).

    Returns:
      (T,) losses. At ``t = 0`` the value is exactly ``loss_fn(params, batch)``.
    """
    _leaves_like(direction, params, "direction")
    ts = _grid(ts, "ts")
    weights = jnp.stack([jnp.ones_like(ts), ts], axis=1)
    return _losses(loss_fn, (params, direction), weights, batch, batch_size)


def slice_2d(loss_fn: Callable, params, direction1, direction2, ts1, ts2, batch, *,
             batch_size: int = 16) -> jax.Array:
    """The loss on a plane, ``L(params + a * direction1 + b * direction2)`` on a grid.

    Li et al. (2018) draw these with two filter-normalized random directions; Garipov et al.
    (2018) with the plane through two minima and a curve's control point (`plane_through`).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the origin of the plane.
      direction1, direction2: pytrees like ``params``.
      ts1: (T1,) coordinates ``a`` along ``direction1``; ts2: (T2,) coordinates ``b``.
      batch: the data passed to ``loss_fn``.
      batch_size: grid points evaluated together.

    Returns:
      (T1, T2) losses; entry ``[i, j]`` is at ``a = ts1[i]``, ``b = ts2[j]`` (for ``plt.contour``
      pass the transpose, or ``indexing="ij"`` grids).
    """
    _leaves_like(direction1, params, "direction1")
    _leaves_like(direction2, params, "direction2")
    ts1, ts2 = _grid(ts1, "ts1"), _grid(ts2, "ts2")
    a, b = (g.ravel() for g in jnp.meshgrid(ts1, ts2, indexing="ij"))
    weights = jnp.stack([jnp.ones_like(a), a, b], axis=1)
    out = _losses(loss_fn, (params, direction1, direction2), weights, batch, batch_size)
    return out.reshape(ts1.size, ts2.size)


def interpolate(loss_fn: Callable, params_a, params_b, ts, batch, *,
                batch_size: int = 16) -> jax.Array:
    """The loss on the straight line ``(1 - t) * params_a + t * params_b`` (Goodfellow et al. 2015).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params_a, params_b: two points with the same structure (e.g. initialization and solution,
        or two independently trained networks).
      ts: (T,) interpolation coefficients; 0 is ``params_a``, 1 is ``params_b``, values outside
        [0, 1] extrapolate.
      batch: the data passed to ``loss_fn``.
      batch_size: grid points evaluated together.

    Returns:
      (T,) losses; at ``t = 0`` and ``t = 1`` exactly the losses of ``params_a`` and ``params_b``.
    """
    _leaves_like(params_b, params_a, "params_b", "params_a")
    ts = _grid(ts, "ts")
    weights = jnp.stack([1.0 - ts, ts], axis=1)
    return _losses(loss_fn, (params_a, params_b), weights, batch, batch_size)


# ---------------------------------------------------------------------- Bezier curves


def _bernstein(ts: jax.Array) -> jax.Array:
    """(T, 3) weights of a quadratic Bezier curve: (1 - t)^2, 2 t (1 - t), t^2."""
    return jnp.stack([(1 - ts) ** 2, 2 * ts * (1 - ts), ts**2], axis=-1)


def bezier_point(params_a, control, params_b, t):
    """The point ``(1 - t)^2 a + 2 t (1 - t) control + t^2 b`` of a quadratic Bezier curve.

    Garipov et al. (2018). With ``control = (a + b) / 2`` the curve is the straight line
    ``(1 - t) a + t b``.

    Args:
      params_a, control, params_b: pytrees of one structure; t: a scalar in [0, 1].

    Returns:
      A pytree like ``params_a``.
    """
    w = _bernstein(jnp.asarray(t, jnp.float32))
    return jax.tree.map(lambda a, c, b: w[0] * a + w[1] * c + w[2] * b, params_a, control, params_b)


def bezier_losses(loss_fn: Callable, params_a, control, params_b, ts, batch, *,
                  batch_size: int = 16) -> jax.Array:
    """The loss along a quadratic Bezier curve from ``params_a`` to ``params_b``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params_a, control, params_b: the curve's end points and control point (`bezier_point`).
      ts: (T,) curve parameters in [0, 1].
      batch: the data passed to ``loss_fn``.
      batch_size: grid points evaluated together.

    Returns:
      (T,) losses; at ``t = 0`` and ``t = 1`` exactly the losses of the end points.
    """
    _leaves_like(control, params_a, "control", "params_a")
    _leaves_like(params_b, params_a, "params_b", "params_a")
    ts = _grid(ts, "ts")
    if bool(jnp.any((ts < 0) | (ts > 1))):
        raise ValueError("ts: expected curve parameters in [0, 1]")
    return _losses(loss_fn, (params_a, control, params_b), _bernstein(ts), batch, batch_size)


@functools.lru_cache(maxsize=16)
def _bezier_trainer(loss_fn, factory, batch_size):
    """A jitted scan of Bezier-curve training steps, built once per (loss, optimizer, batch)."""
    tx_fn = optax.inject_hyperparams(factory)

    @jax.jit
    def run(params_a, control, params_b, batch, keys, hparams):
        tx = tx_fn(**hparams)
        n = jax.tree.leaves(batch)[0].shape[0]

        def curve_loss(c, key):  # the loss at one random point of the curve, on one minibatch
            k_t, k_b = jax.random.split(key)
            t = jax.random.uniform(k_t)
            if batch_size is None:
                mb = batch
            else:
                idx = jax.random.randint(k_b, (batch_size,), 0, n)
                mb = jax.tree.map(lambda a: a[idx], batch)
            return loss_fn(bezier_point(params_a, c, params_b, t), mb), None

        control, _, values, _ = train.optimize(curve_loss, tx, control, xs=keys)
        return control, values

    return run


def fit_bezier(loss_fn: Callable, params_a, params_b, batch, *, key: jax.Array, steps: int,
               learning_rate: float, batch_size: int | None = 100,
               optimizer: Callable[..., optax.GradientTransformation] = optax.adam,
               control=None):
    """Train the control point of a quadratic Bezier curve between two fixed end points.

    Garipov et al. (2018): minimize the loss averaged over the curve,
    ``E_{t ~ U(0, 1)} L(phi(t))`` with ``phi`` the curve of `bezier_point`, by stochastic
    gradient steps on the control point alone, drawing one ``t`` and one minibatch per step (with
    replacement, as in `udl_jax.train.fit`). The end points never move. All steps run in one
    `jax.lax.scan` under `jax.jit`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params_a, params_b: the end points (e.g. two independently trained networks).
      batch: the training data, a pytree of arrays with a leading sample axis (e.g. ``(x, y)``).
      key: PRNG key for the curve parameters and minibatches.
      steps: number of optimizer steps.
      learning_rate: step size.
      batch_size: minibatch size, or None for the whole ``batch`` every step.
      optimizer: an optax optimizer factory (``optax.adam``, ``optax.sgd``, ...).
      control: the initial control point (default: the midpoint ``(a + b) / 2``, i.e. training
        starts from the straight line).

    Returns:
      ``(control, losses)``: the trained control point (a pytree like ``params_a``) and the (steps,)
      minibatch losses, each at that step's random ``t``.
    """
    _check_loss_fn(loss_fn)
    _leaves_like(params_b, params_a, "params_b", "params_a")
    if control is None:
        control = jax.tree.map(lambda a, b: 0.5 * (a + b), params_a, params_b)
    _leaves_like(control, params_a, "control", "params_a")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if np.ndim(learning_rate) != 0 or not float(learning_rate) > 0:
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size: expected a positive int or None (full batch), "
                         f"got {batch_size!r}")
    lengths = {np.shape(a)[:1] for a in jax.tree.leaves(batch)}
    if len(lengths) != 1 or lengths.pop() in ((), (0,)):
        raise ValueError("batch: expected arrays with one shared, non-empty leading sample axis")
    if not callable(optimizer) or isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("optimizer: expected an optax optimizer *factory* such as optax.adam "
                        "(not optax.adam(1e-3)); pass the learning rate as learning_rate=")
    run = _bezier_trainer(loss_fn, optimizer, batch_size)
    keys = jax.random.split(key, steps)
    return run(params_a, control, params_b, batch, keys, {"learning_rate": float(learning_rate)})


# ------------------------------------------------------------------------- geometry


def plane_through(params_a, params_b, params_c):
    """An orthonormal basis of the plane through three points, and their coordinates in it.

    Garipov et al. (2018) draw the loss on the plane through two minima and a curve's
    control point: ``u = (b - a) / |b - a|``, and ``v`` is ``c - a`` with its ``u`` component
    removed, normalized. Pass ``a, u, v`` to `slice_2d`; coordinates are in units of parameter
    norm.

    Args:
      params_a, params_b, params_c: three pytrees of one structure, not on one line.

    Returns:
      ``(u, v, coords)``: two unit pytrees like ``params_a`` and a (3, 2) NumPy array, the
      coordinates of a, b and c (a is the origin).
    """
    _leaves_like(params_b, params_a, "params_b", "params_a")
    _leaves_like(params_c, params_a, "params_c", "params_a")
    ba = jax.tree.map(jnp.subtract, params_b, params_a)
    ca = jax.tree.map(jnp.subtract, params_c, params_a)
    nb = optax.tree_utils.tree_norm(ba)
    if not float(nb) > 0:
        raise ValueError("params_b: equals params_a; the plane is undefined")
    u = jax.tree.map(lambda x: x / nb, ba)
    cu = optax.tree_utils.tree_vdot(ca, u)
    perp = jax.tree.map(lambda x, y: x - cu * y, ca, u)
    nv = optax.tree_utils.tree_norm(perp)
    if not float(nv) > 1e-6 * float(optax.tree_utils.tree_norm(ca) + nb):
        raise ValueError("params_c: lies on the line through params_a and params_b")
    v = jax.tree.map(lambda x: x / nv, perp)
    coords = np.array([[0.0, 0.0], [float(nb), 0.0], [float(cu), float(nv)]])
    return u, v, coords


def hessian_eigenvalues_2d(surface, ts1, ts2) -> np.ndarray:
    """Eigenvalues of the 2x2 Hessian of a sampled 2D slice, by central finite differences.

    Li et al. (2018) map the ratio of the smallest to the largest Hessian eigenvalue
    ("principal curvatures") over a slice to show where it is convex: a negative smallest
    eigenvalue marks a non-convex point. This function does it for the slice itself (the Hessian
    of the restriction of the loss to the plane), from the grid values alone, at every interior
    grid point. Exact for a quadratic surface.

    Args:
      surface: (T1, T2) values on the grid ``ts1 x ts2`` (as from `slice_2d`).
      ts1, ts2: (T1,), (T2,) evenly spaced coordinates, T1, T2 >= 3.

    Returns:
      (T1 - 2, T2 - 2, 2) eigenvalues, smallest first, at the interior points.
    """
    surface = np.asarray(surface, np.float64)
    ts1, ts2 = np.asarray(ts1, np.float64), np.asarray(ts2, np.float64)
    for name, ts in (("ts1", ts1), ("ts2", ts2)):
        if ts.ndim != 1 or ts.size < 3:
            raise ValueError(f"{name}: expected a 1D grid of at least 3 points, "
                             f"got shape {ts.shape}")
        steps_ = np.diff(ts)
        if not np.allclose(steps_, steps_[0], rtol=1e-4) or steps_[0] <= 0:
            raise ValueError(f"{name}: expected evenly spaced, increasing coordinates")
    if surface.shape != (ts1.size, ts2.size):
        raise ValueError(f"surface: expected shape {(ts1.size, ts2.size)}, got {surface.shape}")
    h1, h2 = ts1[1] - ts1[0], ts2[1] - ts2[0]
    f = surface
    fxx = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / h1**2
    fyy = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / h2**2
    fxy = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * h1 * h2)
    hess = np.stack([np.stack([fxx, fxy], -1), np.stack([fxy, fyy], -1)], -2)
    return np.linalg.eigvalsh(hess)


# --------------------------------------------------------- a function-preserving rescaling


def relu_rescale(model: MLP, layer: int, alpha: float) -> MLP:
    """The same function, other weights: one layer times ``alpha``, the next times ``1 / alpha``.

    ReLU is positively homogeneous, ``relu(alpha z) = alpha relu(z)`` for ``alpha > 0``, so
    multiplying the weights *and* bias of hidden layer ``layer`` by ``alpha`` and the weights of
    the next layer by ``1 / alpha`` leaves the network's function unchanged (Dinh et al. 2017;
    Neyshabur et al. 2015). The loss landscape through the new weights is a reparametrization of
    the old one, but raw-direction slices through it look sharper or flatter; filter-normalized
    ones (`normalize_direction`) are unchanged. This is the same invariance Li et al. (2018)
    discuss for weights before a batch-normalization layer. (Scaling each hidden unit by its own
    factor also preserves the function, but filter normalization does not absorb it: the next
    layer's filters then mix rows scaled by different factors.)

    Args:
      model: a `udl_jax.models.MLP` with ``activation="relu"`` and ``residual=False`` (a skip
        connection adds the unscaled input back, which breaks the invariance).
      layer: index of a hidden layer, ``0 <= layer < len(model.layers) - 1``.
      alpha: the positive factor.

    Returns:
      A new `udl_jax.models.MLP`; ``model`` is not changed.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a udl_jax.models.MLP, got {type(model).__name__}")
    if model.activation != "relu" or model.residual:
        raise ValueError("model: expected a ReLU MLP without skip connections, got "
                         f"activation={model.activation!r}, residual={model.residual}")
    if not (isinstance(layer, int) and 0 <= layer < len(model.layers) - 1):
        raise ValueError(f"layer: expected a hidden layer index in [0, {len(model.layers) - 1}), "
                         f"got {layer!r}")
    if np.ndim(alpha) != 0 or not float(alpha) > 0:
        raise ValueError(f"alpha: expected a positive number, got {alpha!r}")
    new = nnx.clone(model)
    new.layers[layer].w[...] = new.layers[layer].w[...] * alpha
    new.layers[layer].b[...] = new.layers[layer].b[...] * alpha
    new.layers[layer + 1].w[...] = new.layers[layer + 1].w[...] / alpha
    return new

