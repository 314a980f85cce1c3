"""Neural tangent kernels: empirical at finite width, analytic at infinite width, and the
predictions both make.

The neural tangent kernel of a network f(theta, x) with K outputs is the (K, K) block
``Theta(x, x') = J(x) J(x')^T``, ``J = df/dtheta`` (Jacot et al. 2018). Materializing J costs
K x P floats per input (P parameters: 2.9 GB for 256 inputs of a 40-512-512-10 MLP), so:

- for the book's `udl_jax.models.MLP` the kernel is computed *structurally*, layer by layer
  (`mlp_ntk`): a dense layer ``z = a (h @ W) + c b`` contributes
  ``(a^2 h(x).h(x') + c^2) * [df/dz(x) df/dz(x')^T]``, the product of the Gram matrix of its
  inputs and the Gram matrix of the output's derivatives with respect to its pre-activations
  (Novak et al. 2022, Sec. 3), which never forms a per-parameter Jacobian. For the network above
  and 256 inputs (full kernel, 2 shared CPU cores) this took 0.27 s and 120 MB, against 90 s
  and 0.7 GB for the chunked Jacobian contraction below and 28 s for NTK-vector products;
- any other model, given as ``(apply_fn, params)``, gets the Jacobian contraction with a
  per-sample ``vmap`` or NTK-vector products (`empirical_ntk`), chunked over inputs so memory
  stays bounded; `model_ntk` picks the structured route whenever it applies.

At infinite width the kernels of a fully connected network have closed forms (`nngp_kernel`,
`ntk_kernel`): the NNGP (Neal 1996; Lee et al. 2018) and the NTK (Jacot et al. 2018) by the
layer recursion, with the arc-cosine kernel for ReLU (Cho & Saul 2009), Williams' kernel for erf
(Williams 1997), and the linear kernel for the identity. They read the architecture from the
same description that builds the finite network, an `MLP` or an `MLPSpec`.

The predictions these kernels make (kernel regression, GP posteriors, gradient flow) are in
`udl_jax.kernel_regression`. Here is the first-order Taylor model of a network (`Linearized`,
`linearize`), which `udl_jax.train.fit` trains like any other module (Lee et al. 2019).

Conventions. Inputs are (N, d) arrays. Full empirical kernels have shape (N, M, K, K) with
``Theta[i, j, k, l] = <df_k(x1_i)/dtheta, df_l(x2_j)/dtheta>``; ``trace=True`` returns the
(N, M) sum over ``k = l``. Analytic kernels are (N, M): the infinite-width kernel of a K-output
network is that kernel times the K x K identity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import models
from .models import MLPSpec

__all__ = [
    "nngp_kernel",
    "ntk_kernel",
    "analytic_kernels",
    "Kernels",
    "ANALYTIC_ACTIVATIONS",
    "mlp_ntk",
    "mlp_ntk_block",
    "empirical_ntk",
    "model_ntk",
    "METHODS",
    "CHUNK_BYTES",
    "NTVP_MIN_OUTPUTS",
    "Linearized",
    "Anchor",
    "linearize",
]


ANALYTIC_ACTIVATIONS = ("relu", "erf", "identity")
"""Activations with closed-form Gaussian expectations (and hence analytic kernels)."""

METHODS = ("auto", "jacobian", "ntvp")
"""Implementations of `empirical_ntk` for models given as ``(apply_fn, params)``."""

CHUNK_BYTES = 1 << 28
"""Memory (256 MB) that one chunk's largest intermediate may take when ``chunk_size=None``."""

NTVP_MIN_OUTPUTS = 4
"""`empirical_ntk` with ``method="auto"`` uses NTK-vector products for full kernels of models
with at least this many outputs: the Jacobian contraction costs K^2 P per pair of inputs, the
products about K forward passes (Novak et al. 2022, Sec. 3); for the MLP of the module
docstring the products are 3.3 times faster at K = 10. For traced kernels both cost O(K P) per
pair (measured within a factor 1.5 of each other) and the Jacobian contraction is kept."""


# ---------------------------------------------------------------------- architecture spec


