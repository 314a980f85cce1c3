"""Generalization-bound arithmetic: PAC-Bayes and Occam bounds, and the code lengths they need.

A bound is only as good as its arithmetic. The tightest classical bounds are stated implicitly,
as ``kl(train error || true error) <= c`` with ``kl`` the relative entropy of two Bernoulli
distributions, and must be inverted numerically; the familiar square-root form is that inversion
loosened by Pinsker's inequality. This module does the arithmetic exactly (float64 NumPy, the
inversion by bisection to a stated tolerance) so that a chapter can put the bounds side by side:

- `mcallester_bound`: ``err <= err_hat + sqrt((KL + ln(2 sqrt(n) / delta)) / (2 n))``
  (McAllester 1999, with the constant of Maurer 2004);
- `kl_bound`: ``kl(err_hat || err) <= (KL + ln(2 sqrt(n) / delta)) / n`` (Langford & Seeger
  2001; Seeger 2002; Maurer 2004), never looser than the square-root form;
- `catoni_bound`: Catoni's (2007) bound, union-bounded over a grid of its free parameter;
- `occam_bound`: the countable-class bound with prior ``2^-length`` of a prefix-free code,
  as used for compressed networks by Lotfi et al. (2022);
- `kl_diag_gaussians`: the KL term for Gaussian posteriors and priors over parameter pytrees
  (Dziugaite & Roy 2017), in JAX so that it can be differentiated during training;
- `gibbs_kl_bound`: the PAC-Bayes-kl bound of a posterior whose training error is only
  estimated from samples (Dziugaite & Roy 2017, sec. 3);
- `quantize` and `quantized_code_length`: 1D k-means quantization of (subspace) weights and the
  length in bits of a prefix-free code for the result (Lotfi et al. 2022, sec. 3);
- `quantized_occam_bound`: the three together, the compression bound of a network whose
  weights are quantized (Lotfi et al. 2022).

Conventions. All losses are in [0, 1] (e.g. the 0-1 error); ``n`` is the number of i.i.d.
training samples, ``delta`` the failure probability, ``kl`` a divergence in *nats*, code lengths
in *bits*. Bound functions broadcast over array arguments and return a Python float when every
argument is a scalar.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "kl_bernoulli",
    "kl_inverse_upper",
    "kl_inverse_lower",
    "mcallester_bound",
    "kl_bound",
    "catoni_bound",
    "occam_bound",
    "kl_diag_gaussians",
    "gibbs_kl_bound",
    "quantize",
    "quantized_code_length",
    "CodeLength",
    "quantized_occam_bound",
    "QuantizedBound",
]


# --------------------------------------------------------------------------------- checks


def _out(x):
    """A Python float for a 0-d result, else the array."""
    x = np.asarray(x, np.float64)
    return float(x) if x.ndim == 0 else x


def _array(x, name):
    try:
        a = np.asarray(x, np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a number or an array of numbers, got {x!r}") from e
    if np.isnan(a).any():
        raise ValueError(f"{name}: expected numbers, got NaN")
    return a


def _probability(x, name):
    a = _array(x, name)
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"{name}: expected values in [0, 1], got {x!r}")
    return a


def _nonnegative(x, name):
    a = _array(x, name)
    if not np.all(a >= 0):
        raise ValueError(f"{name}: expected values >= 0, got {x!r}")
    return a


def _sample_size(n):
    a = _array(n, "n")
    if not np.all((a >= 1) & np.isfinite(a) & (a == np.round(a))):
        raise ValueError(f"n: expected a positive integer number of samples, got {n!r}")
    return a


def _delta(delta):
    a = _array(delta, "delta")
    if not np.all((a > 0) & (a < 1)):
        raise ValueError(f"delta: expected a probability in (0, 1), got {delta!r}")
    return a


# ------------------------------------------------------------------------ binary kl and inverse


def _kl(q, p):
    """Unchecked ``kl(q || p)`` on float64 arrays in [0, 1], with ``0 log 0 = 0``.

    Written as ``q f((p - q) / q) + (1 - q) f((q - p) / (1 - q))`` with
    ``f(x) = x - log1p(x) >= 0`` (the linear terms cancel): both terms are nonnegative
    and the absolute error is of order ``eps |p - q|`` rather than ``eps |log q|``, which keeps
    the bisection in `kl_inverse_upper` accurate when ``c`` is tiny.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x1 = (p - q) / q
        x2 = (q - p) / (1 - q)
        a = np.where(q > 0, q * (x1 - np.log1p(x1)), p)  # limit q -> 0: p
        b = np.where(q < 1, (1 - q) * (x2 - np.log1p(x2)), 1 - p)  # limit q -> 1: 1 - p
    return np.maximum(a + b, 0.0)  # f(x) can round to -1e-17 for tiny x


