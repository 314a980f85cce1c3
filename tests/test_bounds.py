import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import rel_entr
from scipy.stats import binom

from udl_jax import bounds

# ------------------------------------------------------------------------------- binary kl


def test_kl_bernoulli_matches_direct_formula_and_rel_entr():
    rng = np.random.default_rng(0)
    q, p = rng.uniform(0.001, 0.999, (2, 500))
    direct = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
    np.testing.assert_allclose(bounds.kl_bernoulli(q, p), direct, rtol=1e-12, atol=1e-15)
    # rel_entr handles 0 and 1 exactly too; include the edges of the square
    g = np.linspace(0, 1, 11)
    qq, pp = np.meshgrid(g, g, indexing="ij")
    np.testing.assert_allclose(
        bounds.kl_bernoulli(qq, pp), rel_entr(qq, pp) + rel_entr(1 - qq, 1 - pp), rtol=1e-12
    )


def test_kl_bernoulli_edge_cases():
    assert bounds.kl_bernoulli(0.0, 0.3) == pytest.approx(-math.log(0.7))
    assert bounds.kl_bernoulli(1.0, 0.3) == pytest.approx(-math.log(0.3))
    assert bounds.kl_bernoulli(0.0, 0.0) == 0.0
    assert bounds.kl_bernoulli(1.0, 1.0) == 0.0
    assert bounds.kl_bernoulli(0.4, 0.4) == 0.0
    assert bounds.kl_bernoulli(0.2, 0.0) == math.inf
    assert bounds.kl_bernoulli(0.2, 1.0) == math.inf
    assert isinstance(bounds.kl_bernoulli(0.1, 0.2), float)


def _grid_inverse(q, cs, grid, kl_grid, upper):
    """Brute force: the extreme grid point on the correct side of q with kl <= c.

    The grid includes q itself (kl = 0), so the set is never empty.
    """
    side = grid >= q if upper else grid <= q
    ok = (kl_grid[None, :] <= np.asarray(cs)[:, None]) & side[None, :]
    return np.array([grid[row].max() if upper else grid[row].min() for row in ok])


def test_kl_inverses_match_a_fine_grid():
    grid = np.linspace(0, 1, 1_000_001)  # spacing 1e-6
    h, tol = 1e-6, 1e-10
    cs = np.array([0.0, 1e-4, 1e-3, 0.01, 0.05, 0.2, 1.0, 3.0])
    errors = []
    for q in (0.0, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 0.99, 1.0):
        grid_q = np.append(grid, q)
        kl_grid = bounds.kl_bernoulli(q, grid_q)
        up = bounds.kl_inverse_upper(np.full(cs.shape, q), cs, tol)
        lo = bounds.kl_inverse_lower(np.full(cs.shape, q), cs, tol)
        up_grid = _grid_inverse(q, cs, grid_q, kl_grid, upper=True)
        lo_grid = _grid_inverse(q, cs, grid_q, kl_grid, upper=False)
        # the grid point is within h inside the true inverse; ours within tol outside it
        assert np.all(up >= up_grid - 1e-15) and np.all(up - up_grid <= h + tol)
        assert np.all(lo <= lo_grid + 1e-15) and np.all(lo_grid - lo <= h + tol)
        errors += [np.max(up - up_grid), np.max(lo_grid - lo)]
    assert max(errors) <= h + tol


def test_kl_inverse_is_accurate_to_tol_and_on_the_safe_side():
    q = np.array([0.0, 0.02, 0.1, 0.4, 0.7])
    c = np.array([0.3, 0.01, 0.05, 0.1, 0.02])
    up = bounds.kl_inverse_upper(q, c, tol=1e-12)
    assert np.all(bounds.kl_bernoulli(q, up) >= c)  # at or just past the boundary
    assert np.all(bounds.kl_bernoulli(q, up - 1e-12) <= c)
    lo = bounds.kl_inverse_lower(q[1:], c[1:], tol=1e-12)
    assert np.all(bounds.kl_bernoulli(q[1:], lo) >= c[1:])
    assert np.all(bounds.kl_bernoulli(q[1:], lo + 1e-12) <= c[1:])


