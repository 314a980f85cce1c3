"""Intrinsic dimension of point clouds: the TwoNN estimator, and data of known dimension.

Data that live in R^D often lie near a manifold of much smaller dimension d, and it is d, not
D, that sets how many samples learning needs. Counting the neighbours within a radius r (they
grow like r^d) needs a density that is constant over the range of r used; Facco et al. (2017)
avoid this with the ratio of each point's second to first nearest-neighbour distance,
``mu = r2 / r1``. If the density is roughly constant on the scale of the two neighbours, mu
follows a Pareto law, ``P(mu > t) = t^(-d)`` for ``t >= 1``, whatever the density is elsewhere,
so d can be read off the N ratios alone:

- `twonn_mle`: the maximum-likelihood estimate ``d = (N - 1) / sum(log mu)`` (unbiased for the
  Pareto law);
- `twonn_fit`: the paper's estimate, a least-squares line through the origin of
  ``-log(1 - F(mu))`` against ``log mu`` with F the empirical distribution, after discarding
  the largest 10% of the ratios (the tail most affected by curvature and density changes).

`embedded_data` makes points of a chosen intrinsic dimension in a larger ambient space (a
linear subspace, a sphere, or a curved nonlinear image of a cube), the references against which
the estimators are tested and with which a chapter controls the dimension of a learning task.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "neighbour_ratios",
    "twonn_mle",
    "twonn_fit",
    "twonn",
    "embedded_data",
]

KINDS = ("linear", "sphere", "curved")


def _points(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2D array (points, features), got shape {x.shape}")
    if len(x) < 3:
        raise ValueError(f"{name}: expected at least 3 points, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains non-finite values")
    return x


def _two_nearest(x: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each point to its nearest and second nearest other point."""
    sq = np.einsum("ij,ij->i", x, x)
    r = np.empty((len(x), 2))
    for s in range(0, len(x), block):
        xb = x[s : s + block]
        rows = np.arange(len(xb))
        d2 = sq[s : s + block, None] + sq[None, :] - 2 * xb @ x.T
        d2[rows, rows + s] = np.inf  # a point is not its own neighbour
        # candidates by the fast expansion, then exact distances: |a|^2 + |b|^2 - 2ab loses
        # digits for close pairs, so the 4 nearest candidates are re-measured directly
        k = min(4, len(x) - 1)
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        exact = np.sqrt(np.sum((xb[:, None, :] - x[idx]) ** 2, axis=-1))
        r[s : s + block] = np.sort(exact, axis=1)[:, :2]
    return r[:, 0], r[:, 1]


def neighbour_ratios(x) -> np.ndarray:
    """Ratios ``mu_i = r2_i / r1_i`` of each point's second to first nearest-neighbour distance.

    Euclidean distances, by brute force in blocks (a k-d tree is slower than a matrix product
    in the 10 to 1000 dimensions of networks' data and features). Points with a
    duplicate (r1 = 0) have no finite ratio and are left out, as Facco et al. (2017) advise;
    so are points whose two neighbours are equally far (mu = 1 exactly has zero likelihood
    under the continuous law, and appears only for ties in discrete data).

    Args:
      x: (N, D) points, N >= 3.

    Returns:
      The finite ratios > 1, at most N of them, float64.
    """
    x = _points(x)
    r1, r2 = _two_nearest(x)
    keep = r1 > 0
    mu = r2[keep] / r1[keep]
    return mu[mu > 1]


def _ratios(mu) -> np.ndarray:
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1 or len(mu) < 2:
        raise ValueError(f"mu: expected a 1D array of at least 2 ratios, got shape {mu.shape}")
    if not np.all(np.isfinite(mu)) or np.any(mu <= 1):
        raise ValueError("mu: expected finite ratios > 1 (second over first neighbour distance)")
    return mu


def twonn_mle(mu) -> float:
    """Maximum-likelihood TwoNN dimension from nearest-neighbour ratios.

    Under the Pareto law ``p(mu) = d mu^(-d-1)`` the likelihood of N ratios is maximized by
    ``N / sum(log mu)``; this returns the unbiased ``(N - 1) / sum(log mu)``.

    Args:
      mu: 1D array of ratios > 1 (from `neighbour_ratios`).

    Returns:
      The estimated dimension (a float).
    """
    mu = _ratios(mu)
    return float((len(mu) - 1) / np.sum(np.log(mu)))