def kl_bernoulli(q, p):
    """Relative entropy ``kl(q || p)`` of Bernoulli(q) from Bernoulli(p), in nats, elementwise.

    ``kl(q || p) = q ln(q / p) + (1 - q) ln((1 - q) / (1 - p))`` with ``0 ln 0 = 0``, so that
    ``kl(0 || p) = -ln(1 - p)``, ``kl(1 || p) = -ln p``, ``kl(q || q) = 0``, and the value is
    ``+inf`` when p is 0 or 1 but q is not equal to it.

    Args:
      q: Bernoulli means in [0, 1] (in the bounds: the empirical error).
      p: Bernoulli means in [0, 1], broadcastable with `q` (the true error).

    Returns:
      A float64 array of the broadcast shape, or a float for scalar inputs.
    """
    q, p = np.broadcast_arrays(_probability(q, "q"), _probability(p, "p"))
    return _out(_kl(q, p))


def _check_inverse_args(q, c, tol):
    q = _probability(q, "q")
    c = _nonnegative(c, "c")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol: expected a float in (0, 1), got {tol!r}")
    return np.broadcast_arrays(q, c)


def kl_inverse_upper(q, c, tol: float = 1e-10):
    """The largest ``p`` in [q, 1] with ``kl(q || p) <= c``: an upper bound on the true error.

    ``p -> kl(q || p)`` increases from 0 on [q, 1], so the set is an interval [q, p*] and p* is
    found by vectorized bisection. The bracket ``[lo, hi]`` keeps ``kl(q || lo) <= c <
    kl(q || hi)`` and the *upper* end is returned, so the result lies in ``[p*, p* + tol]``: it
    errs on the safe side of the bound. About ``log2(1 / tol)`` (34 for the default) iterations
    of one ``kl`` evaluation over the whole array.

    Args:
      q: empirical error(s) in [0, 1].
      c: right-hand side(s) >= 0 (nats per sample), broadcastable with `q`; ``inf`` gives 1.
      tol: absolute tolerance on p, in (0, 1).

    Returns:
      Float64 array of the broadcast shape (a float for scalars). Special cases are exact,
      ``c = 0`` giving ``q`` (up to `tol`) and ``q = 1`` giving 1.
    """
    q, c = _check_inverse_args(q, c, tol)
    lo, hi = q.copy(), np.ones_like(q)
    for _ in range(200):  # the bracket halves each time; 200 is a guard against stagnation
        if np.all(hi - lo <= tol):
            break
        mid = 0.5 * (lo + hi)
        ok = _kl(q, mid) <= c
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return _out(hi)


def kl_inverse_lower(q, c, tol: float = 1e-10):
    """The smallest ``p`` in [0, q] with ``kl(q || p) <= c``: a lower bound on the true error.

    Uses ``kl(q || p) = kl(1 - q || 1 - p)``: the result is ``1 - kl_inverse_upper(1 - q, c)``
    and lies in ``[p* - tol, p*]`` (again on the safe side).

    Args:
      q, c, tol: as in `kl_inverse_upper`.

    Returns:
      Float64 array of the broadcast shape (a float for scalars).
    """
    q, c = _check_inverse_args(q, c, tol)
    return _out(1.0 - np.asarray(kl_inverse_upper(1.0 - q, c, tol)))


# ---------------------------------------------------------------------------------- bounds


def _pac_bayes_rhs(train_error, kl, n, delta):
    """``(KL + ln(2 sqrt(n) / delta)) / n`` and the checked train error."""
    e = _probability(train_error, "train_error")
    k = _nonnegative(kl, "kl")
    n = _sample_size(n)
    d = _delta(delta)
    return e, (k + np.log(2.0 * np.sqrt(n) / d)) / n