def test_kl_inverse_special_cases():
    assert bounds.kl_inverse_upper(0.3, 0.0) == pytest.approx(0.3, abs=1e-10)
    assert bounds.kl_inverse_upper(1.0, 0.5) == 1.0
    assert bounds.kl_inverse_upper(0.2, math.inf) == 1.0
    assert bounds.kl_inverse_lower(0.0, 0.5) == 0.0
    # q = 0 has a closed form: kl(0 || p) = -ln(1 - p)
    assert bounds.kl_inverse_upper(0.0, 0.1) == pytest.approx(-math.expm1(-0.1), abs=1e-10)


# --------------------------------------------------------------------------------- bounds


def test_maurers_constant_holds_for_every_n():
    """xi(n) = sum_k Bin(k; n, k/n) <= 2 sqrt(n) (Maurer 2004), also for n < 8."""
    for n in [*range(1, 60), 100, 1000, 10_000]:
        k = np.arange(n + 1)
        assert binom.pmf(k, n, k / n).sum() <= 2 * math.sqrt(n) + 1e-12


def test_bounds_against_hand_computed_values():
    # c = (5 + ln(2 sqrt(1000) / 0.05)) / 1000 = (5 + 7.1427571) / 1000
    c = (5 + math.log(2 * math.sqrt(1000) / 0.05)) / 1000
    assert c == pytest.approx(0.0121427571, rel=1e-9)
    assert bounds.mcallester_bound(0.1, 5.0, 1000, 0.05) == pytest.approx(
        0.1 + math.sqrt(c / 2), rel=1e-12
    )
    assert bounds.mcallester_bound(0.1, 5.0, 1000, 0.05) == pytest.approx(0.17791905, rel=1e-7)
    kb = bounds.kl_bound(0.1, 5.0, 1000, 0.05)
    assert bounds.kl_bernoulli(0.1, kb) == pytest.approx(c, rel=1e-8)
    assert kb == pytest.approx(0.15310963, abs=1e-8)
    # zero training error: kl(0 || p) = -ln(1 - p), so the bound is 1 - exp(-c)
    c0 = (20 + math.log(2 * math.sqrt(5000) / 0.01)) / 5000
    assert bounds.kl_bound(0.0, 20.0, 5000, 0.01) == pytest.approx(-math.expm1(-c0), abs=1e-9)
    # Occam, zero error: 1 - exp(-(bits ln 2 + ln(1/delta)) / n)
    c1 = (1000 * math.log(2) + math.log(20)) / 10_000
    assert c1 == pytest.approx(0.06961430, rel=1e-6)
    assert bounds.occam_bound(0.0, 1000, 10_000, 0.05) == pytest.approx(-math.expm1(-c1), abs=1e-9)
    assert bounds.occam_bound(0.0, 1000, 10_000, 0.05) == pytest.approx(0.0672463, abs=1e-6)


def test_occam_is_the_kl_bound_without_the_sqrt_n_term():
    e, bits, n, delta = 0.05, 3000.0, 50_000, 0.05
    kl = bits * math.log(2)
    assert bounds.occam_bound(e, bits, n, delta) == pytest.approx(
        bounds.kl_inverse_upper(e, (kl + math.log(1 / delta)) / n), abs=1e-12
    )
    assert bounds.occam_bound(e, bits, n, delta) < bounds.kl_bound(e, kl, n, delta)


def test_kl_bound_is_never_looser_than_mcallester():
    e = np.linspace(0, 1, 41)
    for kl, n, delta in itertools.product(
        [0.0, 1.0, 10.0, 100.0, 1e4], [10, 100, 10_000], [0.01, 0.05, 0.5]
    ):
        kb = bounds.kl_bound(e, kl, n, delta)
        mb = bounds.mcallester_bound(e, kl, n, delta)
        assert np.all(kb <= mb + 1e-9), (kl, n, delta)
        assert np.all((kb >= e) & (kb <= 1))


