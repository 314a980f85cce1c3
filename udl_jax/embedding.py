"""Prediction space: Bhattacharyya distances between classifiers, and their InPCA embedding.

A classifier's predicted class probabilities on n fixed inputs are one probability distribution
over the n labels, ``P(y_1, ..., y_n) = prod_i p(y_i | x_i)`` (Mao et al. 2024, eq. 1). Every
model, of any architecture and at any moment of training, is a point in this one space, and so
are the two landmarks *ignorance* (uniform predictions) and *truth* (the one-hot labels). What
this module computes:

- `bhattacharyya_distances`: the per-sample mean Bhattacharyya distance between two sets of
  such distributions, ``d(P, Q) = -(1/n) sum_i log sum_c sqrt(p_i(c) q_i(c))`` (Mao et al.
  2024, eq. 2). It is intensive (does not grow with n), and InPCA treats it as a *squared*
  distance.
- `inpca`: intensive principal component analysis (Quinn et al. 2019): classical
  multidimensional scaling of those distances, i.e. the eigendecomposition of the
  double-centered matrix ``W = -1/2 L D L`` with ``L = I - 11^T/m``, keeping eigenvalues of
  either sign. Positive ones give ordinary (space-like) coordinates, negative ones time-like
  coordinates, whose squared differences count *negatively*: the distances are reproduced
  exactly, in a Minkowski space, when all components are kept (`pairwise_distances`).
- `explained_stress`: how much of ``W`` the top k components reproduce.
- `project`: coordinates of new points from their distances to the embedded ones (Gower's
  out-of-sample formula), so a run can be placed in an embedding it did not shape.
- `trajectory_distance`: how far apart two trajectories are, whatever their speeds.

Everything is NumPy float64: the embedding reconstructs distances to about 1e-14, which float32
could not. A distance matrix between m points on n inputs costs O(m^2 n k) arithmetic and
O(m^2 n / 4) logarithms: 300 points on 250 inputs take a fraction of a second on a laptop,
thousands of points on thousands of inputs minutes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "bhattacharyya_distances",
    "one_hot_log_probs",
    "uniform_log_probs",
    "InPCA",
    "inpca",
    "pairwise_distances",
    "explained_stress",
    "project",
    "trajectory_distance",
]


# ------------------------------------------------------------------------------- distances


def _log_probs(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(
            f"{name}: expected log-probabilities of shape (..., n_samples, n_classes), "
            f"got shape {a.shape}"
        )
    if np.isnan(a).any() or (a == np.inf).any():
        raise ValueError(f"{name}: contains NaN or +inf")
    a = a.reshape(-1, *a.shape[-2:])
    with np.errstate(divide="ignore"):
        total = np.log(np.exp(a).sum(-1))
    if np.abs(total).max(initial=0.0) > 1e-3:
        raise ValueError(
            f"{name}: expected log-probabilities, whose exponentials sum to 1 over classes "
            f"(largest |log sum exp| = {np.abs(total).max():.3g}); pass "
            "jax.nn.log_softmax(logits), not the logits"
        )
    return a


def bhattacharyya_distances(log_p, log_q=None, *, max_chunk_bytes: int = 2**26) -> np.ndarray:
    """Mean per-sample Bhattacharyya distances between two sets of predictions.

    For predictions ``p_i(c)`` and ``q_i(c)`` on the same n inputs (Mao et al. 2024, eq. 2)::

        d(P, Q) = -(1/n) sum_i log sum_c sqrt(p_i(c) q_i(c)).

    It is zero iff P = Q, symmetric, non-negative, and infinite only if some input gets
    disjoint supports. It is the intensive distance of InPCA (Quinn et al. 2019), which plays
    the role of a squared distance. For the truth (one-hot labels) it is half the
    cross-entropy, ``-(1/n) sum_i log sqrt(p_i(y_i))``.

    Args:
      log_p: log-probabilities, shape (..., n, k): any leading axes (models, times) are
        flattened into one axis of m points. ``-inf`` is allowed (probability zero), e.g.
        `one_hot_log_probs`.
      log_q: another such array (m' points), or None for the distances within ``log_p``.
      max_chunk_bytes: memory for one block of rows (the work is split over the points).

    Returns:
      (m, m') float64 distances. With ``log_q=None`` the matrix is made exactly symmetric
      with a zero diagonal.
    """
    a = _log_probs(log_p, "log_p")
    b = a if log_q is None else _log_probs(log_q, "log_q")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"log_q: expected (..., n_samples, n_classes) = (..., {a.shape[1]}, {a.shape[2]}) "
            f"like log_p, got {b.shape[1:]}"
        )
    sa = np.ascontiguousarray(np.exp(0.5 * a).transpose(1, 0, 2))  # (n, m, k): sqrt(p)
    sb = np.ascontiguousarray(np.exp(0.5 * b).transpose(1, 2, 0))  # (n, k, m')
    n, m, mb = sa.shape[0], sa.shape[1], sb.shape[2]
    rows = max(1, int(max_chunk_bytes) // (3 * 8 * mb))  # three (rows, m') buffers
    total = np.zeros((m, mb))
    for r0 in range(0, m, rows):
        total[r0 : r0 + rows] = _neg_log_coefficients(sa[:, r0 : r0 + rows], sb)
    d = total / n
    if log_q is None:
        d = 0.5 * (d + d.T)
        np.fill_diagonal(d, 0.0)
    return d


_GROUP = 4  # samples whose coefficients are multiplied before one logarithm
_TINY = 1e-250  # below this a product of coefficients might have underflowed


def _neg_log_coefficients(sa, sb) -> np.ndarray:
    """``-sum_i log(sqrt(p_i) . sqrt(q_i))`` for blocks sa (n, m, k), sb (n, k, m').

    The logarithm is the cost: it is taken once per `_GROUP` samples, of the product of their
    coefficients (each in (0, 1]), unless that product is small enough to have underflowed.
    The products of k = 10 classes go through ``einsum``'s loops, not BLAS, whose threads cost
    more than the arithmetic for such thin matrices on a busy CPU.
    """
    n = sa.shape[0]
    total = np.zeros((sa.shape[1], sb.shape[2]))
    coeff = np.empty_like(total)
    prod = np.empty_like(total)
    with np.errstate(divide="ignore"):
        for s0 in range(0, n, _GROUP):
            group = range(s0, min(n, s0 + _GROUP))
            np.einsum("ik,kj->ij", sa[s0], sb[s0], out=prod)
            for s in group[1:]:
                np.einsum("ik,kj->ij", sa[s], sb[s], out=coeff)
                prod *= coeff
            if len(group) > 1 and prod.min() < _TINY:  # rare: one logarithm per sample
                for s in group:
                    np.einsum("ik,kj->ij", sa[s], sb[s], out=coeff)
                    total -= np.log(np.minimum(coeff, 1.0, out=coeff), out=coeff)
                continue
            total -= np.log(np.minimum(prod, 1.0, out=prod), out=prod)  # rounding can exceed 1
    return total


def one_hot_log_probs(y, n_classes: int) -> np.ndarray:
    """The truth as a prediction: log of one-hot labels (0 at the label, -inf elsewhere).

    Args:
      y: int labels, shape (n,).
      n_classes: k.

    Returns:
      (n, k) float64.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y: expected a non-empty 1D array of int labels, got {y.dtype} {y.shape}")
    if y.min() < 0:
        raise ValueError(f"y: expected labels >= 0, got {y.min()}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1 or y.max() >= n_classes:
        raise ValueError(f"n_classes: expected an int > max label {y.max()}, got {n_classes!r}")
    out = np.full((len(y), int(n_classes)), -np.inf)
    out[np.arange(len(y)), y] = 0.0
    return out


def uniform_log_probs(n: int, n_classes: int) -> np.ndarray:
    """Ignorance as a prediction: ``log(1/k)`` for every input and class, shape (n, k)."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not (isinstance(n_classes, (int, np.integer)) and n_classes >= 1):
        raise ValueError(f"n_classes: expected a positive int, got {n_classes!r}")
    return np.full((int(n), int(n_classes)), -np.log(n_classes))


# ---------------------------------------------------------------------------------- InPCA


class InPCA(NamedTuple):
    """An InPCA embedding of m points (`inpca`).

    Attributes:
      coordinates: (m, r) coordinates, one column per component, ordered by decreasing
        ``|eigenvalue|``: ``V |Lambda|^(1/2)``.
      eigenvalues: (r,) eigenvalues of ``W = -1/2 L D L``, in the same order (either sign).
      signs: (r,) +1 for space-like, -1 for time-like components (the eigenvalues' signs).
      vectors: (m, r) the unit eigenvectors of W.
      column_means: (m,) the mean of each column of D, needed to `project` new points.
      grand_mean: the mean of D.
    """

    coordinates: np.ndarray
    eigenvalues: np.ndarray
    signs: np.ndarray
    vectors: np.ndarray
    column_means: np.ndarray
    grand_mean: float


def _distance_matrix(d, name: str = "distances") -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise ValueError(f"{name}: expected a square (m, m) matrix with m >= 2, got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"{name}: contains non-finite entries")
    scale = max(np.abs(d).max(), np.finfo(float).tiny)
    if np.abs(d - d.T).max() > 1e-12 * scale:
        raise ValueError(f"{name}: expected a symmetric matrix")
    if np.abs(np.diag(d)).max() > 1e-12 * scale:
        raise ValueError(f"{name}: expected a zero diagonal (the distance of a point to itself)")
    return d


def inpca(distances, n_components: int | None = None) -> InPCA:
    """Intensive PCA (Quinn et al. 2019) of a matrix of intensive (squared) distances.

    Double-centers ``W = -1/2 L D L`` (``L = I - 11^T/m``), the classical-MDS Gram matrix
    (Torgerson 1952), and diagonalizes it, keeping eigenvalues of both signs. With
    ``x_i = (|lambda_1|^(1/2) v_1i, ...)`` and ``s = sign(lambda)``,
    ``D_ij = sum_k s_k (x_ik - x_jk)^2`` exactly when every component is kept: the points live
    in a Minkowski space. For squared Euclidean distances all eigenvalues are >= 0 and this is
    classical MDS, i.e. PCA of the points. Mao et al. (2024) apply it to
    `bhattacharyya_distances`, as here.

    Args:
      distances: (m, m) symmetric matrix with zero diagonal, e.g. `bhattacharyya_distances`.
      n_components: keep this many components (largest ``|eigenvalue|``); None keeps all m.

    Returns:
      An `InPCA`. Eigenvalues below rounding error are set to 0 (with coordinates 0): at
      least one of all m, since centering removes one dimension.
    """
    d = _distance_matrix(distances)
    m = d.shape[0]
    if n_components is None:
        n_components = m
    if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= m:
        raise ValueError(f"n_components: expected an int in [1, {m}] or None, got {n_components!r}")
    col = d.mean(0)
    grand = float(col.mean())
    w = -0.5 * (d - col[None, :] - col[:, None] + grand)
    w = 0.5 * (w + w.T)
    lam, v = np.linalg.eigh(w)
    # Eigenvalues below rounding (as in np.linalg.matrix_rank), e.g. the centering direction's,
    # are set to zero: their coordinates would be noise of size sqrt(eps).
    lam = np.where(np.abs(lam) <= m * np.finfo(float).eps * np.abs(lam).max(), 0.0, lam)
    order = np.argsort(-np.abs(lam), kind="stable")[:n_components]
    lam, v = lam[order], v[:, order]
    v = v * np.where(v[np.abs(v).argmax(0), np.arange(v.shape[1])] < 0, -1.0, 1.0)  # fix signs
    return InPCA(
        coordinates=v * np.sqrt(np.abs(lam)),
        eigenvalues=lam,
        signs=np.where(lam < 0, -1.0, 1.0),
        vectors=v,
        column_means=col,
        grand_mean=grand,
    )


def pairwise_distances(coordinates, signs, other=None, *, max_chunk_bytes: int = 2**26):
    """Minkowski squared distances ``sum_k s_k (x_ik - y_jk)^2`` between embedded points.

    With all components of `inpca` this reproduces the distances it was given.

    Args:
      coordinates: (m, r) coordinates (e.g. ``InPCA.coordinates[:, :r]``).
      signs: (r,) +1 or -1 per component (``InPCA.signs[:r]``).
      other: (m', r) other coordinates, or None for the distances within ``coordinates``.
      max_chunk_bytes: memory for one block of differences (the rows are done in blocks).

    Returns:
      (m, m') distances; negative entries are possible (time-like separations).
    """
    x = np.asarray(coordinates, dtype=np.float64)
    y = x if other is None else np.asarray(other, dtype=np.float64)
    s = np.asarray(signs, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"coordinates, other: expected (m, r) and (m', r) arrays, got {x.shape} and {y.shape}"
        )
    if s.shape != (x.shape[1],) or not np.isin(s, (-1.0, 1.0)).all():
        raise ValueError(f"signs: expected {x.shape[1]} values of +1 or -1, got {s}")
    out = np.empty((x.shape[0], y.shape[0]))
    rows = max(1, int(max_chunk_bytes) // (8 * max(1, y.shape[0] * x.shape[1])))
    for start in range(0, x.shape[0], rows):  # exact differences, not |x|^2 + |y|^2 - 2 x.y
        diff = x[start : start + rows, None, :] - y[None, :, :]
        out[start : start + rows] = np.einsum("ijk,k->ij", diff**2, s)  # no BLAS threads
    return out


def explained_stress(eigenvalues, k: int | None = None):
    """Explained stress of the top components (Quinn et al. 2019; Mao et al. 2024).

    With eigenvalues ordered by decreasing ``|lambda|``, the top k components reproduce ``W`` as
    ``W_k = V_k Lambda_k V_k^T``, and the explained stress is
    ``1 - ||W - W_k||_F / ||W||_F = 1 - sqrt(1 - sum_{i<=k} lambda_i^2 / sum_i lambda_i^2)``.
    It is 1 when k components reproduce W exactly, and stricter than the fraction of
    ``sum lambda^2`` they hold: 90% of it is an explained stress of 0.68.

    Args:
      eigenvalues: all eigenvalues of W (``InPCA.eigenvalues`` with every component kept).
      k: number of top components; None returns the cumulative values for k = 1, 2, ...

    Returns:
      A float for one k, else an array of length len(eigenvalues).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.isfinite(lam).all():
        raise ValueError(f"eigenvalues: expected a non-empty 1D array of finite numbers, got {lam}")
    sq = np.sort(lam**2)[::-1]
    if sq.sum() == 0:
        raise ValueError("eigenvalues: all zero, nothing to explain")
    cum = np.clip(np.cumsum(sq) / sq.sum(), 0.0, 1.0)
    stress = 1.0 - np.sqrt(1.0 - cum)
    if k is None:
        return stress
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= lam.size:
        raise ValueError(f"k: expected an int in [1, {lam.size}] or None, got {k!r}")
    return float(stress[k - 1])


def project(embedding: InPCA, distances_new) -> np.ndarray:
    """Coordinates of new points in an existing embedding, from their distances to its points.

    Gower's (1968) formula for adding a point to classical MDS, with signed eigenvalues as in
    Mao et al. (2024)'s code: ``x_new,k = b . v_k / (s_k |lambda_k|^(1/2))`` with
    ``b_j = -1/2 (d_new,j - mean_j d_new - mean_i D_ij + mean D)``. A point that was embedded
    gets its own coordinates back; a new point gets those of its projection onto the span of
    the kept components, so distances to it are reproduced only as far as it lies in that span.

    Args:
      embedding: an `InPCA`.
      distances_new: (p, m) distances from p new points to the m embedded ones (same kind
        of distance, e.g. ``bhattacharyya_distances(new, old)``).

    Returns:
      (p, r) coordinates, r = the number of components of ``embedding``.
    """
    dn = np.asarray(distances_new, dtype=np.float64)
    m = embedding.column_means.shape[0]
    if dn.ndim != 2 or dn.shape[1] != m:
        raise ValueError(f"distances_new: expected shape (p, {m}), got {dn.shape}")
    if not np.isfinite(dn).all():
        raise ValueError("distances_new: contains non-finite entries")
    lam = embedding.eigenvalues
    keep = lam != 0  # `inpca` zeroes eigenvalues below rounding (the centering direction's)
    b = -0.5 * (dn - dn.mean(1, keepdims=True) - embedding.column_means + embedding.grand_mean)
    root = np.where(keep, embedding.signs * np.sqrt(np.abs(lam)), 1.0)
    return np.where(keep, (b @ embedding.vectors) / root, 0.0)


# ---------------------------------------------------------------------------- trajectories


def trajectory_distance(distances, how: str = "mean") -> float:
    """Distance between two trajectories that does not care how fast they are run through.

    Each point of trajectory a is matched with the nearest point of trajectory b, and the mean
    of these nearest distances is the directed distance from a to b (the point-to-trajectory
    distance of Mao et al. 2024, without their interpolation between logged points). Both
    directions are then combined:

    - ``how="mean"``: their average. It is 0 for two trajectories through the same points, in
      any order and at any speed, and counts the part of a longer path that a shorter one
      never reaches.
    - ``how="min"``: the smaller one (Mao et al.'s choice): also 0 when one run stopped early
      on the path of the other.

    Args:
      distances: (T_a, T_b) distances between the points of trajectory a and those of b,
        e.g. a block of `bhattacharyya_distances`.
      how: ``"mean"`` or ``"min"``.

    Returns:
      The distance, in the units of ``distances``.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or 0 in d.shape or not np.isfinite(d).all():
        raise ValueError(f"distances: expected a finite non-empty 2D array, got shape {d.shape}")
    if how not in ("mean", "min"):
        raise ValueError(f"how: expected 'mean' or 'min', got {how!r}")
    a_to_b, b_to_a = d.min(1).mean(), d.min(0).mean()
    return float(0.5 * (a_to_b + b_to_a) if how == "mean" else min(a_to_b, b_to_a))