def twonn_fit(mu, discard_fraction: float = 0.1) -> float:
    """TwoNN dimension by the linear fit of Facco et al. (2017).

    Sort the ratios, set the empirical ``F(mu_(i)) = i / N`` (i = 1..N), drop the largest
    ``discard_fraction`` of them, and fit ``-log(1 - F) = d log mu`` by least squares through
    the origin: ``d = sum(a b) / sum(a^2)`` with ``a = log mu``, ``b = -log(1 - F)``.

    Args:
      mu: 1D array of ratios > 1.
      discard_fraction: fraction of the largest ratios left out, in [0, 1).

    Returns:
      The estimated dimension (a float).
    """
    mu = np.sort(_ratios(mu))
    if not (np.ndim(discard_fraction) == 0 and 0 <= discard_fraction < 1):
        raise ValueError(f"discard_fraction: expected a number in [0, 1), got {discard_fraction!r}")
    n = len(mu)
    f = np.arange(1, n + 1) / n
    keep = max(2, int(np.floor(n * (1 - discard_fraction))))
    keep = min(keep, n - 1)  # F = 1 at the largest ratio: -log(0) is infinite
    a, b = np.log(mu[:keep]), -np.log1p(-f[:keep])
    return float(np.sum(a * b) / np.sum(a * a))


def twonn(x, method: str = "fit", discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension of a point cloud (Facco et al. 2017).

    Args:
      x: (N, D) points.
      method: ``"fit"`` (the paper's linear fit, `twonn_fit`) or ``"mle"`` (`twonn_mle`).
      discard_fraction: for ``"fit"``, the fraction of largest ratios left out.

    Returns:
      The estimated dimension (a float).
    """
    if method not in ("fit", "mle"):
        raise ValueError(f"method: expected 'fit' or 'mle', got {method!r}")
    mu = neighbour_ratios(x)
    if method == "mle":
        return twonn_mle(mu)
    return twonn_fit(mu, discard_fraction)


def embedded_data(
    rng: np.random.Generator, n: int, d: int, ambient: int, kind: str = "linear"
) -> tuple[np.ndarray, np.ndarray]:
    """N points of intrinsic dimension d in R^ambient, and their latent coordinates.

    The latent points z are uniform in the cube [-1, 1]^d (``"linear"``, ``"curved"``) or on
    the unit sphere S^d in R^(d+1) (``"sphere"``, a d-dimensional manifold without boundary).
    They are mapped into R^ambient by:

    - ``"linear"``: ``x = z Q^T`` with Q an (ambient, d) matrix of orthonormal columns, a
      random d-dimensional subspace (distances are kept exactly);
    - ``"sphere"``: the same with (d+1) orthonormal columns;
    - ``"curved"``: ``x = sin(z A + b) / sqrt(ambient / 2)``, A (d, ambient) Gaussian with
      entries of variance pi^2 / d (each phase then varies by about 1.8 radians across the
      cube, whatever d), b uniform phases: a smooth, curved, generically one-to-one image of
      the cube that spans all ambient directions.

    Args:
      rng: a NumPy generator (the only source of randomness).
      n: number of points.
      d: intrinsic dimension, 1 <= d (d < ambient for ``"linear"``, d + 1 <= ambient for
        ``"sphere"``).
      ambient: the ambient dimension D.
      kind: ``"linear"``, ``"sphere"`` or ``"curved"``.

    Returns:
      ``(x, z)``: x (n, ambient) float64 and the latent z, (n, d) (or (n, d + 1) on the
      sphere).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    for name, v in (("n", n), ("d", d), ("ambient", ambient)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    need = d + 1 if kind == "sphere" else d
    if need > ambient:
        raise ValueError(f"d: expected d{' + 1' if kind == 'sphere' else ''} <= ambient "
                         f"= {ambient}, got d = {d}")
    if kind == "sphere":
        z = rng.standard_normal((n, d + 1))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    else:
        z = rng.uniform(-1.0, 1.0, (n, d))
    if kind == "curved":
        a = rng.standard_normal((d, ambient)) * (np.pi / np.sqrt(d))
        b = rng.uniform(0, 2 * np.pi, ambient)
        return np.sin(z @ a + b) / np.sqrt(ambient / 2), z
    q, _ = np.linalg.qr(rng.standard_normal((ambient, z.shape[1])))
    return z @ q.T, z