def test_catoni_one_point_grid_equals_its_formula():
    e, kl, n, delta, lam = 0.08, 40.0, 20_000, 0.05, 3000.0
    expected = (1 - math.exp(-(lam * e + kl + math.log(1 / delta)) / n)) / (1 - math.exp(-lam / n))
    value, best = bounds.catoni_bound(e, kl, n, delta, [lam])
    assert value == pytest.approx(expected, rel=1e-12)
    assert best == lam


def test_catoni_grid_takes_the_best_point_with_delta_split():
    e, kl, n, delta = 0.08, 40.0, 20_000, 0.05
    grid = n * np.logspace(-2, 1, 25)
    value, best = bounds.catoni_bound(e, kl, n, delta, grid)
    singles = [bounds.catoni_bound(e, kl, n, delta / len(grid), [g])[0] for g in grid]
    assert value == pytest.approx(min(singles), rel=1e-12)
    assert best == grid[int(np.argmin(singles))]
    assert e < value < 1
    # broadcasting over the train error returns arrays of bounds and lambdas
    values, bests = bounds.catoni_bound(np.array([0.0, 0.1, 0.3]), kl, n, delta, grid)
    assert values.shape == bests.shape == (3,) and np.all(np.diff(values) > 0)


@pytest.mark.parametrize("which", ["mcallester", "kl", "catoni", "occam"])
def test_bounds_increase_with_complexity_and_decrease_with_n(which):
    grid = np.logspace(1, 6, 40)

    def bound(e, kl, n, delta=0.05):
        if which == "mcallester":
            return bounds.mcallester_bound(e, kl, n, delta)
        if which == "kl":
            return bounds.kl_bound(e, kl, n, delta)
        if which == "catoni":
            return bounds.catoni_bound(e, kl, n, delta, grid)[0]
        return bounds.occam_bound(e, kl, n, delta)

    kls = np.array([0.0, 1.0, 10.0, 100.0, 1000.0])
    ns = np.array([100, 1000, 10_000, 100_000])
    for e in (0.0, 0.05, 0.2):
        by_kl = bound(e, kls, 10_000)
        by_n = bound(e, 50.0, ns)
        assert np.all(np.diff(by_kl) > 0), by_kl
        assert np.all(np.diff(by_n) < 0), by_n
    # and smaller delta (more confidence) costs something
    assert bound(0.1, 10.0, 1000, 0.01) > bound(0.1, 10.0, 1000, 0.1)


# ------------------------------------------------------------------------- Gaussian KL


