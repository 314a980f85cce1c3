"""Hessian-vector products, curvature spectra and sharpness for losses over parameter pytrees.

A network with P parameters has a P x P Hessian: the 7,434 parameters of a small MNIST-1D MLP
already make 55 million entries, and a dense Hessian costs P products anyway. Everything here
therefore needs only products ``H v``, which forward-over-reverse differentiation computes
exactly for the price of one to two gradients (Pearlmutter 1994; 1.2 to 2 times a gradient
for MNIST-1D MLPs in ``benchmarks/hessian.py``). From products we get:

- the top eigenpairs by Lanczos with full reorthogonalization (Lanczos 1950), stopped when every
  residual ``||H v - lambda v||`` is below ``tol * |lambda|``; power iteration for comparison;
- the sharpness (top eigenvalue), warm-startable, cheap enough to track during training;
- the trace by Hutchinson's estimator (Hutchinson 1989) and the spectral density by stochastic
  Lanczos quadrature (Golub & Meurant 2010; Ghorbani, Krishnan & Xiao 2019);
- the same for the Gauss-Newton matrix and the Fisher information (Martens 2020).

A dense Hessian (`dense_hessian`) is offered for models small enough to diagonalize exactly;
`dense_spectra` gives the whole Hessian and Fisher spectra, and `correlation_eigenvalues` and
`top_half_decades` measure how *sloppy* a spectrum is: how many decades its eigenvalues span
(Transtrum et al. 2015; Yang et al. 2022).

Conventions. Spectral routines act on *flat* vectors of length P, in the order of
``jax.flatten_util.ravel_pytree(params)``; eigenvectors come back as a flat (k, P) array and
`Operator.unravel` turns a row back into a pytree. They take either a scalar ``loss_fn`` of a
parameter pytree (its Hessian at ``params`` is meant) or an `Operator` (from `hessian_operator`,
`gauss_newton_operator`, `fisher_operator` or `matrix_operator`), whose products are jitted
once per loss function and reused for new parameters: pass the *same* ``loss_fn`` object each
time (not a fresh lambda) to avoid recompiling, e.g. when tracking sharpness during training.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from jax.flatten_util import ravel_pytree
from scipy.linalg import eigh_tridiagonal

__all__ = [
    "hessian_vector_product",
    "gauss_newton_vector_product",
    "fisher_vector_product",
    "LIKELIHOODS",
    "Operator",
    "hessian_operator",
    "gauss_newton_operator",
    "fisher_operator",
    "matrix_operator",
    "to_dense",
    "dense_eigenvalues",
    "dense_hessian",
    "DENSE_MAX_PARAMS",
    "dense_spectra",
    "correlation_eigenvalues",
    "top_half_decades",
    "lanczos",
    "lanczos_top",
    "lanczos_convergence",
    "top_eigenpairs",
    "sharpness",
    "power_iteration",
    "residual_norms",
    "rademacher_probes",
    "hutchinson_trace",
    "slq_density",
    "SpectralDensity",
    "spectral_sum",
    "effective_dimension",
]


DENSE_MAX_PARAMS = 10_000
"""Largest P for which `dense_hessian` builds a matrix by default (P^2 floats: 400 MB)."""

LIKELIHOODS = ("categorical", "gaussian")
"""The output distributions `fisher_vector_product` knows: softmax and unit-variance Gaussian."""


# ------------------------------------------------------------------------------ products


def _check_tangent(params, v, name="v"):
    ps, vs = jax.tree.structure(params), jax.tree.structure(v)
    if ps != vs:
        raise ValueError(f"{name}: expected a pytree with the structure of params, got {vs} "
                         f"for params {ps}")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(v), strict=True):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{name}: leaf of shape {jnp.shape(b)} where params has "
                             f"{jnp.shape(a)}")


def hessian_vector_product(loss_fn: Callable, params, v):
    """Return ``H v``, where ``H`` is the Hessian of ``loss_fn`` at ``params``.

    Forward-over-reverse: the directional derivative of the gradient, ``d/dt grad(p + t v)``
    at ``t = 0`` (Pearlmutter 1994), exact up to rounding and 1.2 to 2 gradients in cost.
    Jitted, compiled once per ``loss_fn`` object: keep one ``loss_fn`` rather than passing a
    fresh lambda each call.

    Args:
      loss_fn: a scalar function of a parameter pytree, e.g.
        ``models.loss_fn(model, x, y, "mse")`` with ``_, params, _ =
        models.functional(model)``.
      params: the point at which ``H`` is taken (a pytree).
      v: a pytree with the structure and shapes of ``params``.

    Returns:
      A pytree like ``params``.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a scalar function of params, got "
                        f"{type(loss_fn).__name__}")
    _check_tangent(params, v)
    return _hvp(loss_fn, params, v)


@functools.partial(jax.jit, static_argnums=0)
def _hvp(loss_fn, params, v):
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def gauss_newton_vector_product(apply_fn: Callable, loss_of_outputs: Callable, params, x, y, v):
    """Return ``G v`` for the generalized Gauss-Newton matrix ``G = J^T H_L J``.

    ``J`` is the Jacobian of the outputs ``apply_fn(params, x)`` (all samples stacked) with
    respect to the parameters and ``H_L`` the Hessian of ``loss_of_outputs(outputs, y)`` with
    respect to the outputs (Martens 2020, section 8). ``G`` is the Hessian with the term that
    involves the network's second derivatives dropped; it is positive semi-definite whenever
    the loss is convex in the outputs (cross-entropy, squared error). Computed as a JVP, an
    output-space Hessian-vector product and a VJP; ``J`` is never formed.

    Args:
      apply_fn: ``apply_fn(params, x)`` -> outputs, e.g. from `udl_jax.models.functional`.
      loss_of_outputs: ``loss(outputs, y)`` -> scalar, e.g. `udl_jax.losses.cross_entropy`.
      params: parameter pytree.
      x, y: the inputs and targets over which the loss is taken.
      v: a pytree like ``params``.

    Returns:
      A pytree like ``params``.
    """
    _check_tangent(params, v)
    return _gnvp(apply_fn, loss_of_outputs, params, x, y, v)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gnvp(apply_fn, loss_of_outputs, params, x, y, v):
    def f(p):
        return apply_fn(p, x)

    out, jv = jax.jvp(f, (params,), (v,))
    hjv = jax.jvp(jax.grad(lambda o: loss_of_outputs(o, y)), (out,), (jv,))[1]
    return jax.vjp(f, params)[1](hjv)[0]