def _as_spec(model_or_spec) -> MLPSpec:
    if isinstance(model_or_spec, MLPSpec):
        return model_or_spec
    if isinstance(model_or_spec, models.MLP):
        return MLPSpec.from_model(model_or_spec)
    raise TypeError(
        "model_or_spec: expected a udl_jax.models.MLP or an MLPSpec, "
        f"got {type(model_or_spec).__name__}"
    )


def _check_inputs(x1, x2, d: int | None = None):
    """Return x1, x2 as arrays of shape (N, d), (M, d); x2 defaults to x1."""
    x1 = jnp.asarray(x1) if not isinstance(x1, np.ndarray) else x1
    if x1.ndim != 2 or (d is not None and x1.shape[1] != d):
        want = "(N, d)" if d is None else f"(N, {d})"
        raise ValueError(f"x1: expected inputs of shape {want}, got {tuple(x1.shape)}")
    if x2 is None:
        return x1, None
    x2 = jnp.asarray(x2) if not isinstance(x2, np.ndarray) else x2
    if x2.ndim != 2 or x2.shape[1] != x1.shape[1]:
        raise ValueError(
            f"x2: expected inputs of shape (M, {x1.shape[1]}) like x1, got {tuple(x2.shape)}"
        )
    return x1, x2


# -------------------------------------------------------------------- analytic kernels


class Kernels(NamedTuple):
    """Infinite-width kernels of one architecture on ``(x1, x2)``, each (N, M) float64."""

    nngp: np.ndarray
    ntk: np.ndarray


def _gaussian_moments(activation, q1, q2, k):
    """``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]`` for centred Gaussians with variances q1
    (N, 1), q2 (1, M) and covariance k (N, M); ``E[phi(u)^2]`` for the variances themselves."""
    if activation == "identity":
        return k, np.ones_like(k), q1, q2
    if activation == "relu":  # arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009)
        norm = np.sqrt(q1 * q2)
        cos = np.clip(np.divide(k, norm, out=np.zeros_like(k), where=norm > 0), -1.0, 1.0)
        angle = np.arccos(cos)
        e = norm / (2 * np.pi) * (np.sin(angle) + (np.pi - angle) * cos)
        return e, (np.pi - angle) / (2 * np.pi), q1 / 2, q2 / 2
    if activation == "erf":  # Williams (1997); E[erf' erf'] = (4/pi) det(I + 2 S)^(-1/2)
        a1, a2 = 1 + 2 * q1, 1 + 2 * q2
        e = 2 / np.pi * np.arcsin(2 * k / np.sqrt(a1 * a2))
        e_dot = 4 / np.pi / np.sqrt(a1 * a2 - 4 * k**2)
        return e, e_dot, 2 / np.pi * np.arcsin(2 * q1 / a1), 2 / np.pi * np.arcsin(2 * q2 / a2)
    raise ValueError(
        f"activation: analytic kernels exist for {ANALYTIC_ACTIVATIONS}, got {activation!r}"
    )