def mcallester_bound(train_error, kl, n, delta):
    """PAC-Bayes bound in McAllester's square-root form, with Maurer's constant.

    With probability at least ``1 - delta`` over an i.i.d. sample of size n, for every posterior
    Q (prior P fixed before seeing the sample), the expected error of the Gibbs classifier obeys

        err(Q) <= err_hat(Q) + sqrt((KL(Q || P) + ln(2 sqrt(n) / delta)) / (2 n)).

    This is `kl_bound` loosened by Pinsker's inequality ``kl(q || p) >= 2 (p - q)^2``. The
    constant ``2 sqrt(n)`` is Maurer's (2004, Thm. 5), who bounds
    ``E exp(n kl(err_hat || err)) <= xi(n) <= 2 sqrt(n)``; McAllester's (1999) original had
    ``ln(1 / delta) + 2 ln n + 5`` over ``2n - 1`` (Seeger 2002 gives ``ln((n + 1) / delta)``).
    Maurer states ``xi(n) <= 2 sqrt(n)`` for ``n >= 8``; it also holds (by direct evaluation,
    see the tests) for ``1 <= n < 8``, so every ``n >= 1`` is accepted.

    Args:
      train_error: empirical error(s) of Q in [0, 1].
      kl: ``KL(Q || P)`` in nats, >= 0.
      n: number of training samples (positive integer).
      delta: failure probability in (0, 1).

    Returns:
      The bound (broadcast over the arguments). Not clipped; values above 1 are vacuous.
    """
    e, c = _pac_bayes_rhs(train_error, kl, n, delta)
    return _out(e + np.sqrt(c / 2.0))


def kl_bound(train_error, kl, n, delta, tol: float = 1e-10):
    """PAC-Bayes-kl bound (Langford & Seeger 2001; Seeger 2002) with Maurer's (2004) constant.

    With probability at least ``1 - delta``, for every posterior Q,

        kl(err_hat(Q) || err(Q)) <= (KL(Q || P) + ln(2 sqrt(n) / delta)) / n,

    hence ``err(Q) <= kl_inverse_upper(err_hat, rhs)``. Never looser than `mcallester_bound`
    with the same inputs (up to `tol`), and much tighter when the training error is near 0.

    Args:
      train_error, kl, n, delta: as in `mcallester_bound`.
      tol: tolerance of the inversion; the result errs upward by at most `tol`.

    Returns:
      The bound, in [train_error, 1].
    """
    e, c = _pac_bayes_rhs(train_error, kl, n, delta)
    return kl_inverse_upper(e, c, tol)


def catoni_bound(train_error, kl, n, delta, lambdas):
    """Catoni's (2007, Thm. 1.2.6) PAC-Bayes bound, union-bounded over a grid of lambda.

    For one fixed ``lambda > 0``, with probability at least ``1 - delta``, for every Q,

        err(Q) <= (1 - exp(-(lambda err_hat + KL + ln(1 / delta)) / n)) / (1 - exp(-lambda / n)),

    which is Catoni's ``Phi^{-1}_{lambda/n}(err_hat + (KL + ln(1/delta)) / lambda)`` written out.
    Lambda must not be chosen after seeing the data, so we take a finite grid of K values fixed
    in advance and split delta evenly over it (``ln(1 / delta)`` becomes ``ln(K / delta)``);
    the bound then holds for every grid point at once, and in particular for the best one.

    Args:
      train_error, kl, n, delta: as in `mcallester_bound` (broadcastable).
      lambdas: 1D grid of K positive values (e.g. ``n * np.logspace(-2, 1, 30)``).

    Returns:
      ``(bound, best_lambda)``: the smallest bound over the grid and the lambda attaining it,
      each a float (scalar inputs) or an array of the broadcast shape.
    """
    e = _probability(train_error, "train_error")
    k = _nonnegative(kl, "kl")
    n = _sample_size(n)
    d = _delta(delta)
    lam = _array(lambdas, "lambdas")
    if lam.ndim != 1 or lam.size == 0 or not np.all((lam > 0) & np.isfinite(lam)):
        raise ValueError(
            f"lambdas: expected a non-empty 1D grid of positive values, got {lambdas!r}"
        )
    e, k, n, d = (a[..., None] for a in np.broadcast_arrays(e, k, n, d))
    numerator = -np.expm1(-(lam * e + k + np.log(lam.size / d)) / n)
    values = numerator / -np.expm1(-lam / n)
    best = np.argmin(values, axis=-1)
    return _out(np.min(values, axis=-1)), _out(lam[best])


