import numpy as np
import pytest
from scipy.spatial import cKDTree

from udl_jax import intrinsic_dimension as idm


def test_two_nearest_matches_a_kd_tree_and_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)) * 1e3 + 5e4  # far from the origin: cancellation
    r1, r2 = idm._two_nearest(x, block=64)
    dist, _ = cKDTree(x).query(x, k=3)
    np.testing.assert_allclose(r1, dist[:, 1], rtol=1e-12)
    np.testing.assert_allclose(r2, dist[:, 2], rtol=1e-12)
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(r1, np.sort(full, 1)[:, 0], rtol=1e-12)


def test_ratios_on_a_hand_example_and_duplicates_are_dropped():
    # on a line: 0, 1, 3, 7. (r1, r2): 0 -> (1, 3), 1 -> (1, 2), 3 -> (2, 3), 7 -> (4, 6)
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(np.sort(idm.neighbour_ratios(x)), [1.5, 1.5, 2.0, 3.0])
    # the two zeros have r1 = 0, the point 1 a tie (1, 1): only 3 -> (2, 3) is left
    dup = np.array([[0.0], [0.0], [1.0], [3.0]])
    np.testing.assert_allclose(idm.neighbour_ratios(dup), [1.5])


def test_mle_matches_closed_form():
    mu = np.array([1.5, 1.5, 2.0, 3.0])
    expected = 3 / (2 * np.log(1.5) + np.log(2.0) + np.log(3.0))
    assert idm.twonn_mle(mu) == pytest.approx(expected, rel=1e-12)


def test_fit_matches_closed_form_and_is_exact_on_the_pareto_quantiles():
    mu = np.array([3.0, 1.5, 2.0, 4.0])
    # sorted 1.5, 2, 3, 4 with F = 1/4, 2/4, 3/4, 1; discard_fraction 0 keeps all but F = 1
    a = np.log([1.5, 2.0, 3.0])
    b = -np.log(1 - np.array([0.25, 0.5, 0.75]))
    assert idm.twonn_fit(mu, 0.0) == pytest.approx((a @ b) / (a @ a), rel=1e-12)
    # ratios at the quantiles of a Pareto law of exponent d: -log(1 - F) = d log mu exactly
    d, n = 3.7, 200
    f = np.arange(1, n + 1) / n
    f[-1] = 1 - 1e-9  # the last quantile is infinite
    mu_q = (1 - f) ** (-1 / d)
    assert idm.twonn_fit(mu_q) == pytest.approx(d, rel=1e-9)


@pytest.mark.parametrize("method", ["fit", "mle"])
def test_pareto_samples_recover_the_exponent(method):
    rng = np.random.default_rng(1)
    d = 6.0
    mu = rng.uniform(size=20000) ** (-1 / d)  # P(mu > t) = t^(-d)
    est = idm.twonn_mle(mu) if method == "mle" else idm.twonn_fit(mu)
    assert est == pytest.approx(d, rel=0.03)


@pytest.mark.parametrize(
    ("kind", "d", "tol"),
    [("linear", 1, 0.1), ("linear", 3, 0.1), ("sphere", 2, 0.1), ("sphere", 5, 0.1),
     ("sphere", 8, 0.12), ("curved", 2, 0.1), ("curved", 4, 0.12)],
)
@pytest.mark.parametrize("method", ["fit", "mle"])
def test_embedded_data_of_dimension_d_gives_d(kind, d, tol, method):
    rng = np.random.default_rng(d)
    x, z = idm.embedded_data(rng, 3000, d, 30, kind)
    assert x.shape == (3000, 30)
    assert z.shape == (3000, d + 1 if kind == "sphere" else d)
    assert idm.twonn(x, method) == pytest.approx(d, rel=tol)


def test_embeddings_keep_distances_and_shapes():
    rng = np.random.default_rng(3)
    x, z = idm.embedded_data(rng, 50, 4, 20, "linear")
    dx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    dz = np.linalg.norm(z[:, None] - z[None], axis=-1)
    np.testing.assert_allclose(dx, dz, atol=1e-12)
    s, _ = idm.embedded_data(rng, 50, 3, 20, "sphere")
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, rtol=1e-12)
    c, _ = idm.embedded_data(rng, 50, 3, 20, "curved")
    assert np.linalg.matrix_rank(c) == 20  # curved: spans the ambient space


def test_full_dimensional_gaussian_is_far_above_a_low_dimensional_one():
    rng = np.random.default_rng(4)
    high = idm.twonn(rng.standard_normal((2000, 20)))
    low, _ = idm.embedded_data(rng, 2000, 3, 20, "sphere")
    assert high > 12 and idm.twonn(low) < 4


def test_bad_input_raises_naming_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="x:"):
        idm.twonn(np.zeros(5))
    with pytest.raises(ValueError, match="x:"):
        idm.neighbour_ratios(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x:"):
        idm.twonn(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="method"):
        idm.twonn(rng.standard_normal((10, 2)), method="pca")
    with pytest.raises(ValueError, match="mu"):
        idm.twonn_mle([1.5, 0.5])
    with pytest.raises(ValueError, match="mu"):
        idm.twonn_fit([2.0])
    with pytest.raises(ValueError, match="discard_fraction"):
        idm.twonn_fit([1.5, 2.0, 3.0], discard_fraction=1.0)
    with pytest.raises(ValueError, match="kind"):
        idm.embedded_data(rng, 10, 2, 5, "torus")
    with pytest.raises(ValueError, match="d:"):
        idm.embedded_data(rng, 10, 5, 5, "sphere")
    with pytest.raises(ValueError, match="n:"):
        idm.embedded_data(rng, 0, 2, 5)
    with pytest.raises(ValueError, match="rng"):
        idm.embedded_data(0, 10, 2, 5)