def analytic_kernels(model_or_spec, x1, x2=None) -> Kernels:
    """Infinite-width NNGP and NTK of a fully connected network, by the layer recursion.

    With ``K^1 = s_w x.x'/d + s_b`` (s_w = weight_var, s_b = bias_var, d = input size), each
    hidden layer maps ``K -> s_w E[phi(u) phi(u')] + s_b`` with ``(u, u') ~ N(0, K)`` (Lee et al.
    2018, eq. 4), and in NTK parametrization ``Theta -> K_next + s_w E[phi'(u) phi'(u')] Theta``
    starting from ``Theta^1 = K^1`` (Jacot et al. 2018, Theorem 1). The expectations are closed
    forms: arc-cosine kernels of degree 1 and 0 for ReLU (Cho & Saul 2009), Williams' (1997)
    arcsine kernel for erf and its derivative's ``(4/pi) det(I + 2 Sigma)^(-1/2)``, and
    ``(k, 1)`` for the identity.

    In standard parametrization the NTK grows linearly with width: a weight matrix W of fan-in n
    has entries of variance s_w/n but gradient ``h``, not ``h sqrt(s_w/n)``, so its contribution
    is ``h.h' ~ n``. What is returned then is the width-aware kernel of Sohl-Dickstein et al.
    (2020), as in neural-tangents ``Dense(parameterization="standard")`` with ``s = (1, 1)``:
    ``Theta -> n E[phi(u) phi(u')] + 1 + s_w E[phi'(u) phi'(u')] Theta`` from
    ``Theta^1 = x.x' + 1`` (every layer has a trainable bias, whose gradient is 1), with n the
    true hidden widths. It is the large-width value of the *finite* network's NTK: the empirical
    NTK divided by it tends to 1 as widths grow, while the limit of either alone is infinite. The
    dynamics it describes need learning rates O(1/width). The NNGP is the same in both
    parametrizations.

    Args:
      model_or_spec: a `udl_jax.models.MLP` (not residual) or an `MLPSpec`.
      x1: (N, d) inputs, d = ``widths[0]``.
      x2: (M, d) inputs; defaults to ``x1``.

    Returns:
      `Kernels` ``(nngp, ntk)``, each an (N, M) float64 array; the kernel of output k with
      output l is this times ``k == l``.
    """
    spec = _as_spec(model_or_spec)
    if spec.activation not in ANALYTIC_ACTIVATIONS:
        raise ValueError(
            f"activation: analytic kernels exist for {ANALYTIC_ACTIVATIONS}, "
            f"got {spec.activation!r}"
        )
    x1, x2 = _check_inputs(x1, x2, spec.widths[0])
    a = np.asarray(x1, np.float64)
    b = a if x2 is None else np.asarray(x2, np.float64)
    sw, sb, d = spec.weight_var, spec.bias_var, spec.widths[0]
    dot, sq1, sq2 = a @ b.T, np.sum(a**2, 1)[:, None], np.sum(b**2, 1)[None, :]
    k, q1, q2 = sw * dot / d + sb, sw * sq1 / d + sb, sw * sq2 / d + sb
    standard = spec.parametrization == "standard"
    theta = dot + 1.0 if standard else k
    for n in spec.widths[1:-1]:
        e, e_dot, e1, e2 = _gaussian_moments(spec.activation, q1, q2, k)
        k, q1, q2 = sw * e + sb, sw * e1 + sb, sw * e2 + sb
        theta = (n * e + 1.0 if standard else k) + sw * e_dot * theta
    return Kernels(k, theta)


def nngp_kernel(model_or_spec, x1, x2=None) -> np.ndarray:
    """Infinite-width NNGP kernel (N, M), float64; see `analytic_kernels`.

    The outputs of a randomly initialized network of this architecture tend, as its hidden widths
    grow, to independent Gaussian processes with this covariance (Neal 1996; Lee et al. 2018).
    """
    return analytic_kernels(model_or_spec, x1, x2).nngp


def ntk_kernel(model_or_spec, x1, x2=None) -> np.ndarray:
    """Infinite-width NTK (N, M), float64; see `analytic_kernels` for the standard
    parametrization, where it is the width-aware kernel of Sohl-Dickstein et al. (2020)."""
    return analytic_kernels(model_or_spec, x1, x2).ntk


# ------------------------------------------------------------------------ empirical NTK


def _chunks(n: int, size: int):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _pad(x, size):
    """Pad the first axis of x to ``size`` rows (so every chunk has one shape: one compile)."""
    if x.shape[0] == size:
        return x
    return jnp.concatenate([x, jnp.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])