def test_kl_diag_gaussians_closed_form_1d():
    expected = math.log(2 / 0.5) + (0.5**2 + (1 - 0) ** 2) / (2 * 2**2) - 0.5  # 1.04254...
    value = bounds.kl_diag_gaussians(jnp.array([1.0]), jnp.array([0.5]), 0.0, 2.0)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert float(bounds.kl_diag_gaussians(jnp.ones(4), 0.3, jnp.ones(4), 0.3)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_kl_diag_gaussians_on_pytrees_matches_monte_carlo_and_flat_arrays():
    rng = np.random.default_rng(4)
    mu_q = {"w": jnp.asarray(rng.normal(size=(2, 3)) * 0.5), "b": jnp.array([0.2, -0.1])}
    sigma_q = {"w": jnp.full((2, 3), 0.4), "b": jnp.array([0.8, 1.3])}
    mu_p = {"w": jnp.zeros((2, 3)), "b": jnp.array([0.3, -0.4])}
    sigma_p = 0.9  # scalar prior scale, broadcast to every leaf
    value = float(bounds.kl_diag_gaussians(mu_q, sigma_q, mu_p, sigma_p))

    flat = lambda t: jnp.concatenate([t["b"].ravel(), t["w"].ravel()])  # noqa: E731
    assert value == pytest.approx(
        float(bounds.kl_diag_gaussians(flat(mu_q), flat(sigma_q), flat(mu_p), sigma_p)), rel=1e-6
    )

    # Monte Carlo: KL = E_q[log q(theta) - log p(theta)]
    m, s, mp = (np.asarray(flat(t), np.float64) for t in (mu_q, sigma_q, mu_p))
    theta = m + s * np.random.default_rng(3).normal(size=(200_000, m.size))
    log_q = -0.5 * (((theta - m) / s) ** 2 + np.log(2 * np.pi * s**2)).sum(1)
    log_p = -0.5 * (((theta - mp) / sigma_p) ** 2 + np.log(2 * np.pi * sigma_p**2)).sum(1)
    diff = log_q - log_p
    se = diff.std() / math.sqrt(diff.size)
    assert abs(diff.mean() - value) < 4 * se

    # differentiable: d KL / d mu_q = (mu_q - mu_p) / sigma_p^2
    grad = jax.grad(lambda mq: bounds.kl_diag_gaussians(mq, sigma_q, mu_p, sigma_p))(mu_q)
    np.testing.assert_allclose(grad["w"], mu_q["w"] / sigma_p**2, rtol=1e-5)


def test_kl_diag_gaussians_rejects_mismatched_trees():
    with pytest.raises(ValueError, match="sigma_q"):
        bounds.kl_diag_gaussians({"a": jnp.ones(2)}, {"b": jnp.ones(2)}, 0.0, 1.0)
    with pytest.raises(ValueError, match="mu_p"):
        bounds.kl_diag_gaussians({"a": jnp.ones(2)}, 1.0, jnp.ones(3), 1.0)
    with pytest.raises(ValueError, match="sigma_p: leaf of shape"):
        bounds.kl_diag_gaussians(jnp.ones(2), 1.0, 0.0, jnp.ones(3))


# ------------------------------------------------------------- quantization, code length


def test_quantize_recovers_well_separated_levels():
    rng = np.random.default_rng(0)
    centres = np.array([-2.0, 0.5, 3.0])
    labels = rng.integers(0, 3, 3000)
    z = centres[labels] + 0.05 * rng.normal(size=3000)
    codebook, idx = bounds.quantize(z, 3)
    np.testing.assert_allclose(codebook, centres, atol=0.01)
    np.testing.assert_array_equal(idx, labels)
    assert idx.dtype == np.int64 and np.all(np.diff(codebook) > 0)
    # deterministic, and one level is the mean
    np.testing.assert_array_equal(bounds.quantize(z, 3)[1], idx)
    cb1, idx1 = bounds.quantize(z, 1)
    assert cb1[0] == pytest.approx(z.mean()) and np.all(idx1 == 0)


def test_quantize_error_falls_with_more_levels():
    z = np.random.default_rng(1).normal(size=2000)
    errs = []
    for levels in (2, 4, 8, 16):
        cb, idx = bounds.quantize(z, levels)
        errs.append(np.mean((cb[idx] - z) ** 2))
    assert np.all(np.diff(errs) < 0)
    assert errs[0] == pytest.approx(1 - 2 / np.pi, rel=0.05)  # optimal 1-bit Gaussian quantizer


def test_code_length_for_uniform_usage_is_log2_levels_per_entry():
    idx = np.repeat(np.arange(4), 64)  # d = 256, each of L = 4 levels used 64 times
    cl = bounds.quantized_code_length(idx, 4, bits_per_value=16)
    assert cl.entropy == 256 * 2  # d log2 L, exactly
    assert cl.codebook == 4 * 16
    assert cl.header == (2 * 8 + 1) + (2 * 2 + 1)  # Elias gamma of 256 and 4
    assert cl.counts == math.ceil(math.log2(math.comb(259, 3)))
    assert cl.payload == 512 + 2  # ceil(entropy + margin) + 1
    assert cl.total == cl.header + cl.codebook + cl.counts + cl.payload
    # three levels: d log2 3, not a whole number of bits
    cl3 = bounds.quantized_code_length(np.repeat(np.arange(3), 100), 3)
    assert cl3.entropy == pytest.approx(300 * math.log2(3), rel=1e-12)


def test_code_length_is_at_least_the_empirical_entropy():
    rng = np.random.default_rng(2)
    for levels, d in [(2, 10), (4, 1000), (16, 5000), (7, 333)]:
        probs = rng.dirichlet(np.ones(levels))
        idx = rng.choice(levels, size=d, p=probs)
        cl = bounds.quantized_code_length(idx, levels)
        counts = np.bincount(idx, minlength=levels)
        p_hat = counts[counts > 0] / d
        assert cl.entropy == pytest.approx(-d * np.sum(p_hat * np.log2(p_hat)), rel=1e-10)
        assert cl.payload >= cl.entropy + 1 and cl.total >= cl.entropy
        assert cl.payload <= cl.entropy + 2 + 1e-6
    # skewed usage costs far fewer bits than d log2 L
    idx = np.zeros(1000, np.int64)
    idx[:10] = 1
    assert bounds.quantized_code_length(idx, 16).payload < 0.1 * 1000 * 4


def test_code_for_counts_and_indices_satisfies_kraft():
    """Sum over all L^d index sequences of 2^-(counts + payload) <= 1 (prefix-free code)."""
    levels, d = 3, 6
    total = 0.0
    for seq in itertools.product(range(levels), repeat=d):
        cl = bounds.quantized_code_length(np.array(seq), levels)
        total += 2.0 ** -(cl.counts + cl.payload)
    assert total <= 1.0


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="q: expected values in"):
        bounds.kl_bernoulli(1.2, 0.5)
    with pytest.raises(ValueError, match="p: expected values in"):
        bounds.kl_bernoulli(0.2, -0.1)
    with pytest.raises(ValueError, match="q:"):
        bounds.kl_inverse_upper(np.nan, 0.1)
    with pytest.raises(ValueError, match="c: expected values >= 0"):
        bounds.kl_inverse_upper(0.1, -1.0)
    with pytest.raises(ValueError, match="tol"):
        bounds.kl_inverse_upper(0.1, 0.1, tol=0.0)
    for fn in (bounds.mcallester_bound, bounds.kl_bound):
        with pytest.raises(ValueError, match="train_error"):
            fn(-0.1, 1.0, 100, 0.05)
        with pytest.raises(ValueError, match="kl: expected values >= 0"):
            fn(0.1, -1.0, 100, 0.05)
        with pytest.raises(ValueError, match="n: expected a positive integer"):
            fn(0.1, 1.0, 0, 0.05)
        with pytest.raises(ValueError, match="n: expected a positive integer"):
            fn(0.1, 1.0, 10.5, 0.05)
        for delta in (0.0, 1.0, 1.5):
            with pytest.raises(ValueError, match="delta"):
                fn(0.1, 1.0, 100, delta)
    with pytest.raises(ValueError, match="lambdas"):
        bounds.catoni_bound(0.1, 1.0, 100, 0.05, [10.0, -1.0])
    with pytest.raises(ValueError, match="lambdas"):
        bounds.catoni_bound(0.1, 1.0, 100, 0.05, [])
    with pytest.raises(ValueError, match="n: expected"):
        bounds.catoni_bound(0.1, 1.0, -5, 0.05, [10.0])
    with pytest.raises(ValueError, match="code_length_bits"):
        bounds.occam_bound(0.1, -3, 100, 0.05)
    with pytest.raises(ValueError, match="delta"):
        bounds.occam_bound(0.1, 30, 100, 0.0)
    with pytest.raises(ValueError, match="num_levels"):
        bounds.quantize(np.ones(5), 0)
    with pytest.raises(ValueError, match="z: expected"):
        bounds.quantize(np.ones((2, 2)), 2)
    with pytest.raises(ValueError, match="indices"):
        bounds.quantized_code_length(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="indices"):
        bounds.quantized_code_length(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="mu_q"):
        bounds.kl_diag_gaussians({}, 1.0, 0.0, 1.0)