def occam_bound(train_error, code_length_bits, n, delta, tol: float = 1e-10):
    """Occam bound for one hypothesis described by a prefix-free code of given length.

    A prefix-free code defines the prior ``P(h) = 2^-length(h)`` on a countable class
    (``sum_h P(h) <= 1`` by Kraft's inequality). For a fixed h the Chernoff bound on the
    binomial tail gives ``P(kl(err_hat || err) > t, err_hat < err) <= exp(-n t)``; a union bound
    weighted by P(h) gives, with probability at least ``1 - delta``, for every h:

        kl(err_hat(h) || err(h)) <= (length(h) ln 2 + ln(1 / delta)) / n,

    so ``err(h) <= kl_inverse_upper(err_hat, rhs)`` (Langford 2005, the Occam's razor bound,
    relaxed from the binomial tail to kl; cf. Lotfi et al. 2022, sec. 3). This is `kl_bound` with
    ``KL = length ln 2`` (the KL of a point mass from P) but *without* the ``2 sqrt(n)`` term,
    which a deterministic hypothesis does not need.

    Args:
      train_error: empirical 0-1 error of h, in [0, 1].
      code_length_bits: length of h's codeword in bits (e.g. `CodeLength.total`), >= 0.
      n, delta: as in `mcallester_bound`.
      tol: tolerance of the inversion (the result errs upward by at most `tol`).

    Returns:
      The bound, in [train_error, 1].
    """
    e = _probability(train_error, "train_error")
    bits = _nonnegative(code_length_bits, "code_length_bits")
    n = _sample_size(n)
    d = _delta(delta)
    return kl_inverse_upper(e, (bits * math.log(2.0) + np.log(1.0 / d)) / n, tol)


# --------------------------------------------------------------------- Gaussian KL on pytrees