def _assemble(block_fn, x1, x2, chunk, n_out, trace):
    """Tile the (N, M[, K, K]) kernel from ``block_fn(x1_chunk, x2_chunk, same)``; only the
    upper blocks when ``x2`` is None (the kernel is symmetric). Every chunk is padded to one
    shape, so each block reuses one compilation."""
    sym = x2 is None
    x2 = x1 if sym else x2
    n, m = x1.shape[0], x2.shape[0]
    tail = () if trace else (n_out, n_out)
    rows, cols = _chunks(n, chunk), _chunks(m, chunk)
    if len(rows) == 1 and len(cols) == 1:
        return block_fn(x1, x2, sym)
    out = np.empty((n, m, *tail), np.float32)
    for i, (a0, a1) in enumerate(rows):
        xa = _pad(x1[a0:a1], chunk)
        for j, (b0, b1) in enumerate(cols):
            if sym and j < i:
                continue
            blk = np.asarray(block_fn(xa, _pad(x2[b0:b1], chunk), False))
            out[a0:a1, b0:b1] = blk[: a1 - a0, : b1 - b0]
            if sym and j > i:
                out[b0:b1, a0:a1] = np.transpose(out[a0:a1, b0:b1], (1, 0, 3, 2)[: out.ndim])
    return jnp.asarray(out)