def _output_fisher(out, u, likelihood):
    """Per-sample Fisher of the output distribution applied to u; out, u of shape (n, k)."""
    n = out.shape[0] if out.ndim > 1 else 1
    if likelihood == "categorical":
        p = jax.nn.softmax(out, axis=-1)
        return (p * u - p * jnp.sum(p * u, axis=-1, keepdims=True)) / n
    return u / n


def fisher_vector_product(apply_fn: Callable, params, x, v, *, likelihood: str = "categorical"):
    """Return ``F v`` for the (true, model) Fisher information matrix, averaged over inputs.

    ``F = (1/n) sum_i J_i^T Lambda_i J_i`` with ``J_i`` the Jacobian of the outputs at input
    ``x_i`` and ``Lambda_i = E_{y ~ p(y | x_i)}[g g^T]``, ``g = d log p(y | f) / d f``, the
    Fisher of the model's *own* predictive distribution (Martens 2020, sections 5 and 9):

    - ``"categorical"`` (softmax of the outputs): ``Lambda_i = diag(p_i) - p_i p_i^T``. This
      equals the Gauss-Newton matrix of the mean cross-entropy (`udl_jax.losses.cross_entropy`)
      exactly, with any labels.
    - ``"gaussian"`` (unit variance): ``Lambda_i = I``, which is the Gauss-Newton matrix of
      `udl_jax.losses.mse` (half the mean squared error).

    This is *not* the "empirical Fisher" ``(1/n) sum_i g_i g_i^T`` built from the gradients at
    the observed labels, which Kunstner et al. (2019) and Martens (2020, section 11) warn
    against. No labels are needed.

    Args:
      apply_fn: ``apply_fn(params, x)`` -> outputs (logits for ``"categorical"``), (n, k).
      params: parameter pytree.
      x: inputs, (n, ...).
      v: a pytree like ``params``.
      likelihood: ``"categorical"`` or ``"gaussian"``.

    Returns:
      A pytree like ``params``.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
    _check_tangent(params, v)
    return _fvp(apply_fn, likelihood, params, x, v)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fvp(apply_fn, likelihood, params, x, v):
    def f(p):
        return apply_fn(p, x)

    out, jv = jax.jvp(f, (params,), (v,))
    return jax.vjp(f, params)[1](_output_fisher(out, jv, likelihood))[0]


# ----------------------------------------------------------------------------- operators


@dataclasses.dataclass(frozen=True, eq=False)
class Operator:
    """A symmetric linear operator on flat parameter vectors, with a jitted product.

    ``op(v)`` (or ``op.matvec(v)``) maps a (P,) vector to (P,); products are jitted once per
    ``apply`` function and reused for any ``args`` of the same shapes.

    Attributes:
      apply: ``apply(args, v)`` -> ``A v``, pure and jax-traceable; treated as static by jit.
      args: the arrays the product depends on (parameters, data), a pytree.
      size: P.
      unravel: maps a (P,) vector to a pytree like the parameters.
      name: what the operator is (for messages).
    """

    apply: Callable
    args: Any
    size: int
    unravel: Callable
    name: str = "operator"

    def matvec(self, v: jax.Array) -> jax.Array:
        """``A v`` for a (P,) vector (or ``A V^T`` row-wise for a (B, P) array)."""
        v = jnp.asarray(v)
        if v.shape[-1:] != (self.size,) or v.ndim > 2:
            raise ValueError(f"v: expected shape ({self.size},) or (batch, {self.size}), "
                             f"got {v.shape}")
        if v.ndim == 2:
            return jnp.asarray(np.stack(jax.device_get(
                [_apply(self.apply, self.args, row) for row in np.asarray(v)])))
        return _apply(self.apply, self.args, v)

    __call__ = matvec


@functools.partial(jax.jit, static_argnums=0)
def _apply(apply, args, v):
    """The one compiled product. Every routine below calls it one vector at a time: on a CPU,
    products vmapped over several vectors cost *more* per vector (measured about 1.6x), and sharing
    one compilation per operator keeps chapters' compile time down."""
    return apply(args, v)


def _flat(params):
    flat, unravel = ravel_pytree(params)
    return flat, unravel


@functools.lru_cache(maxsize=64)
def _hessian_apply(loss_fn):
    def apply(params, v):
        unravel = ravel_pytree(params)[1]
        return ravel_pytree(jax.jvp(jax.grad(loss_fn), (params,), (unravel(v),))[1])[0]
    return apply


@functools.lru_cache(maxsize=64)
def _gauss_newton_apply(apply_fn, loss_of_outputs):
    def apply(args, v):
        params, x, y = args
        unravel = ravel_pytree(params)[1]
        out = _gnvp(apply_fn, loss_of_outputs, params, x, y, unravel(v))
        return ravel_pytree(out)[0]
    return apply


@functools.lru_cache(maxsize=64)
def _fisher_apply(apply_fn, likelihood):
    def apply(args, v):
        params, x = args
        unravel = ravel_pytree(params)[1]
        out = _fvp(apply_fn, likelihood, params, x, unravel(v))
        return ravel_pytree(out)[0]
    return apply


def _matrix_apply(a, v):
    return a @ v


def _check_params(params):
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params: expected a pytree with at least one array, got no leaves")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"params: expected floating-point leaves, got {jnp.result_type(leaf)}")


def hessian_operator(loss_fn: Callable, params) -> Operator:
    """The Hessian of ``loss_fn`` at ``params`` as an `Operator` on flat vectors.

    Args:
      loss_fn: a scalar function of a parameter pytree. Products are compiled once per
        ``loss_fn`` object, so keep one and reuse it as ``params`` change.
      params: parameter pytree.

    Returns:
      An `Operator` of size P = number of parameters.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a scalar function of params, got "
                        f"{type(loss_fn).__name__}")
    _check_params(params)
    out = jax.eval_shape(loss_fn, params)
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(f"loss_fn: expected a scalar output, got {out}")
    flat, unravel = _flat(params)
    return Operator(_hessian_apply(loss_fn), params, int(flat.size), unravel, "Hessian")


def gauss_newton_operator(apply_fn: Callable, loss_of_outputs: Callable, params, x, y) -> Operator:
    """The generalized Gauss-Newton matrix (see `gauss_newton_vector_product`) as an `Operator`."""
    _check_params(params)
    flat, unravel = _flat(params)
    return Operator(_gauss_newton_apply(apply_fn, loss_of_outputs), (params, jnp.asarray(x),
                    jnp.asarray(y)), int(flat.size), unravel, "Gauss-Newton")


def fisher_operator(apply_fn: Callable, params, x, *, likelihood: str = "categorical") -> Operator:
    """The model Fisher information (see `fisher_vector_product`) as an `Operator`."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
    _check_params(params)
    flat, unravel = _flat(params)
    return Operator(_fisher_apply(apply_fn, likelihood), (params, jnp.asarray(x)),
                    int(flat.size), unravel, f"Fisher ({likelihood})")