def _like(tree, ref, name):
    """`tree` if it has `ref`'s structure, or a scalar broadcast to every leaf of `ref`."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(tree)) and jnp.ndim(tree) == 0:
        return jax.tree.map(lambda _: tree, ref)
    if jax.tree.structure(tree) != jax.tree.structure(ref):
        raise ValueError(
            f"{name}: expected a pytree with the structure of mu_q ({jax.tree.structure(ref)}) "
            f"or a scalar, got {jax.tree.structure(tree)}"
        )
    for a, r in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True):
        try:
            ok = np.broadcast_shapes(jnp.shape(a), jnp.shape(r)) == jnp.shape(r)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name}: leaf of shape {jnp.shape(a)} does not broadcast to the shape "
                f"{jnp.shape(r)} of mu_q's leaf"
            )
    return tree


def kl_diag_gaussians(mu_q, sigma_q, mu_p, sigma_p) -> jax.Array:
    """``KL(N(mu_q, diag sigma_q^2) || N(mu_p, diag sigma_p^2))`` over all leaves of pytrees.

    Per coordinate, ``ln(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2)
    - 1/2``, summed over every entry of every leaf: the KL term of a PAC-Bayes bound with a
    factorized Gaussian posterior and prior over network weights (Dziugaite & Roy 2017 use an
    isotropic prior). Written in `jax.numpy` so it can be jitted and differentiated
    when the bound itself is optimized.

    Args:
      mu_q: posterior means, a pytree of arrays (or one array).
      sigma_q: posterior standard deviations (> 0), same structure as `mu_q` (leaves
        broadcastable against its leaves), or a scalar for all.
      mu_p: prior means: a pytree like `mu_q` or a scalar (e.g. 0, or the initialization).
      sigma_p: prior standard deviations (> 0): a pytree like `mu_q` or a scalar.

    Returns:
      A scalar jax array, in nats (in the leaves' floating dtype).
    """
    if not jax.tree.leaves(mu_q):
        raise ValueError("mu_q: expected a pytree with at least one array, got no leaves")
    sigma_q = _like(sigma_q, mu_q, "sigma_q")
    mu_p = _like(mu_p, mu_q, "mu_p")
    sigma_p = _like(sigma_p, mu_q, "sigma_p")

    return sum(jax.tree.leaves(jax.tree.map(_kl_gaussian_leaf, mu_q, sigma_q, mu_p, sigma_p)))


@jax.jit
def _kl_gaussian_leaf(mq, sq, mp, sp):
    mq, sq, mp, sp = jnp.broadcast_arrays(mq, sq, mp, sp)
    return jnp.sum(jnp.log(sp) - jnp.log(sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5)


def gibbs_kl_bound(sample_errors, kl, n, delta, *, delta_mc: float, num_priors: int = 1):
    """PAC-Bayes-kl bound for a posterior whose training error is estimated by sampling.

    The Gibbs classifier's training error ``err_hat(Q) = E_{h~Q} err_hat(h)`` is rarely
    computable; m networks drawn from Q give an unbiased estimate, and since each error lies in
    [0, 1] the Chernoff bound gives, with probability at least ``1 - delta_mc``,

        err_hat(Q) <= kl_inverse_upper(mean(sample_errors), ln(2 / delta_mc) / m),

    which goes into `kl_bound` in place of the exact error (Dziugaite & Roy 2017, sec. 3 and
    eq. (7)-(8)). If the prior was chosen among ``num_priors`` candidates (e.g. its variance
    snapped to a grid), the PAC-Bayes part is union-bounded with ``delta / num_priors``. Both
    hold together with probability at least ``1 - delta - delta_mc``.

    Args:
      sample_errors: (m,) training errors (in [0, 1]) of m networks drawn from Q.
      kl: KL(Q || P) in nats (e.g. `kl_diag_gaussians`), >= 0.
      n: number of training samples.
      delta: failure probability of the PAC-Bayes bound, in (0, 1).
      delta_mc: failure probability of the Monte Carlo estimate, in (0, 1).
      num_priors: number of priors the bound is union-bounded over, >= 1.

    Returns:
      ``(train_upper, bound)``: the upper confidence bound on the Gibbs training error, and
      the bound on the Gibbs (true) error, floats.
    """
    errors = _probability(sample_errors, "sample_errors")
    if errors.ndim != 1 or errors.size == 0:
        raise ValueError(f"sample_errors: expected a non-empty 1D array, got shape {errors.shape}")
    dmc = _array(delta_mc, "delta_mc")
    if dmc.ndim != 0 or not 0 < dmc < 1:
        raise ValueError(f"delta_mc: expected a probability in (0, 1), got {delta_mc!r}")
    if not isinstance(num_priors, (int, np.integer)) or num_priors < 1:
        raise ValueError(f"num_priors: expected a positive int, got {num_priors!r}")
    _delta(delta)
    train_upper = kl_inverse_upper(errors.mean(), math.log(2 / float(dmc)) / errors.size)
    return train_upper, kl_bound(train_upper, kl, n, delta / num_priors)


# ----------------------------------------------------------------- quantization, code length


def quantize(z, num_levels: int, *, max_iter: int = 100):
    """Quantize a vector to `num_levels` values by 1D k-means (Lloyd's algorithm).

    Deterministic: the centres start at the quantiles ``(k + 1/2) / num_levels`` of `z`, and
    each iteration assigns every entry to its nearest centre (a ``searchsorted`` against the
    midpoints of the sorted centres) and moves each non-empty centre to the mean of its
    entries, until the assignment stops changing or `max_iter` is reached. Lotfi et al. (2022)
    learn the codebook during training; this is the post-hoc version.

    Args:
      z: 1D array of d weights (e.g. subspace coordinates).
      num_levels: codebook size L >= 1. If `z` has fewer than L distinct values some levels
        stay unused (duplicates).
      max_iter: at most this many Lloyd iterations.

    Returns:
      ``(codebook, indices)``: codebook (L,) float64 sorted ascending, indices (d,) int64 in
      ``[0, L)``; ``codebook[indices]`` is the quantized vector.
    """
    z = _array(z, "z")
    if z.ndim != 1 or z.size == 0 or not np.isfinite(z).all():
        raise ValueError(f"z: expected a non-empty 1D array of finite values, got shape {z.shape}")
    if not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
        raise ValueError(f"num_levels: expected a positive int, got {num_levels!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
    codebook = np.quantile(z, (np.arange(num_levels) + 0.5) / num_levels)
    indices = None
    for _ in range(max_iter):
        new = np.searchsorted(0.5 * (codebook[1:] + codebook[:-1]), z)
        if indices is not None and np.array_equal(new, indices):
            break
        indices = new
        counts = np.bincount(indices, minlength=num_levels)
        sums = np.bincount(indices, weights=z, minlength=num_levels)
        codebook = np.where(counts > 0, sums / np.maximum(counts, 1), codebook)
    return codebook, indices.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class CodeLength:
    """Length in bits of a prefix-free code for a quantized vector, by part.

    Attributes:
      header: Elias gamma codes of d and L (``2 floor(log2 m) + 1`` bits each).
      codebook: the L codebook values at ``bits_per_value`` bits each.
      counts: the histogram of the indices, as one of ``C(d + L - 1, L - 1)`` possibilities.
      payload: the indices, arithmetic-coded under their empirical distribution:
        ``ceil(entropy) + 1`` bits (Shannon-Fano-Elias code of the whole sequence; the
        ceiling is taken after adding a 1e-9 bit + 1e-12 relative margin for float rounding).
      entropy: ``sum_i -log2 p_hat(index_i) = d * H(p_hat)``, the ideal cost (not rounded).
    """

    header: int
    codebook: int
    counts: int
    payload: int
    entropy: float

    @property
    def total(self) -> int:
        """Length of the whole codeword (header + codebook + counts + payload), in bits."""
        return self.header + self.codebook + self.counts + self.payload


def _elias_gamma_bits(m: int) -> int:
    return 2 * (int(m).bit_length() - 1) + 1


def quantized_code_length(indices, num_levels: int, *, bits_per_value: int = 32) -> CodeLength:
    """Bits needed to send a quantized vector with a prefix-free code (for `occam_bound`).

    The codeword is the concatenation, in this order, of:

    1. the header: d and L in Elias gamma code (self-delimiting);
    2. the codebook: L values, ``bits_per_value`` bits each (32: the float32 values exactly);
    3. the counts ``n_1..n_L`` of each index: one of ``C(d + L - 1, L - 1)`` compositions of d,
       sent in ``ceil(log2 C(d + L - 1, L - 1))`` bits;
    4. the indices, arithmetic-coded with the i.i.d. model ``p_hat(k) = n_k / d`` that the
       counts define: a Shannon-Fano-Elias code of the whole sequence, of length
       ``ceil(-log2 p_hat(sequence)) + 1 = ceil(sum_i -log2 p_hat(index_i)) + 1`` bits, which
       is prefix-free given the model (Cover & Thomas 2006, sec. 5.9 and 13.3).

    Each part is prefix-free given the parts before it, so the whole code is prefix-free and
    ``2^-total`` is a valid prior (Kraft). Lotfi et al. (2022, sec. 3) arithmetic-code the
    quantized subspace weights the same way; we make the side information (sizes, codebook,
    counts) explicit. Anything else the decoder needs (architecture, the random subspace's
    seed) must be fixed before seeing the data; if several are tried, add their cost too.
    The total is always at least ``entropy = d H(p_hat)``, and for indices used uniformly
    ``entropy = d log2 L``.

    Args:
      indices: 1D integer array of d >= 1 codebook indices in ``[0, num_levels)``.
      num_levels: codebook size L >= 1 (unused levels are still sent).
      bits_per_value: precision of each codebook value.

    Returns:
      A `CodeLength`; its ``total`` goes to `occam_bound`.
    """
    idx = np.asarray(indices)
    if not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
        raise ValueError(f"num_levels: expected a positive int, got {num_levels!r}")
    if (
        idx.ndim != 1
        or idx.size == 0
        or not np.issubdtype(idx.dtype, np.integer)
        or idx.min() < 0
        or idx.max() >= num_levels
    ):
        raise ValueError(
            f"indices: expected a non-empty 1D integer array with values in [0, {num_levels}), "
            f"got dtype {idx.dtype}, shape {idx.shape}"
        )
    if not isinstance(bits_per_value, int) or bits_per_value < 1:
        raise ValueError(f"bits_per_value: expected a positive int, got {bits_per_value!r}")
    d, L = idx.size, int(num_levels)
    counts = np.bincount(idx, minlength=L)
    used = counts[counts > 0]
    entropy = float(np.sum(used * (np.log2(d) - np.log2(used))))
    compositions = math.comb(d + L - 1, L - 1)  # exact integer
    return CodeLength(
        header=_elias_gamma_bits(d) + _elias_gamma_bits(L),
        codebook=L * bits_per_value,
        counts=(compositions - 1).bit_length(),  # = ceil(log2 compositions), exactly
        payload=math.ceil(entropy + 1e-9 + 1e-12 * entropy) + 1,  # margin: float rounding
        entropy=entropy,
    )


class QuantizedBound(NamedTuple):
    """Result of `quantized_occam_bound`.

    Attributes:
      train: 0-1 error of the quantized network on the first n training examples.
      test: its 0-1 error on the test examples.
      bits: length of its description, `CodeLength.total` plus ``extra_bits``.
      bound: `occam_bound` on its true error.
    """

    train: float
    test: float
    bits: int
    bound: float


def quantized_occam_bound(
    z,
    num_levels: int,
    predict: Callable,
    y,
    y_test,
    *,
    delta: float,
    n: int | None = None,
    extra_bits: int = 0,
    codebook_dtype=np.float16,
) -> QuantizedBound:
    """Compression bound of a network whose weights are quantized (Lotfi et al. 2022, sec. 3).

    The weights ``z`` (e.g. the coordinates of a network trained in a random subspace) are
    quantized to ``num_levels`` levels by `quantize`, the codebook is rounded to
    ``codebook_dtype`` (the precision it is sent at), and the quantized network is described by
    `quantized_code_length` in ``bits`` plus ``extra_bits`` (anything else chosen after seeing
    the data, e.g. ``ceil(log2 G)`` for a choice among G hyperparameter settings). Its
    training error on the first ``n`` examples then goes into `occam_bound`: the bound is on
    the quantized network, which is the one evaluated.

    Args:
      z: (d,) weights to quantize.
      num_levels: codebook size L.
      predict: ``predict(z_q)``, the predicted labels of the network with weights ``z_q``
        ((d,) float32, or float64 if ``codebook_dtype`` is), for the training inputs followed by
        the test inputs: an (len(y) + len(y_test),) array.
      y: (N,) training labels; the bound uses the first ``n``.
      y_test: (N_test,) test labels.
      delta: failure probability of the bound.
      n: number of training examples the network was trained on (default N).
      extra_bits: bits added to the code length, >= 0.
      codebook_dtype: a float dtype; the codebook costs its width in bits per value.

    Returns:
      A `QuantizedBound` ``(train, test, bits, bound)``.
    """
    y, y_test = np.asarray(y), np.asarray(y_test)
    n = len(y) if n is None else n
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(y):
        raise ValueError(f"n: expected an int in [1, {len(y)}], got {n!r}")
    if not isinstance(extra_bits, (int, np.integer)) or extra_bits < 0:
        raise ValueError(f"extra_bits: expected a non-negative int, got {extra_bits!r}")
    dtype = np.dtype(codebook_dtype)
    if dtype.kind != "f":
        raise ValueError(f"codebook_dtype: expected a float dtype, got {dtype}")
    codebook, idx = quantize(z, num_levels)
    codebook = codebook.astype(dtype).astype(np.promote_types(dtype, np.float32))
    pred = np.asarray(predict(codebook[idx]))
    if pred.shape != (len(y) + len(y_test),):
        raise ValueError(
            f"predict: expected ({len(y) + len(y_test)},) predicted labels (training inputs, "
            f"then test inputs), got shape {pred.shape}"
        )
    bits = quantized_code_length(idx, num_levels, bits_per_value=8 * dtype.itemsize).total
    bits += extra_bits
    err = float(np.mean(pred[:n] != y[:n]))
    return QuantizedBound(
        err, float(np.mean(pred[len(y) :] != y_test)), bits, occam_bound(err, bits, n, delta)
    )