# ------------------------------------------------------------------ composed bounds (chapter 11)


def test_gibbs_kl_bound_solves_both_kl_equations():
    """Each stage of Dziugaite & Roy's bound, checked on the kl equation it inverts."""
    rng = np.random.default_rng(0)
    errors = rng.uniform(0.1, 0.3, size=50)
    kl, n, delta, delta_mc, grid = 40.0, 2000, 0.04, 0.01, 31
    upper, bound = bounds.gibbs_kl_bound(errors, kl, n, delta, delta_mc=delta_mc, num_priors=grid)
    mean = np.mean(errors)
    assert mean < upper < bound < 1
    np.testing.assert_allclose(
        bounds.kl_bernoulli(mean, upper), math.log(2 / delta_mc) / 50, rtol=1e-7
    )
    rhs = (kl + math.log(2 * math.sqrt(n) / (delta / grid))) / n
    np.testing.assert_allclose(bounds.kl_bernoulli(upper, bound), rhs, rtol=1e-7)
    # more priors in the union, a looser bound; more samples, a tighter estimate
    assert bounds.gibbs_kl_bound(errors, kl, n, delta, delta_mc=delta_mc)[1] < bound
    upper_4 = bounds.gibbs_kl_bound(np.tile(errors, 4), kl, n, delta, delta_mc=delta_mc)[0]
    assert mean < upper_4 < upper
    with pytest.raises(ValueError, match="sample_errors"):
        bounds.gibbs_kl_bound([0.1, 1.5], kl, n, delta, delta_mc=delta_mc)
    with pytest.raises(ValueError, match="sample_errors"):
        bounds.gibbs_kl_bound([], kl, n, delta, delta_mc=delta_mc)
    with pytest.raises(ValueError, match="delta_mc"):
        bounds.gibbs_kl_bound(errors, kl, n, delta, delta_mc=0.0)
    with pytest.raises(ValueError, match="num_priors"):
        bounds.gibbs_kl_bound(errors, kl, n, delta, delta_mc=delta_mc, num_priors=0)
    with pytest.raises(ValueError, match="delta"):
        bounds.gibbs_kl_bound(errors, kl, n, 1.5, delta_mc=delta_mc)