def matrix_operator(a) -> Operator:
    """A symmetric (P, P) matrix as an `Operator` (for tests and toy problems)."""
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"a: expected a square 2D matrix, got shape {a.shape}")
    return Operator(_matrix_apply, a, int(a.shape[0]), lambda v: v, "matrix")


def _as_operator(loss_fn, params) -> Operator:
    if isinstance(loss_fn, Operator):
        return loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a scalar function of params or an Operator, got "
                        f"{type(loss_fn).__name__}")
    if params is None:
        raise ValueError("params: required when loss_fn is a function (None is only allowed "
                         "with an Operator)")
    return hessian_operator(loss_fn, params)


# --------------------------------------------------------------------------------- dense


def to_dense(operator: Operator, *, max_size: int = DENSE_MAX_PARAMS) -> jax.Array:
    """The (P, P) matrix of an `Operator`, built from P products (one per row).

    Args:
      operator: an `Operator`.
      max_size: refuse operators with P above this (P^2 floats of memory, P products).

    Returns:
      A (P, P) array, symmetric up to rounding (not symmetrized).
    """
    if not isinstance(operator, Operator):
        raise TypeError(f"operator: expected an Operator, got {type(operator).__name__}")
    p = operator.size
    if p > max_size:
        raise ValueError(
            f"a dense {operator.name} with P = {p:,} parameters would take {4 * p * p / 1e9:.1f} "
            f"GB and {p:,} products, above max_size={max_size:,}. Use products instead "
            "(top_eigenpairs, slq_density, hutchinson_trace), or raise max_size.")
    eye = np.eye(p, dtype=_dtype(operator))
    # stacked in NumPy: jnp.stack of P arrays compiles a P-operand concatenation (1.6 s)
    return jnp.asarray(np.stack(jax.device_get([_apply(operator.apply, operator.args, e)
                                                for e in eye])))


def dense_eigenvalues(a) -> np.ndarray:
    """All eigenvalues of a symmetric matrix, in float64 and in descending order.

    The matrix is symmetrized, ``(a + a^T) / 2``, and diagonalized by LAPACK with BLAS held to
    one thread (through ``threadpoolctl``): on a 2-core CPU shared with other
    work, multithreaded OpenBLAS was measured up to 50 times slower than one thread for a
    1,234 x 1,234 matrix (8.5 s against 0.15 s).

    Args:
      a: a (P, P) symmetric matrix (NumPy or JAX).

    Returns:
      (P,) NumPy float64 array, largest first.
    """
    a = np.asarray(a, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"a: expected a square 2D matrix, got shape {a.shape}")
    a = (a + a.T) / 2
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        return np.linalg.eigvalsh(a)[::-1]


def dense_hessian(loss_fn: Callable, params, *, max_params: int = DENSE_MAX_PARAMS) -> jax.Array:
    """The full Hessian of ``loss_fn`` at ``params``, for small models only.

    Built from P Hessian-vector products (rows in ``ravel_pytree(params)`` order), so it is
    exact to rounding and needs no more memory than the matrix itself.

    Args:
      loss_fn: a scalar function of a parameter pytree.
      params: parameter pytree with P scalars in all.
      max_params: refuse P above this (default `DENSE_MAX_PARAMS` = 10,000: 400 MB).

    Returns:
      A (P, P) array.

    Raises:
      ValueError: if P > max_params.
    """
    return to_dense(hessian_operator(loss_fn, params), max_size=max_params)


def dense_spectra(
    loss_fn: Callable, apply_fn: Callable, params, x, *, likelihood: str = "categorical"
) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues of the Hessian of ``loss_fn`` and of the Fisher information, densely.

    For the cross-entropy the Fisher of the categorical likelihood equals the Gauss-Newton
    matrix, so the two spectra agree at the top (the Gauss-Newton part dominates the large
    eigenvalues) and part at the bottom, where the Hessian has small negative eigenvalues from
    the residual-weighted curvature of the network (Sagun et al. 2017; Martens 2020, sec. 9).
    For models small enough for `dense_hessian`.

    Args:
      loss_fn: the training loss as a scalar function of a parameter pytree.
      apply_fn: ``apply_fn(params, x)`` returning the (n, k) outputs (logits).
      params: parameter pytree with P scalars in all.
      x: (n, ...) inputs of the Fisher (those of the training loss).
      likelihood: see `fisher_operator`.

    Returns:
      ``(eig_hessian, eig_fisher)``: two (P,) float64 arrays, largest first.
    """
    eig_h = dense_eigenvalues(dense_hessian(loss_fn, params))
    eig_f = dense_eigenvalues(to_dense(fisher_operator(apply_fn, params, x, likelihood=likelihood)))
    return eig_h, eig_f


def correlation_eigenvalues(x) -> np.ndarray:
    """Eigenvalues of the (uncentred) input correlation matrix ``X^T X / n``, in float64.

    This is the Hessian of least squares with a linear model, ``||X w - y||^2 / (2 n)``: the
    curvature a network's Hessian and Fisher inherit from its data (Yang et al. 2022).

    Args:
      x: (n, d) inputs.

    Returns:
      (d,) float64 array, largest first.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x: expected a non-empty (n, d) array, got shape {x.shape}")
    return dense_eigenvalues(x.T @ x / len(x))


