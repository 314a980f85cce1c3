"""Activation patterns and exact linear-region counting for ReLU networks.

A ReLU network is a continuous piecewise affine function: on the set of inputs where every
unit keeps its on/off state (an *activation region*) it equals ``A x + b`` (Balestriero &
Baraniuk 2018). Everything here starts from that fact. Along a line the regions can be found
exactly, layer by layer, because each pre-activation is affine in the line parameter on each
piece found so far; in the plane we can only sample patterns on a grid, which gives a lower
bound. `tent_network` is the classical construction showing depth can buy exponentially many
pieces (Montufar et al. 2014), and `soft_threshold` shows the proximal step of L1
regularization is itself a two-ReLU network (Parikh & Boyd 2014).

Conventions: a model is a `udl_jax.models.MLP` with ``activation="relu"``, in either
parametrization, with or without ``residual`` and ``max_width``. Masked units (``max_width``)
count as off. Exact computations run in float64 NumPy on a copy of the weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from udl_jax.models import MLP

__all__ = [
    "activation_pattern",
    "local_affine_map",
    "segment_breakpoints",
    "count_regions_on_segment",
    "count_regions_on_segments",
    "region_map_2d",
    "count_regions_2d",
    "tent_network",
    "soft_threshold",
]


_TOL = 1e-9


def _check_relu_mlp(model) -> None:
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a udl_jax.models.MLP, got {type(model).__name__}")
    if model.activation != "relu":
        raise ValueError(
            f"model: expected an MLP with activation='relu', got activation={model.activation!r}")


def _check_input(model, x, name: str, *, batched: bool) -> np.ndarray:
    shape = np.shape(x)
    d = model.widths[0]
    ok = (len(shape) >= 1 and shape[-1] == d) if batched else shape == (d,)
    if not ok:
        want = f"(..., {d})" if batched else f"({d},)"
        raise ValueError(f"{name}: expected shape {want} for this model, got {shape}")
    return x


def _affine_layers(model: MLP, xp=np):
    """Effective ``(W, b, mask, residual)`` per layer so that ``z = h @ W + b`` in both
    parametrizations; ``mask`` is None or a 0/1 vector over the layer's (allocated) outputs."""
    out = []
    n = len(model.layers)
    for i, layer in enumerate(model.layers):
        w, b = xp.asarray(layer.w[...]), xp.asarray(layer.b[...])
        if xp is np:
            w, b = w.astype(np.float64), b.astype(np.float64)
        if layer.parametrization == "ntk":
            w, b = layer.w_scale * w, layer.b_scale * b
        hidden = i < n - 1
        mask = None
        if hidden and model.max_width is not None:
            mask = xp.asarray(model.masks[i][...])
        residual = hidden and model.residual and w.shape[0] == w.shape[1]
        out.append((w, b, mask, residual))
    return out


def activation_pattern(model: MLP, x: jax.Array) -> jax.Array:
    """Which ReLUs are on (pre-activation > 0) at the inputs ``x``.

    Args:
      model: a ReLU `MLP`.
      x: inputs of shape (..., d_in).

    Returns:
      Boolean array of shape (..., total hidden units), the hidden layers' patterns
      concatenated in order (allocated units; masked units are always off). The inputs that
      share a pattern form an activation region: given the pattern, every pre-activation is
      affine in the input, so the region is a convex polytope (Hanin & Rolnick 2019, sec. 2).
    """
    _check_relu_mlp(model)
    _check_input(model, x, "x", batched=True)
    pre, _ = model.features(jnp.asarray(x))
    pats = []
    for i, z in enumerate(pre):
        on = z > 0
        if model.max_width is not None:
            on = on & (model.masks[i][...] > 0)
        pats.append(on)
    return jnp.concatenate(pats, axis=-1)