def _chunk_size(chunk_size, n, bytes_per_input, bytes_per_pair=0):
    """Inputs per chunk: at most ``chunk_size`` (None: the most for which one chunk's
    ``bytes_per_input`` and one block's ``bytes_per_pair`` each fit in `CHUNK_BYTES`), balanced
    so that the padded last chunk wastes little."""
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // max(1, bytes_per_input))
        if bytes_per_pair:
            chunk_size = min(chunk_size, max(1, math.isqrt(CHUNK_BYTES // bytes_per_pair)))
    elif not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
    n = max(n, 1)
    return -(-n // -(-n // min(chunk_size, n)))


# -- structured, for MLPs


def _mlp_scales(model: models.MLP):
    """(a^2, c^2) of each layer ``z = a (h @ W) + c b``: the factors of its two Gram terms."""
    if model.parametrization == "standard":
        return tuple((1.0, 1.0) for _ in model.layers)
    return tuple((float(ly.w_scale) ** 2, float(ly.b_scale) ** 2) for ly in model.layers)


def _mlp_features(model: models.MLP, x):
    """Per layer: its input h (c, n_in) and the output's derivative df/dz (c, K, n_out).

    The forward pass is `udl_jax.models.MLP.forward` with a zero added to every pre-activation;
    one reverse pass per output, batched over inputs (samples do not interact), gives
    df_k(x)/dz(x).
    """

    def forward(eps):
        f = model.forward(x, offsets=eps)
        return f.outputs, f.inputs

    eps = [jnp.zeros((x.shape[0], ly.w.shape[1]), x.dtype) for ly in model.layers]
    out, vjp, inputs = jax.vjp(forward, eps, has_aux=True)
    eye = jnp.eye(out.shape[-1], dtype=out.dtype)
    grads = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, out.shape))[0])(eye)
    return inputs, [g.swapaxes(0, 1) for g in grads]


def _contract_features(f1, f2, scales, trace):
    """Sum over layers of (a^2 h1.h2 + c^2) * (J1 J2^T): (c1, c2) or (c1, c2, K, K)."""
    total = 0.0
    for h1, h2, j1, j2, (a2, c2) in zip(f1[0], f2[0], f1[1], f2[1], scales, strict=True):
        gram_in = a2 * (h1 @ h2.T) + c2
        if trace:
            total = total + gram_in * jnp.einsum("akn,bkn->ab", j1, j2)
        else:  # one (c1 K, n) x (n, c2 K) product per layer; a single transpose at the end
            (c_1, k, n), c_2 = j1.shape, j2.shape[0]
            gram_out = (j1.reshape(c_1 * k, n) @ j2.reshape(c_2 * k, n).T).reshape(c_1, k, c_2, k)
            total = total + gram_in[:, None, :, None] * gram_out
    return total if trace else jnp.transpose(total, (0, 2, 1, 3))


def mlp_ntk_block(model: models.MLP, x1, x2, *, trace: bool = False):
    """The structured empirical NTK of an MLP on one block of inputs, with no chunking or jit.

    Pure and traceable: use it inside ``jax.vmap`` over many networks (e.g. Monte Carlo over
    initializations); `mlp_ntk` is the chunked, compiled version for large input sets.

    Args:
      model: a `udl_jax.models.MLP` (possibly merged inside a transformation).
      x1, x2: (c1, d) and (c2, d) inputs.
      trace: sum over the output pair (k, k).

    Returns:
      (c1, c2, K, K), or (c1, c2) if ``trace``. Novak et al. (2022, Sec. 3).
    """
    scales = _mlp_scales(model)
    f1 = _mlp_features(model, x1)
    f2 = f1 if x2 is x1 else _mlp_features(model, x2)
    return _contract_features(f1, f2, scales, trace)


@functools.partial(jax.jit, static_argnames=("graphdef", "trace", "same"))
def _mlp_block(graphdef, state, x1, x2, trace, same):
    model = nnx.merge(graphdef, state)
    return mlp_ntk_block(model, x1, x1 if same else x2, trace=trace)


def mlp_ntk(
    model: models.MLP,
    x1,
    x2=None,
    *,
    params=None,
    trace: bool = False,
    chunk_size: int | None = None,
):
    """Empirical NTK of an `MLP`, computed structurally layer by layer.

    Each dense layer ``z = a (h @ W) + c b`` adds ``(a^2 <h(x), h(x')> + c^2) * G(x, x')`` with
    ``G[k, l] = <df_k/dz(x), df_l/dz(x')>`` (Novak et al. 2022, Sec. 3): no per-parameter
    Jacobian is formed, only the layer inputs and K reverse passes per chunk. Cost per pair of
    chunks: O(c K n^2) for the features, O(c^2 K^2 n) for the contraction (n: widths).

    Args:
      model: a `udl_jax.models.MLP` in either parametrization (padded, residual or with
        dropout, which is off as in evaluation mode), without normalization.
      x1: (N, d) inputs.
      x2: (M, d) inputs; None means ``x1`` (then only half the blocks are computed).
      params: optional parameters to use instead of the model's, an `nnx.State` like
        ``udl_jax.models.functional(model)[1]`` (e.g. while training functionally).
      trace: return the (N, M) kernel summed over outputs instead of (N, M, K, K).
      chunk_size: inputs per chunk; None chooses it from `CHUNK_BYTES`.

    Returns:
      A float32 ``jax.Array`` of shape (N, M, K, K), or (N, M) if ``trace``.
    """
    if not isinstance(model, models.MLP):
        raise TypeError(f"model: expected a udl_jax.models.MLP, got {type(model).__name__}")
    if model.normalization is not None:
        raise ValueError(
            "model: the structured kernel needs dense layers only, expected an MLP without "
            "normalization (model_ntk sends batch-normalized MLPs to empirical_ntk)"
        )
    x1, x2 = _check_inputs(x1, x2, model.widths[0])
    if model.dropout > 0:  # the kernel of the network in evaluation mode: dropout off
        model = nnx.clone(model)
        model.eval()
    graphdef, state = nnx.split(model)
    if params is not None:
        state = nnx.merge_state(state, params)
    n_out = model.widths[-1]
    per_input = 4 * (n_out * sum(model.widths[1:]) + sum(model.widths[:-1]))
    per_pair = 8 * (1 if trace else n_out**2)  # the block and one layer's term
    n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
    chunk = _chunk_size(chunk_size, n, per_input, per_pair)

    def block(a, b, same):
        return _mlp_block(graphdef, state, a, b, trace, same)

    return _assemble(block, x1, x2, chunk, n_out, trace)


# -- generic, for any (apply_fn, params)


def _outputs(apply_fn, params, x):
    """apply_fn on a batch, outputs flattened to (c, K)."""
    out = apply_fn(params, x)
    return out.reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "same"))
def _jacobian_block(apply_fn, params, x1, x2, trace, same):
    def jac(x):  # per-sample Jacobians: leaves (c, K, *leaf_shape)
        one = lambda p, xi: _outputs(apply_fn, p, xi[None])[0]  # noqa: E731
        return jax.vmap(jax.jacrev(one), (None, 0))(params, x)

    j1 = jac(x1)
    j2 = j1 if same else jac(x2)
    total = 0.0
    for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2), strict=True):
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        spec = "akp,bkp->ab" if trace else "akp,blp->abkl"
        total = total + jnp.einsum(spec, a, b)
    return total