def top_half_decades(eigenvalues) -> float:
    """``log10(lambda_1 / lambda_median)``: how many decades the top half of a spectrum spans.

    A *sloppy* model's eigenvalues spread evenly over many decades (Transtrum et al. 2015);
    measuring from the median (the ``floor(P/2)``-th largest eigenvalue) rather than the smallest
    keeps the measure blind to the rounding-level and negative eigenvalues at the bottom.

    Args:
      eigenvalues: (P,) eigenvalues in any order, P >= 2; the median one must be positive.

    Returns:
      The number of decades, a float.
    """
    e = np.asarray(eigenvalues)
    if e.ndim != 1 or len(e) < 2:
        raise ValueError(f"eigenvalues: expected a 1D array of at least 2, got shape {e.shape}")
    e = np.sort(e)[::-1]
    if not e[len(e) // 2 - 1] > 0:
        raise ValueError("eigenvalues: expected the top half to be positive")
    return float(np.log10(e[0] / e[len(e) // 2 - 1]))


# ------------------------------------------------------------------------------- Lanczos


@jax.jit
def _lanczos_update(basis, w, j):
    """Given ``w = A q_j`` (``q_j = basis[j]``), orthogonalize ``w`` against every row of
    ``basis`` and store the next Lanczos vector in row j + 1.

    Rows beyond j are zero, so they do not contribute. Returns (basis, alpha_j, beta_j,
    q_{j+1}); the loop keeps q_{j+1} rather than index ``basis`` eagerly (an eager ``basis[j]``
    compiles a new slice for every j). On breakdown (the Krylov space is invariant) the next
    vector is a random one orthogonal to the basis and beta_j is recorded as 0 (T splits into
    blocks).
    """
    alpha = jnp.vdot(basis[j], w)
    scale = jnp.linalg.norm(w)
    for _ in range(2):  # classical Gram-Schmidt twice ("twice is enough", Parlett 1998)
        w = w - basis.T @ (basis @ w)
    beta = jnp.linalg.norm(w)
    eps = jnp.finfo(w.dtype).eps
    broke = beta <= 100 * eps * jnp.maximum(scale, jnp.finfo(w.dtype).tiny)

    def restart(w):  # a fixed pseudo-random vector (a sine hash: compiles faster than an RNG)
        r = jnp.sin(jnp.arange(w.shape[0], dtype=w.dtype) * 12.9898 + (j + 1) * 78.233) * 43758.5
        r = r - jnp.floor(r) - 0.5
        for _ in range(2):
            r = r - basis.T @ (basis @ r)
        return r

    w = jax.lax.cond(broke, restart, lambda w: w, w)
    q_next = w / jnp.linalg.norm(w)
    basis = basis.at[j + 1].set(q_next, mode="drop")
    return basis, alpha, jnp.where(broke, 0.0, beta), q_next


@functools.partial(jax.jit, static_argnums=1)
def _new_basis(v0, capacity):
    q = v0 / jnp.linalg.norm(v0)
    return jnp.zeros((capacity, v0.shape[0]), v0.dtype).at[0].set(q), q


@functools.partial(jax.jit, static_argnums=1)
def _grow(basis, capacity):
    return jnp.zeros((capacity, basis.shape[1]), basis.dtype).at[:basis.shape[0]].set(basis)


def _lanczos_loop(op, v0, num_iter):
    """``num_iter`` Lanczos steps; returns (alphas, betas, basis) as device arrays."""
    basis, q = _new_basis(v0, num_iter)
    alphas, betas = [], []
    for j in range(num_iter):
        w = _apply(op.apply, op.args, q)
        basis, a, b, q = _lanczos_update(basis, w, j)
        alphas.append(a)
        betas.append(b)
    return jnp.stack(alphas), jnp.stack(betas)[:-1], basis


class _Wrapped:
    """A flat matvec callable as a static ``apply(args, v)`` (hash and equality by identity)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, args, v):
        return self.fn(v)

    def __hash__(self):
        return hash(self.fn)

    def __eq__(self, other):
        return isinstance(other, _Wrapped) and other.fn is self.fn


def lanczos(matvec, v0, num_iter: int):
    """Lanczos tridiagonalization with full reorthogonalization (Lanczos 1950).

    Builds an orthonormal basis ``Q`` (rows ``q_0 = v0/|v0|, q_1, ...``) of the Krylov space
    ``span{v0, A v0, ..., A^(m-1) v0}`` in which ``Q A Q^T = T`` is tridiagonal. Every new
    vector is orthogonalized against all previous ones (twice), so Ritz values do not get
    spurious copies as in the plain three-term recurrence (Golub & Van Loan 2013, section
    10.3). If the Krylov space becomes invariant, Lanczos restarts from a random vector
    orthogonal to the basis and records a zero off-diagonal (``T`` splits into blocks).

    Args:
      matvec: a symmetric linear map on (P,) vectors: an `Operator`, or any jax-traceable
        function (compiled once per function object).
      v0: (P,) starting vector, nonzero.
      num_iter: m, the number of products, 1 <= m <= P.

    Returns:
      ``(alphas, betas, basis)``: the diagonal (m,) and off-diagonal (m-1,) of ``T`` and the
      basis, (m, P) with orthonormal rows. The eigenvalues of ``T`` (Ritz values) approximate
      the extreme eigenvalues of ``A``; Ritz vectors are ``basis.T @ s``.
    """
    v0 = jnp.asarray(v0)
    if v0.ndim != 1 or v0.size == 0:
        raise ValueError(f"v0: expected a nonzero 1D vector, got shape {v0.shape}")
    if not jnp.issubdtype(v0.dtype, jnp.floating):
        v0 = v0.astype(jnp.float32)
    if not isinstance(num_iter, int) or not 1 <= num_iter <= v0.size:
        raise ValueError(f"num_iter: expected an int in [1, P={v0.size}], got {num_iter!r}")
    if float(jnp.linalg.norm(v0)) == 0:
        raise ValueError("v0: expected a nonzero vector, got all zeros")
    if isinstance(matvec, Operator):
        if matvec.size != v0.size:
            raise ValueError(f"v0: expected shape ({matvec.size},) for this operator, "
                             f"got {v0.shape}")
        return _lanczos_loop(matvec, v0.astype(_dtype(matvec)), num_iter)
    if not callable(matvec):
        raise TypeError(f"matvec: expected an Operator or a function, got {type(matvec).__name__}")
    op = Operator(_Wrapped(matvec), None, int(v0.size), lambda v: v, "matvec")
    return _lanczos_loop(op, v0, num_iter)


def _dtype(op: Operator):
    leaves = [a for a in jax.tree.leaves(op.args) if jnp.issubdtype(jnp.result_type(a),
                                                                     jnp.floating)]
    return jnp.result_type(*leaves) if leaves else jnp.float32


def _ritz(alphas, betas):
    """Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal matrix T."""
    a, b = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    if a.size == 1:
        return a, np.ones((1, 1))
    return eigh_tridiagonal(a, b)


def lanczos_top(matvec: Callable, v0: jax.Array, num_iter: int):
    """Top (largest algebraic) eigenpair of a symmetric operator from ``num_iter`` Lanczos steps.

    The same Lanczos step as `lanczos` (full reorthogonalization, a restart
    orthogonal to the basis if the Krylov space becomes invariant, e.g. when ``v0`` is already
    an eigenvector), run for a fixed number of products inside ``lax.fori_loop``: pure and
    jittable, with no host round trips, unlike the adaptive `top_eigenpairs`.
    `udl_jax.edge_of_stability.gd_with_sharpness` runs it between gradient steps.
    The largest eigenvalue of the tridiagonal ``T`` and its Ritz vector approximate the top
    eigenpair (Golub & Van Loan 2013, section 10.1).

    Args:
      matvec: symmetric linear map on (P,) vectors, jax-traceable.
      v0: (P,) nonzero starting vector, e.g. the previous top eigenvector (a warm start).
      num_iter: m, the number of products, 1 <= m <= P.

    Returns:
      ``(eigenvalue, eigenvector)``: a scalar and a (P,) unit vector.
    """
    p = v0.shape[0]
    if not 1 <= num_iter <= p:
        raise ValueError(f"num_iter: expected an int in [1, P={p}], got {num_iter!r}")
    q = v0 / jnp.linalg.norm(v0)
    basis = jnp.zeros((num_iter, p), v0.dtype).at[0].set(q)

    def body(j, state):
        basis, q, alphas, betas = state
        basis, alpha, beta, q = _lanczos_update(basis, matvec(q), j)
        return basis, q, alphas.at[j].set(alpha), betas.at[j].set(beta)

    zeros = jnp.zeros(num_iter, v0.dtype)
    basis, _, alphas, betas = jax.lax.fori_loop(0, num_iter, body, (basis, q, zeros, zeros))
    t = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    theta, s = jnp.linalg.eigh(t)
    v = basis.T @ s[:, -1]
    return theta[-1], v / jnp.linalg.norm(v)


def lanczos_convergence(alphas, betas, which: str = "LA", *, matvec=None, basis=None):
    """The top Ritz value and its relative residual after each Lanczos step.

    After m steps the Ritz pair ``(theta, y = Q_m^T s)`` of ``T_m`` has residual
    ``||A y - theta y|| = beta_m |s_m|`` (``s_m`` the last entry of ``s``). With full
    reorthogonalization this estimate equals the true residual down to the rounding level of
    the products (1e-7 to 1e-6 relative in float32); below it the estimate keeps falling and the
    true residual does not. Pass ``matvec`` and ``basis`` to get true residuals instead (one
    product per step).

    Args:
      alphas, betas: the output of `lanczos` for M steps, shapes (M,) and (M-1,).
      which: ``"LA"`` (largest algebraic) or ``"LM"`` (largest magnitude).
      matvec: optional, the operator (an `Operator` or a function on flat vectors).
      basis: optional, the (M, P) basis returned by `lanczos`; needed with ``matvec``.

    Returns:
      ``(theta, relative_residual)``, each (M-1,): entry ``m - 1`` after m products.
    """
    a, b = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    if a.ndim != 1 or b.shape != (a.size - 1,) or a.size < 2:
        raise ValueError(f"alphas, betas: expected shapes (M,) and (M-1,) with M >= 2, got "
                         f"{a.shape} and {b.shape}")
    if which not in ("LA", "LM"):
        raise ValueError(f"which: expected 'LA' or 'LM', got {which!r}")
    if (matvec is None) != (basis is None):
        raise ValueError("matvec, basis: pass both (true residuals) or neither (estimates)")
    if basis is not None:
        dtype = jnp.asarray(basis).dtype
        basis = np.asarray(basis, np.float64)
        if basis.ndim != 2 or basis.shape[0] != a.size:
            raise ValueError(f"basis: expected shape ({a.size}, P), got {basis.shape}")
    thetas, res = [], []
    for m in range(1, a.size):
        theta, s = _ritz(a[:m], b[:m - 1])
        i = _select(theta, which, 1)[0]
        thetas.append(theta[i])
        if basis is None:
            res.append(abs(b[m - 1] * s[-1, i]) / abs(theta[i]))
        else:
            y = s[:, i] @ basis[:m]
            y /= np.linalg.norm(y)
            ay = np.asarray(matvec(jnp.asarray(y, dtype)), np.float64)
            res.append(np.linalg.norm(ay - theta[i] * y) / abs(theta[i]))
    return np.array(thetas), np.array(res)


def _select(theta, which, k):
    """Indices of the k wanted Ritz values, best first."""
    order = np.argsort(-theta) if which == "LA" else np.argsort(-np.abs(theta))
    return order[:k]


def _start_vector(key, p, v0, dtype):
    if v0 is not None:
        v0 = jnp.asarray(v0, dtype).reshape(-1)
        if v0.shape != (p,):
            raise ValueError(f"v0: expected a flat vector of shape ({p},), got {v0.shape}")
        if float(jnp.linalg.norm(v0)) == 0:
            raise ValueError("v0: expected a nonzero vector, got all zeros")
        return v0
    if key is None:
        raise ValueError("key: a PRNG key is required when no v0 is given")
    return jax.random.normal(key, (p,), dtype)


def _check_k_tol(k, tol, max_iter, p):
    if not isinstance(k, int) or not 1 <= k <= p:
        raise ValueError(f"k: expected an int in [1, P={p}], got {k!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol: expected a positive float, got {tol!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < k):
        raise ValueError(f"max_iter: expected an int >= k={k} or None, got {max_iter!r}")


def _adaptive_lanczos(op, v0, k, tol, max_iter, which):
    """Adaptive Lanczos: one product per step, stopped on the Ritz residuals."""
    p = op.size
    max_iter = min(p, max_iter)
    capacity = min(max_iter, 32)
    basis, q = _new_basis(v0, capacity)
    alphas, betas = [], []
    for j in range(max_iter):
        if j + 1 >= capacity and capacity < max_iter:  # grow the basis (a few compilations)
            capacity = min(2 * capacity, max_iter)
            basis = _grow(basis, capacity)
        w = _apply(op.apply, op.args, q)
        basis, a, b, q = _lanczos_update(basis, w, j)
        alphas.append(float(a))
        betas.append(float(b))
        m = j + 1
        if m < k:
            continue
        theta, s = _ritz(alphas, betas[:-1])
        idx = _select(theta, which, k)
        # ||A y_i - theta_i y_i|| = beta_m |s_{m,i}| for the Ritz vector y_i = Q^T s_i
        res = abs(betas[-1]) * np.abs(s[-1, idx])
        if np.all(res <= tol * np.abs(theta[idx])):
            break
    converged = bool(np.all(res <= tol * np.abs(theta[idx])))
    if not converged:
        warnings.warn(f"Lanczos did not reach residual tol={tol:g} within max_iter={max_iter} "
                      f"products (relative residuals {np.round(res / np.abs(theta[idx]), 6)}); "
                      "returning the current estimates.", RuntimeWarning, stacklevel=3)
    vecs = s[:, idx].T @ np.asarray(basis, np.float64)[:m]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return jnp.asarray(theta[idx], basis.dtype), jnp.asarray(vecs, basis.dtype), m


def _eigsh_top(op, v0, k, tol, max_iter, which):
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    count = [0]

    def mv(v):
        count[0] += 1
        return np.asarray(op(jnp.asarray(v.ravel(), v0.dtype)), np.float64)

    lin = LinearOperator((op.size, op.size), matvec=mv, dtype=np.float64)
    try:
        vals, vecs = eigsh(lin, k=k, which=which, tol=tol, v0=np.asarray(v0, np.float64),
                           maxiter=max_iter)
    except ArpackNoConvergence as e:
        warnings.warn(f"eigsh did not converge: {e}", RuntimeWarning, stacklevel=3)
        vals, vecs = e.eigenvalues, e.eigenvectors
    order = np.argsort(-vals) if which == "LA" else np.argsort(-np.abs(vals))
    return (jnp.asarray(vals[order], v0.dtype), jnp.asarray(vecs[:, order].T, v0.dtype),
            count[0])


def top_eigenpairs(loss_fn, params, key, k: int = 1, tol: float = 1e-3,
                   max_iter: int | None = None, *, v0=None, which: str = "LA",
                   method: str = "lanczos"):
    """The k largest eigenvalues and their eigenvectors, from Hessian-vector products only.

    Lanczos with full reorthogonalization, one product per iteration, stopped as soon as every
    wanted Ritz pair has residual ``||H v - lambda v|| <= tol * |lambda|`` (with unit ``v``).
    The residual is read off the tridiagonal matrix (``beta_m |s_{m,i}|``), which with full
    reorthogonalization equals the true residual down to the rounding level of the products
    (hence ``tol`` must be at least 10 machine epsilons), so no product is spent on checking.
    A residual bound is honest where watching successive estimates is not (see
    `power_iteration`): the eigenvalue error is at most the residual, and about
    ``residual^2 / gap``.

    Lanczos or SciPy's ARPACK (``eigsh`` over a ``LinearOperator`` wrapping the same jitted
    product)? Measured in ``benchmarks/hessian.py`` on a trained 7,434-parameter MLP at
    ``tol=1e-3``: Lanczos used 10-11 products for k = 1 and 15-17 for k = 5, ARPACK 21 in both
    cases (it starts with ``ncv = max(2k + 1, 20)`` basis vectors), in about half the time. So
    Lanczos is the default and ``method="eigsh"`` is kept for comparison.

    Args:
      loss_fn: a scalar function of a parameter pytree (its Hessian is meant) or an `Operator`
        (then ``params`` is ignored and may be None).
      params: parameter pytree.
      key: PRNG key for the random start (ignored when ``v0`` is given).
      k: number of eigenpairs.
      tol: relative residual tolerance.
      max_iter: most products (default ``min(P, 300)``); a `RuntimeWarning` if not converged.
      v0: optional (P,) starting vector, e.g. the previous top eigenvector (warm start).
      which: ``"LA"`` largest algebraic (default) or ``"LM"`` largest magnitude.
      method: ``"lanczos"`` (default) or ``"eigsh"`` (SciPy ARPACK over the same jitted
        product, in float64; for comparison).

    Returns:
      ``(eigenvalues, eigenvectors, num_products)``: (k,) eigenvalues, best first (descending
      for ``"LA"``); (k, P) flat unit eigenvectors in ``ravel_pytree`` order (rows; use
      ``hessian_operator(loss_fn, params).unravel(row)`` for a pytree); the number of
      products used.
    """
    op = _as_operator(loss_fn, params)
    if max_iter is None:
        max_iter = min(op.size, 300)
    _check_k_tol(k, tol, max_iter, op.size)
    floor = 10 * float(jnp.finfo(_dtype(op)).eps)
    if tol < floor:
        raise ValueError(f"tol: expected >= {floor:.1e} for {jnp.dtype(_dtype(op)).name} "
                         f"products (their rounding level), got {tol:g}")
    if which not in ("LA", "LM"):
        raise ValueError(f"which: expected 'LA' or 'LM', got {which!r}")
    v0 = _start_vector(key, op.size, v0, _dtype(op))
    if method == "lanczos":
        return _adaptive_lanczos(op, v0, k, tol, max_iter, which)
    if method == "eigsh":
        if k >= op.size:
            raise ValueError(f"k: eigsh needs k < P={op.size}, got {k}")
        return _eigsh_top(op, v0, k, tol, max_iter, which)
    raise ValueError(f"method: expected 'lanczos' or 'eigsh', got {method!r}")


def sharpness(loss_fn, params, key=None, tol: float = 1e-3, *, v0=None, max_iter: int = 100,
              return_eigenvector: bool = False):
    """The top (largest algebraic) Hessian eigenvalue, the "sharpness" of Cohen et al. (2021).

    Lanczos (`top_eigenpairs` with ``k=1``) on the jitted product; compiled once per
    ``loss_fn`` object. To track it during training, keep one ``loss_fn`` (e.g. a function of
    params that closes over a fixed batch) and pass the previous eigenvector as ``v0``: a warm
    start usually converges in a few products.

    Args:
      loss_fn: a scalar function of a parameter pytree, or an `Operator`.
      params: parameter pytree (None with an `Operator`).
      key: PRNG key for a random start; needed when ``v0`` is None.
      tol: relative residual tolerance ``||H v - lambda v|| <= tol |lambda|``.
      v0: optional (P,) warm start.
      max_iter: most products.
      return_eigenvector: also return the (P,) flat eigenvector (to pass as the next ``v0``).

    Returns:
      The top eigenvalue as a float, or ``(eigenvalue, eigenvector)``.
    """
    vals, vecs, _ = top_eigenpairs(loss_fn, params, key, k=1, tol=tol, max_iter=max_iter,
                                   v0=v0, which="LA")
    if return_eigenvector:
        return float(vals[0]), vecs[0]
    return float(vals[0])


# ------------------------------------------------------------------------ power iteration


@jax.jit
def _deflate(v, found):
    """Orthogonalize v against the rows of ``found`` (twice) and normalize."""
    for _ in range(2):
        v = v - found.T @ (found @ v)
    return v / jnp.linalg.norm(v)


@jax.jit
def _rayleigh(v, w):
    """Rayleigh quotient and residual norm of a unit v with w = A v."""
    lam = jnp.vdot(v, w)
    return lam, jnp.linalg.norm(w - lam * v)


def power_iteration(loss_fn, params, key, tol: float = 1e-3, max_iter: int = 1000, *,
                    k: int = 1, stop: str = "residual", v0=None,
                    callback: Callable[[int, float, float], None] | None = None):
    """Top eigenpairs by power iteration with deflation, for comparison with Lanczos.

    For each of k eigenpairs in turn: ``v <- H v / |H v|``, keeping ``v`` orthogonal to the
    eigenvectors already found (the deflation of PyHessian, Yao et al. 2020). Finds the
    eigenvalues of largest *magnitude*. Two stopping rules:

    - ``"residual"``: ``||H v - lambda v|| <= tol |lambda|``, as in `top_eigenpairs`.
    - ``"successive"``: PyHessian's ``|lambda_t - lambda_{t-1}| / (|lambda_{t-1}| + 1e-6) <
      tol``. It watches the estimate stall, not converge: when two eigenvalues are close,
      ``lambda_t`` creeps up slowly and the rule stops early with an eigenvalue error above
      ``tol`` and a residual far above it (``benchmarks/hessian.py`` measures this).

    Deflation is only as good as the eigenvectors already found: an error of angle ``e`` in
    ``v_1`` leaves a component that keeps the residual of later pairs near
    ``e |lambda_1 - lambda_i|``, about the residual at which ``v_1`` was stopped,
    ``tol |lambda_1|``. So with the residual rule, pairs after the first may not reach
    ``tol |lambda_i|`` at all (they stop at ``max_iter`` with a warning). Lanczos has no such
    floor: all pairs converge together in one Krylov space.

    Args:
      loss_fn: a scalar function of a parameter pytree, or an `Operator`.
      params: parameter pytree (None with an `Operator`).
      key: PRNG key for the random starts.
      tol: tolerance of the stopping rule.
      max_iter: most products *per eigenpair*; a `RuntimeWarning` if not converged.
      k: number of eigenpairs.
      stop: ``"residual"`` or ``"successive"``.
      v0: optional (P,) start for the first eigenpair.
      callback: optional ``callback(i, lambda, residual)`` after every product, with ``i`` the
        eigenpair being sought and ``residual = ||H v - lambda v||`` (for convergence plots).

    Returns:
      ``(eigenvalues, eigenvectors, num_products)`` as in `top_eigenpairs`: (k,) in the order
      found, (k, P) flat unit vectors, total number of products.
    """
    op = _as_operator(loss_fn, params)
    _check_k_tol(k, tol, max_iter, op.size)
    if stop not in ("residual", "successive"):
        raise ValueError(f"stop: expected 'residual' or 'successive', got {stop!r}")
    dtype = _dtype(op)
    found = jnp.zeros((k, op.size), dtype)
    vals, products, unconverged = [], 0, []
    for i in range(k):
        ki = None if key is None else jax.random.fold_in(key, i)
        v = _start_vector(ki, op.size, v0 if i == 0 else None, dtype)
        prev = None
        for _ in range(max_iter):
            v = _deflate(v, found)
            w = _apply(op.apply, op.args, v)
            lam, res = _rayleigh(v, w)
            products += 1
            lam, res = float(lam), float(res)
            if callback is not None:
                callback(i, lam, res)
            if stop == "residual":
                done = res <= tol * abs(lam)
            else:
                done = prev is not None and abs(lam - prev) / (abs(prev) + 1e-6) < tol
            if done:
                break
            prev = lam
            v = w
        else:
            unconverged.append(i)
        found = found.at[i].set(v)
        vals.append(lam)
    if unconverged:
        warnings.warn(f"power iteration: eigenpairs {unconverged} did not meet the '{stop}' rule "
                      f"with tol={tol:g} in max_iter={max_iter} products each.", RuntimeWarning,
                      stacklevel=2)
    return jnp.asarray(vals, dtype), found, products


def residual_norms(loss_fn, params, eigenvalues, eigenvectors) -> np.ndarray:
    """True residuals ``||H v_i - lambda_i v_i|| / ||v_i||``, one product per pair.

    Args:
      loss_fn: a scalar function of a parameter pytree, or an `Operator`.
      params: parameter pytree (None with an `Operator`).
      eigenvalues: (k,).
      eigenvectors: (k, P) flat.

    Returns:
      (k,) NumPy array.
    """
    op = _as_operator(loss_fn, params)
    vecs = jnp.atleast_2d(jnp.asarray(eigenvectors))
    vals = jnp.atleast_1d(jnp.asarray(eigenvalues))
    if vecs.shape != (vals.shape[0], op.size):
        raise ValueError(f"eigenvectors: expected shape ({vals.shape[0]}, {op.size}), "
                         f"got {vecs.shape}")
    hv = op(vecs)
    return np.asarray(jnp.linalg.norm(hv - vals[:, None] * vecs, axis=1)
                      / jnp.linalg.norm(vecs, axis=1))


# ------------------------------------------------------------------ trace and density


def rademacher_probes(key, num: int, size: int, dtype=jnp.float32) -> np.ndarray:
    """The random probes of `hutchinson_trace` and `slq_density`: (num, size) entries +-1.

    Probe i comes from a NumPy generator seeded with the data of ``jax.random.fold_in(key, i)``
    (no global state), so the first probes do not depend on how many are drawn, and no
    compilation is needed per probe size.
    """
    probes = np.empty((num, size), dtype=jnp.dtype(dtype))
    for i in range(num):
        seed = np.asarray(jax.random.key_data(jax.random.fold_in(key, i))).ravel()
        probes[i] = 2 * np.random.default_rng(seed).integers(0, 2, size) - 1
    return probes


def hutchinson_trace(loss_fn, params, key, num_samples: int = 100) -> tuple[float, float]:
    """Hutchinson's (1989) estimate of ``tr H`` from ``num_samples`` products.

    ``tr H = E[v^T H v]`` for any random ``v`` with ``E[v v^T] = I``; Rademacher ``v``
    (entries +-1) give the smallest variance, ``2 (||H||_F^2 - sum_i H_ii^2)`` per sample.

    Args:
      loss_fn: a scalar function of a parameter pytree, or an `Operator` (e.g. a Fisher).
      params: parameter pytree (None with an `Operator`).
      key: PRNG key for the probes.
      num_samples: number of probes (products), >= 2.

    Returns:
      ``(estimate, standard_error)``: the sample mean of ``v^T H v`` and its standard error
      (sample standard deviation / sqrt(num_samples)), as floats.
    """
    op = _as_operator(loss_fn, params)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples: expected an int >= 2, got {num_samples!r}")
    vs = rademacher_probes(key, num_samples, op.size, _dtype(op))
    q = np.array([jnp.vdot(v, _apply(op.apply, op.args, v)) for v in vs], np.float64)
    return float(q.mean()), float(q.std(ddof=1) / np.sqrt(num_samples))


class SpectralDensity(NamedTuple):
    """Result of `slq_density`.

    Attributes:
      density: (G,) smoothed eigenvalue density on ``grid`` (integrates to about 1).
      nodes: (num_probes, m) Ritz values, the quadrature nodes.
      weights: (num_probes, m) quadrature weights, summing to 1 over *all* entries, so that
        ``sum(weights * nodes**j)`` estimates ``tr(H^j) / P``.
      grid: (G,) the eigenvalue grid.
    """

    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray


def slq_density(loss_fn, params, key, num_probes: int = 8, num_iter: int = 80, grid=None,
                sigma: float | None = None) -> SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature (Golub & Meurant 2010; Ghorbani,
    Krishnan & Xiao 2019).

    For a Rademacher probe ``v`` normalized to unit length, ``m`` Lanczos steps from ``v``
    give a tridiagonal ``T`` with eigenpairs ``(theta_i, s_i)``; the Gauss quadrature rule with
    nodes ``theta_i`` and weights ``s_{1,i}^2`` integrates the spectral measure
    ``sum_j (v^T u_j)^2 delta(lambda - lambda_j)`` exactly for polynomials of degree
    ``<= 2m - 1``, whose expectation over ``v`` is the eigenvalue density
    ``(1/P) sum_j delta(lambda - lambda_j)``. Averaging over probes and replacing each delta by a
    Gaussian gives

        ``density(t) = (1/num_probes) sum_l sum_i s_{1,i}^(l)2 N(t; theta_i^(l), sigma^2)``,

    the smoothing of Ghorbani et al. (2019). Extreme eigenvalues (outliers) are
    resolved sharply; the bulk is resolved only to about the spacing of the Ritz values, so
    ``sigma`` should not be much smaller than that. Cost: ``num_probes * num_iter`` products;
    memory ``num_iter * P`` floats for one basis at a time.

    Args:
      loss_fn: a scalar function of a parameter pytree, or an `Operator`.
      params: parameter pytree (None with an `Operator`).
      key: PRNG key for the probes.
      num_probes: number of random probes.
      num_iter: Lanczos steps per probe, m <= P.
      grid: (G,) eigenvalue grid; default 1,000 points from the smallest node minus 5 sigma
        to the largest plus 5 sigma.
      sigma: width (standard deviation) of the Gaussian kernel; default 1% of the range of
        the nodes.

    Returns:
      A `SpectralDensity` ``(density, nodes, weights, grid)``.
    """
    op = _as_operator(loss_fn, params)
    if not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes: expected a positive int, got {num_probes!r}")
    if not isinstance(num_iter, int) or not 1 <= num_iter <= op.size:
        raise ValueError(f"num_iter: expected an int in [1, P={op.size}], got {num_iter!r}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma: expected a positive float or None, got {sigma!r}")
    vs = rademacher_probes(key, num_probes, op.size, _dtype(op))
    nodes, weights = [], []
    for v in vs:
        a, b, _ = _lanczos_loop(op, v, num_iter)
        theta, s = _ritz(a, b)
        nodes.append(theta)
        weights.append(s[0] ** 2)
    nodes = np.stack(nodes)
    weights = np.stack(weights) / num_probes
    if sigma is None:
        sigma = 0.01 * max(float(np.ptp(nodes)), 1e-12)
    if grid is None:
        grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, 1000)
    grid = np.asarray(grid, np.float64)
    if grid.ndim != 1:
        raise ValueError(f"grid: expected a 1D array of eigenvalues, got shape {grid.shape}")
    density = np.zeros_like(grid)
    for theta, w in zip(nodes.ravel(), weights.ravel(), strict=True):
        density += w * np.exp(-0.5 * ((grid - theta) / sigma) ** 2)
    density /= sigma * np.sqrt(2 * np.pi)
    return SpectralDensity(density, nodes, weights, grid)


def spectral_sum(density: SpectralDensity, fn: Callable, size: int) -> float:
    """Estimate ``tr f(H) = sum_j f(lambda_j)`` from SLQ nodes and weights.

    ``size * sum(weights * f(nodes))``; e.g. ``fn = lambda t: t`` gives the trace and
    ``fn = lambda t: t / (t + alpha)`` the effective dimension (see `effective_dimension`).

    Args:
      density: a `SpectralDensity` from `slq_density`.
      fn: a vectorized NumPy function of eigenvalues.
      size: P, the dimension of the operator.
    """
    return float(size * np.sum(density.weights * fn(density.nodes)))


def effective_dimension(eigenvalues, alpha: float, weights=None) -> float:
    """``N_eff(alpha) = sum_i lambda_i / (lambda_i + alpha)`` over the positive eigenvalues.

    The number of directions in which curvature ``lambda_i`` beats a prior (or weight decay)
    of precision ``alpha`` (MacKay 1992; Maddox, Benton & Wilson 2020): each eigenvalue
    ``>> alpha`` counts about 1, each ``<< alpha`` about 0. Negative eigenvalues count 0.

    Args:
      eigenvalues: an array of eigenvalues, or of SLQ nodes.
      alpha: positive scale.
      weights: optional weights of the same shape, for a quadrature: with a `SpectralDensity`
        ``d`` of a size-P operator, ``effective_dimension(d.nodes, alpha, P * d.weights)``.

    Returns:
      ``sum_i w_i lambda_i / (lambda_i + alpha)`` (``w_i = 1`` without weights), a float.
    """
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive float, got {alpha!r}")
    lam = np.clip(np.asarray(eigenvalues, np.float64), 0, None)
    w = np.ones_like(lam) if weights is None else np.asarray(weights, np.float64)
    if w.shape != lam.shape:
        raise ValueError(f"weights: expected the shape of eigenvalues {lam.shape}, got {w.shape}")
    return float(np.sum(w * lam / (lam + alpha)))