def _linear_problem():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    w = rng.normal(size=(5, 3))
    y = (x @ w).argmax(1)
    z = (w + 0.3 * rng.normal(size=(5, 3))).ravel()

    def predict(zq):
        return (x @ np.asarray(zq).reshape(5, 3)).argmax(1)

    return y[:200], y[200:], z, predict


def test_quantized_occam_bound_matches_the_chapters_original_code():
    y, y_test, z, predict = _linear_problem()
    for levels, n in ((4, 200), (8, 120)):
        got = bounds.quantized_occam_bound(
            z, levels, predict, y, y_test, delta=0.05, n=n, extra_bits=4
        )
        # chapter 11's `compress`, before it moved here
        codebook, idx = bounds.quantize(z, levels)
        codebook = codebook.astype(np.float16).astype(np.float32)
        pred = predict(codebook[idx])
        bits = bounds.quantized_code_length(idx, levels, bits_per_value=16).total + 4
        err = float(np.mean(pred[:n] != y[:n]))
        test = float(np.mean(pred[200:] != y_test))
        assert tuple(got) == (err, test, bits, bounds.occam_bound(err, bits, n, 0.05))
        assert got.train <= got.bound <= 1
    # levels that are exact float16 values: quantization loses nothing
    exact = np.array([-1.5, 0.25, 2.0])[np.arange(15) % 3]
    got = bounds.quantized_occam_bound(exact, 3, predict, y, y_test, delta=0.05)
    pred = predict(exact)
    assert got.train == np.mean(pred[:200] != y) and got.test == np.mean(pred[200:] != y_test)
    code = bounds.quantized_code_length(np.arange(15) % 3, 3, bits_per_value=16)
    assert got.bits == code.total
    # a float32 codebook costs 16 more bits per level
    wide = bounds.quantized_occam_bound(
        exact, 3, predict, y, y_test, delta=0.05, codebook_dtype=np.float32
    )
    assert wide.bits == got.bits + 3 * 16
    with pytest.raises(ValueError, match="n: expected"):
        bounds.quantized_occam_bound(z, 4, predict, y, y_test, delta=0.05, n=201)
    with pytest.raises(ValueError, match="extra_bits"):
        bounds.quantized_occam_bound(z, 4, predict, y, y_test, delta=0.05, extra_bits=-1)
    with pytest.raises(ValueError, match="codebook_dtype"):
        bounds.quantized_occam_bound(z, 4, predict, y, y_test, delta=0.05, codebook_dtype=int)
    with pytest.raises(ValueError, match="predict"):
        bounds.quantized_occam_bound(z, 4, predict, y[:50], y_test, delta=0.05)