def local_affine_map(model: MLP, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The affine map the network equals on the activation region of ``x``.

    Built from the activation pattern alone: with ``D_l = diag(pattern of layer l)``,
    ``A = W_L^T D_{L-1} W_{L-1}^T ... D_1 W_1^T`` (with ``I + D_l W_l^T`` for residual layers)
    and ``b`` accumulated the same way (Balestriero & Baraniuk 2018, eq. 5). No autodiff is
    used, so ``A`` can be checked against ``jax.jacfwd(model)(x)``.

    Args:
      model: a ReLU `MLP`.
      x: one input of shape (d_in,).

    Returns:
      ``(A, b)`` of shapes (d_out, d_in) and (d_out,) with ``model(y) == A @ y + b`` for every
      ``y`` in the (closed) activation region of ``x``.
    """
    _check_relu_mlp(model)
    _check_input(model, x, "x", batched=False)
    x = jnp.asarray(x)
    pattern = activation_pattern(model, x)
    layers = _affine_layers(model, xp=jnp)
    a_mat = jnp.eye(x.shape[0], dtype=x.dtype)  # h = a_mat @ x + c
    c = jnp.zeros(x.shape[0], dtype=x.dtype)
    start = 0
    for w, b, _, residual in layers[:-1]:
        d = pattern[start:start + w.shape[1]].astype(w.dtype)
        start += w.shape[1]
        za, zc = w.T @ a_mat, w.T @ c + b
        na, nc = d[:, None] * za, d * zc
        a_mat, c = (a_mat + na, c + nc) if residual else (na, nc)
    w, b, _, _ = layers[-1]
    return w.T @ a_mat, w.T @ c + b


def _merge(t: np.ndarray, tol: float) -> np.ndarray:
    t = np.sort(t)
    if t.size == 0:
        return t
    return t[np.concatenate([[True], np.diff(t) > tol])]


def _breakpoints(layers, x0: np.ndarray, x1: np.ndarray, tol: float) -> np.ndarray:
    edges = np.array([0.0, 1.0])
    h0, h1 = x0[None, :], (x1 - x0)[None, :]  # on interval k, h(t) = h0[k] + t * h1[k]
    for w, b, mask, residual in layers[:-1]:
        z0, z1 = h0 @ w + b, h1 @ w
        if mask is not None:
            z0, z1 = z0 * mask, z1 * mask
        with np.errstate(divide="ignore", invalid="ignore"):
            roots = -z0 / z1
        ok = (z1 != 0) & (roots > edges[:-1, None] + tol) & (roots < edges[1:, None] - tol)
        new_edges = _merge(np.concatenate([edges, roots[ok]]), tol)
        mids = 0.5 * (new_edges[:-1] + new_edges[1:])
        parent = np.clip(np.searchsorted(edges, mids) - 1, 0, len(edges) - 2)
        z0, z1 = z0[parent], z1[parent]
        on = (z0 + mids[:, None] * z1) > 0
        a0, a1 = np.where(on, z0, 0.0), np.where(on, z1, 0.0)
        h0, h1 = (h0[parent] + a0, h1[parent] + a1) if residual else (a0, a1)
        edges = new_edges
    return edges[1:-1]


def _segment_args(model, x0, x1):
    _check_relu_mlp(model)
    _check_input(model, x0, "x0", batched=False)
    _check_input(model, x1, "x1", batched=False)
    return np.asarray(x0, np.float64), np.asarray(x1, np.float64)


def segment_breakpoints(model: MLP, x0, x1, *, tol: float = _TOL) -> np.ndarray:
    """Exact parameters ``t`` in (0, 1) where ``x(t) = x0 + t (x1 - x0)`` changes region.

    Layer by layer: on each interval between the breakpoints found so far, the layer's input
    is affine in ``t``, so each pre-activation is ``z0 + t z1`` and changes sign only at
    ``-z0 / z1``; those roots inside the interval are the new breakpoints, and the pattern on
    each new sub-interval is read at its midpoint. Computed in float64 NumPy.

    Args:
      model: a ReLU `MLP`.
      x0, x1: the segment's endpoints, each of shape (d_in,).
      tol: breakpoints closer than this (in ``t``) are merged, and roots within ``tol`` of an
        existing breakpoint are taken to be that breakpoint.

    Returns:
      Sorted float64 array of shape (n_breakpoints,) with values in (0, 1), the points where
      some unit's pre-activation changes sign. The network is affine between consecutive ones.
    """
    x0, x1 = _segment_args(model, x0, x1)
    return _breakpoints(_affine_layers(model), x0, x1, tol)


def count_regions_on_segment(model: MLP, x0, x1, *, tol: float = _TOL) -> int:
    """Number of activation regions the segment ``[x0, x1]`` crosses (breakpoints + 1).

    These are the linear pieces of the network along the segment; two neighbouring pieces can
    in principle carry the same affine map (then the kink is invisible in the output), which
    happens with probability zero for random weights. Shapes as in `segment_breakpoints`.
    """
    return int(segment_breakpoints(model, x0, x1, tol=tol).size + 1)


def count_regions_on_segments(model: MLP, x0, x1, *, tol: float = _TOL) -> np.ndarray:
    """`count_regions_on_segment` for many segments, reading the weights once.

    Args:
      model: a ReLU `MLP`.
      x0, x1: arrays of shape (n_segments, d_in).

    Returns:
      Int array of shape (n_segments,).
    """
    _check_relu_mlp(model)
    _check_input(model, x0, "x0", batched=True)
    _check_input(model, x1, "x1", batched=True)
    if np.ndim(x0) != 2 or np.shape(x0) != np.shape(x1):
        raise ValueError(f"x0, x1: expected equal shapes (n_segments, d_in), got "
                         f"{np.shape(x0)} and {np.shape(x1)}")
    layers = _affine_layers(model)
    x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    return np.array([_breakpoints(layers, a, b, tol).size + 1 for a, b in zip(x0, x1, strict=True)])


def region_map_2d(model: MLP, xlim=(-2.0, 2.0), ylim=(-2.0, 2.0), resolution: int = 200):
    """Label each point of a grid over the plane by its activation region.

    Args:
      model: a ReLU `MLP` with 2 inputs.
      xlim, ylim: ``(low, high)`` ranges of the two inputs.
      resolution: grid points per axis.

    Returns:
      ``(ids, xs, ys)``: ``ids`` is an int array of shape (resolution, resolution), equal on
      grid points with the same activation pattern (``ids[i, j]`` belongs to ``(xs[j], ys[i])``,
      so ``imshow(ids, origin="lower")`` draws it), numbered 0 .. n_patterns - 1;
      ``xs`` and ``ys`` are the grid axes, each of shape (resolution,). Activation regions are
      convex (see `activation_pattern`), so each id is one region.
    """
    _check_relu_mlp(model)
    if model.widths[0] != 2:
        raise ValueError(f"model: expected 2 inputs for a map of the plane, got {model.widths[0]}")
    for name, lim in (("xlim", xlim), ("ylim", ylim)):
        if len(lim) != 2 or not lim[0] < lim[1]:
            raise ValueError(f"{name}: expected (low, high) with low < high, got {lim!r}")
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution: expected an int >= 2, got {resolution!r}")
    xs = np.linspace(*xlim, resolution)
    ys = np.linspace(*ylim, resolution)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=-1).astype(np.float32)
    pats = np.asarray(activation_pattern(model, pts))
    _, ids = np.unique(pats, axis=0, return_inverse=True)
    return ids.reshape(resolution, resolution), xs, ys


def count_regions_2d(model: MLP, xlim=(-2.0, 2.0), ylim=(-2.0, 2.0),
                     resolution: int = 200) -> int:
    """Number of distinct activation patterns seen on a grid (see `region_map_2d`).

    A lower bound on the number of regions meeting the box: a region that contains no grid
    point (thinner than the grid spacing, or a corner clipped by the box) is missed.
    """
    ids, _, _ = region_map_2d(model, xlim, ylim, resolution)
    return int(ids.max() + 1)


def tent_network(depth: int) -> MLP:
    """The ReLU net ``1 -> 2 -> ... -> 2 -> 1`` computing the ``depth``-fold tent map on [0, 1].

    The tent map ``T(x) = 2x`` for ``x <= 1/2`` and ``2 - 2x`` after equals
    ``2 relu(x) - 4 relu(x - 1/2)`` on [0, 1]; each hidden layer computes the two ReLUs of the
    previous layer's ``T``. The composition ``T^depth`` has exactly ``2^depth`` linear pieces
    on [0, 1] with only ``2 depth`` units, whereas one hidden layer of ``n`` units gives at
    most ``n + 1`` pieces on a line (Montufar et al. 2014, sec. 3; Telgarsky 2016).

    Args:
      depth: number of hidden layers L >= 1.

    Returns:
      An `MLP` with widths ``(1, 2, ..., 2, 1)`` (standard parametrization).
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth: expected an int >= 1, got {depth!r}")
    model = MLP((1, *[2] * depth, 1), activation="relu", rngs=nnx.Rngs(0))
    first = (np.array([[1.0, 1.0]]), np.array([0.0, -0.5]))
    middle = (np.array([[2.0, 2.0], [-4.0, -4.0]]), np.array([0.0, -0.5]))
    last = (np.array([[2.0], [-4.0]]), np.array([0.0]))
    for i, layer in enumerate(model.layers):
        w, b = first if i == 0 else last if i == depth else middle
        layer.w[...] = jnp.asarray(w, jnp.float32)
        layer.b[...] = jnp.asarray(b, jnp.float32)
    return model


def soft_threshold(x: jax.Array, lam) -> jax.Array:
    """Soft-thresholding ``relu(x - lam) - relu(-x - lam)``, elementwise.

    It is the proximal operator of ``lam |.|``: ``argmin_u lam |u| + (u - x)^2 / 2``
    (Parikh & Boyd 2014, sec. 6.5.2), i.e. ``sign(x) max(|x| - lam, 0)``; a proximal
    gradient step for L1 regularization is a gradient step followed by this two-ReLU network.

    Args:
      x: array of any shape.
      lam: threshold ``lam >= 0`` (scalar or broadcastable to ``x``).

    Returns:
      Array of the broadcast shape of ``x`` and ``lam``.
    """
    if not isinstance(lam, jax.core.Tracer) and np.any(np.asarray(lam) < 0):
        raise ValueError(f"lam: expected a threshold >= 0, got {lam!r}")
    return jax.nn.relu(x - lam) - jax.nn.relu(-x - lam)
