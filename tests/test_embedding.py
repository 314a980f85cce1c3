"""Tests of udl_jax.embedding against independent references: direct loops for the
Bhattacharyya distance, scipy's eigh on the explicitly double-centered matrix and scikit-learn's
PCA for InPCA, and hand-worked cases for the rest."""

import numpy as np
import pytest
import scipy.linalg
from scipy.special import log_softmax
from sklearn.decomposition import PCA

from udl_jax import embedding as em

RNG = np.random.default_rng(0)


def _random_log_probs(shape, scale=2.0, rng=RNG):
    return log_softmax(scale * rng.normal(size=shape), axis=-1)


def _bhattacharyya_loop(a, b):
    """The definition, one pair and one sample at a time (Mao et al. 2024, eq. 2)."""
    p, q = np.exp(a), np.exp(b)
    d = np.zeros((len(p), len(q)))
    for i in range(len(p)):
        for j in range(len(q)):
            d[i, j] = -np.mean([np.log(np.sum(np.sqrt(p[i, s] * q[j, s])))
                                for s in range(p.shape[1])])
    return d


def _double_centered(d):
    m = len(d)
    ell = np.eye(m) - np.ones((m, m)) / m
    return -0.5 * ell @ d @ ell


# ------------------------------------------------------------------------------ distances


def test_bhattacharyya_matches_double_loop():
    a = _random_log_probs((6, 9, 4))
    b = _random_log_probs((5, 9, 4))
    np.testing.assert_allclose(em.bhattacharyya_distances(a, b), _bhattacharyya_loop(a, b),
                               rtol=1e-12, atol=1e-14)
    within = em.bhattacharyya_distances(a)
    np.testing.assert_allclose(within, _bhattacharyya_loop(a, a), rtol=1e-12, atol=1e-14)
    assert np.array_equal(within, within.T) and np.all(np.diag(within) == 0.0)
    assert within.min() >= 0.0