@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "same"))
def _ntvp_block(apply_fn, params, x1, x2, trace, same):
    del same

    def f1(p):
        return _outputs(apply_fn, p, x1)

    def column(x2j):  # Theta(x1, x2_j) as (K_l, c1, K_k): one vjp, then K jvps
        _, vjp = jax.vjp(lambda p: _outputs(apply_fn, p, x2j[None])[0], params)

        def product(e):
            return jax.jvp(f1, (params,), vjp(e))[1]

        n_out = jax.eval_shape(f1, params).shape[-1]
        return jax.vmap(product)(jnp.eye(n_out, dtype=x1.dtype))

    cols = jax.vmap(column)(x2)  # (c2, K_l, c1, K_k)
    full = jnp.transpose(cols, (2, 0, 3, 1))
    return jnp.trace(full, axis1=2, axis2=3) if trace else full


def empirical_ntk(
    apply_fn: Callable,
    params,
    x1,
    x2=None,
    *,
    trace: bool = False,
    chunk_size: int | None = None,
    method: str = "auto",
):
    """Empirical NTK ``J(x1) J(x2)^T`` of any model given as a pure function.

    Two implementations (Novak et al. 2022, Sec. 3):

    - ``"jacobian"``: per-sample Jacobians (``vmap`` of ``jacrev``), contracted leaf by leaf.
      Memory c K P per chunk, time O(N M K^2 P) for the full kernel.
    - ``"ntvp"``: NTK-vector products: for each input x2_j and output l one vector-Jacobian
      product gives a parameter tangent, whose Jacobian-vector product on the x1 chunk gives a
      column of the kernel. It never stores Jacobians and wins for full kernels of many outputs.

    ``"auto"`` takes ``"ntvp"`` for full kernels with at least `NTVP_MIN_OUTPUTS` outputs and
    ``"jacobian"`` otherwise. For a `udl_jax.models.MLP`, `mlp_ntk` is much faster than both.

    Args:
      apply_fn: ``apply_fn(params, x)`` maps (c, d...) inputs to (c, ...) outputs; outputs are
        flattened to K per input. Pass the same function object each time to reuse compilations.
      params: a parameter pytree (e.g. from `udl_jax.models.functional`).
      x1: (N, ...) inputs.
      x2: (M, ...) inputs; None means ``x1`` (only half the blocks are computed).
      trace: return the (N, M) kernel summed over outputs.
      chunk_size: inputs per chunk; None chooses it from `CHUNK_BYTES`.
      method: one of `METHODS`.

    Returns:
      A float32 ``jax.Array`` of shape (N, M, K, K), or (N, M) if ``trace``.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a function, got {type(apply_fn).__name__}")
    x1 = jnp.asarray(x1)
    x2 = None if x2 is None else jnp.asarray(x2)
    if x1.ndim < 1 or x1.shape[0] < 1:
        raise ValueError(f"x1: expected a batch of inputs (N, ...), got shape {x1.shape}")
    if x2 is not None and (x2.ndim < 1 or x2.shape[1:] != x1.shape[1:]):
        raise ValueError(f"x2: expected inputs of shape (M, *{x1.shape[1:]}), got {x2.shape}")
    n_out = int(np.prod(jax.eval_shape(lambda p: _outputs(apply_fn, p, x1[:1]), params).shape))
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(params))
    if method == "auto":
        method = "ntvp" if (not trace and n_out >= NTVP_MIN_OUTPUTS) else "jacobian"
    n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
    chunk = _chunk_size(chunk_size, n, 4 * n_out * n_params, 4 * n_out**2)
    block_fn = _jacobian_block if method == "jacobian" else _ntvp_block

    def block(a, b, same):
        return block_fn(apply_fn, params, a, b, trace, same)

    return _assemble(block, x1, x2, chunk, n_out, trace)


def model_ntk(model: nnx.Module, x1, x2=None, *, trace: bool = False, **kwargs):
    """Empirical NTK of any NNX module at its current parameters (evaluation mode).

    A `udl_jax.models.MLP` without normalization goes to the structured `mlp_ntk`; any other
    module (batch-normalized MLPs included) to
    `empirical_ntk` on ``udl_jax.models.functional(model)``. Keyword arguments (``chunk_size``;
    ``method`` for the latter) are passed on. The generic route makes a new ``apply_fn`` and so
    compiles on every call; to track the kernel of such a model over training, call
    `empirical_ntk` with one ``apply_fn`` and new ``params`` instead.

    Returns:
      (N, M, K, K), or (N, M) if ``trace``.
    """
    if isinstance(model, models.MLP) and model.normalization is None:
        return mlp_ntk(model, x1, x2, trace=trace, **kwargs)
    apply_fn, params, _ = models.functional(model)
    return empirical_ntk(apply_fn, params, x1, x2, trace=trace, **kwargs)


# ------------------------------------------------------------------ linearized networks


def linearize(apply_fn: Callable, params0) -> Callable:
    """The first-order Taylor model of ``apply_fn`` around ``params0`` (Lee et al. 2019, Sec. 2).

    Args:
      apply_fn: ``apply_fn(params, x)``.
      params0: the expansion point (a pytree).

    Returns:
      ``f_lin(params, x) = apply_fn(params0, x) + J(x) (params - params0)``, evaluated by one
      ``jax.jvp`` (about the cost of two forward passes), with ``J = d apply_fn / d params`` at
      ``params0``.
    """

    def f_lin(params, x):
        delta = jax.tree.map(jnp.subtract, params, params0)
        y0, dy = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return y0 + dy

    return f_lin


class Anchor(nnx.Variable):
    """State of a `Linearized` model that is fixed: the expansion point and the other state."""


class Linearized(nnx.Module):
    """A network's first-order Taylor model around its current parameters, as an NNX module.

    ``Linearized(model)(x) = f(theta_0, x) + J(x) delta`` with ``J = df/dtheta`` at theta_0
    (Lee et al. 2019, Sec. 2). Its only `nnx.Param` leaves are the displacement
    ``delta = theta - theta_0``, initialized to zero, so it equals the network at creation and
    `udl_jax.train.fit` (or ``fit_many``) trains it unchanged; theta_0 and the model's other state
    are `Anchor` variables, which training leaves alone. The network is evaluated in evaluation
    mode (no dropout; BatchNorm running statistics).

    Args:
      model: any NNX module; it is not modified.

    Call: ``lin(x)`` returns what ``model(x)`` would, to first order in delta: one ``jax.jvp``.
    """

    def __init__(self, model: nnx.Module):
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model: expected a flax.nnx.Module, got {type(model).__name__}")
        model = nnx.clone(model)
        model.eval()
        self.graphdef, params0, rest = nnx.split(model, nnx.Param, ...)
        leaves, self.params_treedef = jax.tree.flatten(params0)
        rest_leaves, self.rest_treedef = jax.tree.flatten(rest)
        self.theta0 = nnx.List([Anchor(a) for a in leaves])
        self.delta = nnx.List([nnx.Param(jnp.zeros_like(a)) for a in leaves])
        self.rest = nnx.List([Anchor(a) for a in rest_leaves])

    def _tree(self, variables, treedef):
        return jax.tree.unflatten(treedef, [v[...] for v in variables])

    def params0(self) -> nnx.State:
        """theta_0, an `nnx.State` like the network's parameters."""
        return self._tree(self.theta0, self.params_treedef)

    def displacement(self) -> nnx.State:
        """delta = theta - theta_0, an `nnx.State` like the network's parameters."""
        return self._tree(self.delta, self.params_treedef)

    def network(self) -> nnx.Module:
        """The (nonlinear) network at theta_0 + delta, in evaluation mode."""
        params = jax.tree.map(jnp.add, self.params0(), self.displacement())
        return nnx.merge(self.graphdef, params, self._tree(self.rest, self.rest_treedef))

    def __call__(self, x: jax.Array) -> jax.Array:
        rest = self._tree(self.rest, self.rest_treedef)

        def f(params):
            return nnx.merge(self.graphdef, params, rest, copy=True)(x)

        y0, dy = jax.jvp(f, (self.params0(),), (self.displacement(),))
        return y0 + dy