def test_bhattacharyya_chunking_and_leading_axes():
    a = _random_log_probs((2, 3, 7, 5))  # (models, times, n, k): flattened to 6 points
    full = em.bhattacharyya_distances(a)
    tiny = em.bhattacharyya_distances(a, max_chunk_bytes=1)  # one sample per block
    assert full.shape == (6, 6)
    np.testing.assert_allclose(tiny, full, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(full, _bhattacharyya_loop(a.reshape(6, 7, 5), a.reshape(6, 7, 5)),
                               rtol=1e-12, atol=1e-14)


def test_bhattacharyya_tiny_coefficients_do_not_underflow():
    """Confident, disagreeing predictions: coefficients ~1e-87, whose product over four
    samples would underflow to 0 (an infinite distance) without the per-sample fallback."""
    logits = np.full((2, 9, 3), -400.0)
    logits[0, :, 0] = logits[1, :, 1] = 0.0
    a = log_softmax(logits, axis=-1)
    d = em.bhattacharyya_distances(a)
    np.testing.assert_allclose(d, _bhattacharyya_loop(a, a), rtol=1e-12)
    assert 150 < d[0, 1] < np.inf


def test_landmarks_truth_and_ignorance():
    y = np.array([0, 2, 1, 2])
    truth = em.one_hot_log_probs(y, 3)
    assert truth.shape == (4, 3) and np.array_equal(np.argmax(truth, 1), y)
    assert np.all(np.isneginf(truth[np.arange(4)[:, None], [[1, 2], [0, 1], [0, 2], [0, 1]]]))
    ignorance = em.uniform_log_probs(4, 3)
    np.testing.assert_allclose(np.exp(ignorance), 1 / 3)
    p = _random_log_probs((3, 4, 3))
    d = em.bhattacharyya_distances(p, truth[None])
    half_ce = -0.5 * p[:, np.arange(4), y].mean(1)  # half the cross-entropy
    np.testing.assert_allclose(d[:, 0], half_ce, rtol=1e-12)
    # ignorance to truth: log(k) / 2, for any labels
    d0 = em.bhattacharyya_distances(ignorance[None], truth[None])
    np.testing.assert_allclose(d0, [[0.5 * np.log(3)]], rtol=1e-14)
    # two different one-hot predictions on one input: disjoint supports, infinite distance
    other = em.one_hot_log_probs((y + 1) % 3, 3)
    assert np.isinf(em.bhattacharyya_distances(truth[None], other[None])[0, 0])


def test_distance_inputs_raise():
    with pytest.raises(ValueError, match="log_p"):
        em.bhattacharyya_distances(RNG.normal(size=(2, 3, 4)))  # logits, not log-probabilities
    with pytest.raises(ValueError, match="log_p"):
        em.bhattacharyya_distances(np.zeros(4))
    with pytest.raises(ValueError, match="log_q"):
        em.bhattacharyya_distances(_random_log_probs((2, 3, 4)), _random_log_probs((2, 5, 4)))
    bad = _random_log_probs((2, 3, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="log_p"):
        em.bhattacharyya_distances(bad)
    with pytest.raises(ValueError, match="y"):
        em.one_hot_log_probs(np.array([0, -1]), 3)
    with pytest.raises(ValueError, match="y"):
        em.one_hot_log_probs(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="n_classes"):
        em.one_hot_log_probs(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="n_classes"):
        em.uniform_log_probs(4, 0)
    with pytest.raises(ValueError, match="n"):
        em.uniform_log_probs(0, 3)


# ---------------------------------------------------------------------------------- InPCA


def test_inpca_matches_eigh_of_double_centered_matrix():
    d = em.bhattacharyya_distances(_random_log_probs((12, 20, 5)))
    emb = em.inpca(d)
    w = _double_centered(d)
    lam = scipy.linalg.eigh(w, eigvals_only=True)
    np.testing.assert_allclose(emb.eigenvalues, lam[np.argsort(-np.abs(lam))], atol=1e-12)
    assert np.all(np.diff(np.abs(emb.eigenvalues)) <= 1e-15)  # ordered by |lambda|
    # coordinates with signs reproduce W: X S X^T = W (sign-invariant comparison)
    x, s = emb.coordinates, emb.signs
    np.testing.assert_allclose((x * s) @ x.T, w, atol=1e-12)
    np.testing.assert_allclose(emb.vectors.T @ emb.vectors, np.eye(12), atol=1e-12)
    np.testing.assert_array_equal(s, np.where(emb.eigenvalues < 0, -1.0, 1.0))


def test_inpca_is_pca_for_squared_euclidean_distances():
    pts = RNG.normal(size=(15, 3)) * [3.0, 1.0, 0.3]
    d = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    emb = em.inpca(d)
    pca = PCA().fit(pts)
    np.testing.assert_allclose(emb.eigenvalues[:3], pca.explained_variance_ * 14, rtol=1e-10)
    assert np.abs(emb.eigenvalues[3:]).max() < 1e-10 * emb.eigenvalues[0]
    ref = pca.transform(pts)  # same coordinates up to the sign of each axis
    np.testing.assert_allclose(np.abs(emb.coordinates[:, :3]), np.abs(ref), atol=1e-10)
    d3 = em.pairwise_distances(emb.coordinates[:, :3], emb.signs[:3])
    np.testing.assert_allclose(d3, d, atol=1e-10)


def test_all_components_reconstruct_non_euclidean_distances():
    """Bhattacharyya distances are not squared Euclidean ones: W has negative eigenvalues,
    and only with them (time-like coordinates) are the distances reproduced."""
    d = em.bhattacharyya_distances(_random_log_probs((40, 30, 6), scale=3.0))
    emb = em.inpca(d)
    assert (emb.eigenvalues < -1e-6 * emb.eigenvalues.max()).sum() >= 1
    recon = em.pairwise_distances(emb.coordinates, emb.signs)
    assert np.abs(recon - d).max() < 1e-8
    space = emb.signs > 0
    spacelike = em.pairwise_distances(emb.coordinates[:, space], emb.signs[space])
    assert np.abs(spacelike - d).max() > 1e-3  # the negative eigenvalues are needed


def test_inpca_minkowski_example():
    """Points of a 1+1 Minkowski plane: D = dx^2 - dt^2 gives one negative eigenvalue, and
    two components reproduce D."""
    x, t = RNG.normal(size=10) * 2.0, RNG.normal(size=10)
    d = (x[:, None] - x[None]) ** 2 - (t[:, None] - t[None]) ** 2
    emb = em.inpca(d)
    assert list(emb.signs[:2]) in ([1.0, -1.0], [-1.0, 1.0])
    assert np.abs(emb.eigenvalues[2:]).max() < 1e-10
    recon = em.pairwise_distances(emb.coordinates[:, :2], emb.signs[:2])
    np.testing.assert_allclose(recon, d, atol=1e-10)


def test_inpca_truncation_and_inputs():
    d = em.bhattacharyya_distances(_random_log_probs((8, 10, 3)))
    full, top = em.inpca(d), em.inpca(d, n_components=3)
    assert top.coordinates.shape == (8, 3) and top.vectors.shape == (8, 3)
    np.testing.assert_allclose(top.coordinates, full.coordinates[:, :3], atol=1e-12)
    with pytest.raises(ValueError, match="n_components"):
        em.inpca(d, n_components=0)
    with pytest.raises(ValueError, match="n_components"):
        em.inpca(d, n_components=9)
    asym = d.copy()
    asym[0, 1] += 0.1
    with pytest.raises(ValueError, match="distances"):
        em.inpca(asym)
    with pytest.raises(ValueError, match="distances"):
        em.inpca(d + np.eye(8))
    with pytest.raises(ValueError, match="distances"):
        em.inpca(d[:, :5])


def test_pairwise_distances_by_hand_and_chunked():
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(em.pairwise_distances(x, [1.0, -1.0]), [[0, -3], [-3, 0]])
    y = RNG.normal(size=(7, 4))
    s = np.array([1.0, -1.0, 1.0, -1.0])
    ref = np.array([[np.sum(s * (a - b) ** 2) for b in y[:3]] for a in y])
    np.testing.assert_allclose(em.pairwise_distances(y, s, y[:3]), ref, atol=1e-14)
    np.testing.assert_allclose(em.pairwise_distances(y, s, y[:3], max_chunk_bytes=1), ref,
                               atol=1e-14)
    with pytest.raises(ValueError, match="signs"):
        em.pairwise_distances(y, [1.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="coordinates"):
        em.pairwise_distances(y, s, y[:, :3])


def test_explained_stress_matches_frobenius_residual():
    d = em.bhattacharyya_distances(_random_log_probs((10, 15, 4)))
    emb = em.inpca(d)
    w = _double_centered(d)
    stress = em.explained_stress(emb.eigenvalues)
    for k in (1, 2, 3, 10):
        v, lam = emb.vectors[:, :k], emb.eigenvalues[:k]
        direct = 1 - np.linalg.norm(w - (v * lam) @ v.T) / np.linalg.norm(w)
        np.testing.assert_allclose(stress[k - 1], direct, atol=1e-10)
        assert em.explained_stress(emb.eigenvalues, k) == pytest.approx(stress[k - 1])
    assert stress[-1] == pytest.approx(1.0) and np.all(np.diff(stress) >= 0)
    # by hand: eigenvalues 3, -2, 1 (sum of squares 14); one component leaves sqrt(5/14)
    assert em.explained_stress([3.0, -2.0, 1.0], 1) == pytest.approx(1 - np.sqrt(5 / 14))
    with pytest.raises(ValueError, match="k"):
        em.explained_stress([3.0, 1.0], 3)
    with pytest.raises(ValueError, match="eigenvalues"):
        em.explained_stress([0.0, 0.0])
    with pytest.raises(ValueError, match="eigenvalues"):
        em.explained_stress([[1.0]])


def test_project_places_points():
    probs = _random_log_probs((14, 12, 4))
    d = em.bhattacharyya_distances(probs)
    for n_components in (None, 4):
        emb = em.inpca(d, n_components)
        # an embedded point gets its own coordinates back
        np.testing.assert_allclose(em.project(emb, d[[2, 5]]), emb.coordinates[[2, 5]],
                                   atol=1e-10)
    # a new point of a Euclidean configuration that spans its space is placed exactly
    pts = RNG.normal(size=(9, 2))
    new = RNG.normal(size=(3, 2))
    d_old = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    d_new = ((new[:, None] - pts[None]) ** 2).sum(-1)
    emb = em.inpca(d_old, n_components=2)
    placed = em.project(emb, d_new)
    np.testing.assert_allclose(em.pairwise_distances(placed, emb.signs, emb.coordinates), d_new,
                               atol=1e-10)
    with pytest.raises(ValueError, match="distances_new"):
        em.project(emb, d_new[:, :5])
    with pytest.raises(ValueError, match="distances_new"):
        em.project(emb, np.full((1, 9), np.inf))


def test_trajectory_distance_hand_cases():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    d = lambda p, q: ((p[:, None] - q[None]) ** 2).sum(-1)  # noqa: E731
    assert em.trajectory_distance(d(a, a[::-1])) == 0.0  # same points, other order
    assert em.trajectory_distance(d(a, a[[0, 0, 1, 1, 2]])) == 0.0  # same points, other speed
    shifted = a + [0.0, 0.5]  # every nearest squared distance is 0.25
    assert em.trajectory_distance(d(a, shifted)) == pytest.approx(0.25)
    # asymmetric by hand: a's nearest in b: 0, 0, 1 (mean 1/3); b's nearest in a: 0, 0 (mean 0)
    b = a[:2]
    assert em.trajectory_distance(d(a, b)) == pytest.approx(0.5 * (1 / 3))
    assert em.trajectory_distance(d(b, a)) == em.trajectory_distance(d(a, b))
    # b stopped early on a's path: directed distance b -> a is 0, so "min" gives 0
    assert em.trajectory_distance(d(a, b), how="min") == 0.0
    assert em.trajectory_distance(d(a, shifted), how="min") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="how"):
        em.trajectory_distance(d(a, b), how="max")
    with pytest.raises(ValueError, match="distances"):
        em.trajectory_distance(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="distances"):
        em.trajectory_distance(np.array([[np.nan]]))
