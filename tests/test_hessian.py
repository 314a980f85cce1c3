import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from udl_jax import hessian as hs
from udl_jax import losses, models


def _problem(widths=(4, 6, 3), n=24, seed=0, activation="tanh"):
    """A tiny MLP on random data: (apply_fn, params, x, y, loss_fn)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, widths[0])), jnp.float32)
    y = jnp.asarray(rng.integers(0, widths[-1], size=n), jnp.int32)
    m = models.MLP(widths, activation=activation, bias_var=0.1, rngs=nnx.Rngs(seed))
    apply_fn, params, _ = models.functional(m)

    def loss_fn(p):
        return losses.cross_entropy(apply_fn(p, x), y)

    return apply_fn, params, x, y, loss_fn


def _spd_matrix(eigenvalues, seed=0):
    """A symmetric matrix with the given spectrum and a random eigenbasis (float64)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return (q * np.asarray(eigenvalues)) @ q.T


PROBLEM = _problem()


@pytest.fixture(scope="module")
def reference():
    """The flat parameters, their unravel, and the Hessian by jax.hessian (jitted)."""
    _, params, _, _, loss_fn = PROBLEM
    flat, unravel = ravel_pytree(params)
    h = jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat)
    return flat, unravel, np.asarray(h, np.float64)


# ------------------------------------------------------------------------------ products


def test_hvp_matches_dense_hessian_and_finite_differences(reference):
    _, params, _, _, loss_fn = PROBLEM
    flat, unravel, h_ref = reference
    v = jax.random.normal(jax.random.key(1), flat.shape)
    hv = ravel_pytree(hs.hessian_vector_product(loss_fn, params, unravel(v)))[0]
    np.testing.assert_allclose(hv, h_ref @ np.asarray(v, np.float64), rtol=1e-4, atol=1e-5)
    # central differences of gradients: (g(p + e v) - g(p - e v)) / 2e
    grad = jax.jit(jax.grad(lambda f: loss_fn(unravel(f))))
    eps = 1e-2
    fd = (grad(flat + eps * v) - grad(flat - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv, fd, rtol=0, atol=2e-3 * float(jnp.abs(hv).max()))
    dense = hs.dense_hessian(loss_fn, params)
    np.testing.assert_allclose(dense, h_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dense, dense.T, atol=1e-5)


def test_dense_hessian_refuses_large_models():
    _, params, _, _, loss_fn = PROBLEM
    p = models.param_count(params)
    with pytest.raises(ValueError, match="max_params|max_size"):
        hs.dense_hessian(loss_fn, params, max_params=p - 1)


def test_gauss_newton_and_fisher(reference):
    apply_fn, params, x, y, _ = PROBLEM
    flat, unravel, _ = reference
    v = unravel(jax.random.normal(jax.random.key(2), flat.shape))
    # G = J^T H_L J with J and H_L formed explicitly
    jac = jax.jit(jax.jacobian(lambda f: apply_fn(unravel(f), x).ravel()))(flat)  # (n k, P)
    out = jax.jit(apply_fn)(params, x)
    h_out = jax.jit(jax.hessian(lambda o: losses.cross_entropy(o.reshape(out.shape), y)))(
        out.ravel())
    g_ref = jac.T @ h_out @ jac
    gv = ravel_pytree(hs.gauss_newton_vector_product(apply_fn, losses.cross_entropy, params, x,
                                                      y, v))[0]
    np.testing.assert_allclose(gv, g_ref @ ravel_pytree(v)[0], rtol=1e-4, atol=1e-6)
    # the categorical Fisher is the Gauss-Newton matrix of the cross-entropy, for any labels
    fv = ravel_pytree(hs.fisher_vector_product(apply_fn, params, x, v))[0]
    np.testing.assert_allclose(fv, gv, rtol=1e-4, atol=1e-6)
    gv_other = hs.gauss_newton_vector_product(apply_fn, losses.cross_entropy, params, x,
                                              (y + 1) % 3, v)
    np.testing.assert_allclose(ravel_pytree(gv_other)[0], gv, rtol=1e-4, atol=1e-6)
    # the Gaussian Fisher is the Gauss-Newton matrix of half the mean squared error
    fg = ravel_pytree(hs.fisher_vector_product(apply_fn, params, x, v, likelihood="gaussian"))[0]
    gm = ravel_pytree(hs.gauss_newton_vector_product(apply_fn, losses.mse, params, x, y, v))[0]
    np.testing.assert_allclose(fg, gm, rtol=1e-4, atol=1e-6)
    # the Gauss-Newton matrix is positive semi-definite; operators agree with the products
    g_dense = np.asarray(hs.to_dense(hs.gauss_newton_operator(apply_fn, losses.cross_entropy,
                                                               params, x, y)))
    np.testing.assert_allclose(g_dense, g_ref, rtol=1e-4, atol=1e-6)
    assert np.linalg.eigvalsh(g_dense.astype(np.float64)).min() > -1e-6
    f_op = hs.fisher_operator(apply_fn, params, x)
    np.testing.assert_allclose(f_op(ravel_pytree(v)[0]), fv, rtol=1e-5, atol=1e-7)


def test_gauss_newton_equals_hessian_for_a_linear_model_with_mse():
    m = models.MLP((3, 2), bias_var=1.0, rngs=nnx.Rngs(0))
    apply_fn, params, _ = models.functional(m)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(10, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(10, 2)), jnp.float32)
    h = hs.dense_hessian(lambda p: losses.mse(apply_fn(p, x), y), params)
    g = hs.to_dense(hs.gauss_newton_operator(apply_fn, losses.mse, params, x, y))
    np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-6)


def test_products_validate_arguments():
    apply_fn, params, x, _, loss_fn = PROBLEM
    with pytest.raises(ValueError, match="v: expected a pytree"):
        hs.hessian_vector_product(loss_fn, params, {"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="likelihood"):
        hs.fisher_vector_product(apply_fn, params, x, params, likelihood="poisson")
    with pytest.raises(ValueError, match="loss_fn: expected a scalar"):
        hs.hessian_operator(lambda p: apply_fn(p, x), params)
    with pytest.raises(TypeError, match="loss_fn"):
        hs.top_eigenpairs(3.0, params, jax.random.key(0))
    op = hs.matrix_operator(np.eye(4))
    with pytest.raises(ValueError, match="v: expected shape"):
        op(jnp.ones(5))
    with pytest.raises(ValueError, match="k: expected"):
        hs.top_eigenpairs(op, None, jax.random.key(0), k=5)
    with pytest.raises(ValueError, match="tol"):
        hs.top_eigenpairs(op, None, jax.random.key(0), tol=-1.0)
    with pytest.raises(ValueError, match="method"):
        hs.top_eigenpairs(op, None, jax.random.key(0), method="arnoldi")
    with pytest.raises(ValueError, match="stop"):
        hs.power_iteration(op, None, jax.random.key(0), stop="never")
    with pytest.raises(ValueError, match="num_iter"):
        hs.lanczos(op, jnp.ones(4), 5)


# ------------------------------------------------------------------------------- Lanczos


def test_lanczos_full_run_recovers_the_spectrum():
    lam = np.concatenate([[50.0, 20.0, 10.0], np.geomspace(1e-3, 1.0, 37)])
    a = _spd_matrix(lam)
    op = hs.matrix_operator(a.astype(np.float32))
    alphas, betas, basis = hs.lanczos(op, jax.random.normal(jax.random.key(0), (40,)), 40)
    assert alphas.shape == (40,) and betas.shape == (39,) and basis.shape == (40, 40)
    np.testing.assert_allclose(basis @ basis.T, np.eye(40), atol=1e-5)
    t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(t)), np.sort(lam), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(basis @ a.astype(np.float32) @ basis.T, t, atol=1e-4)
    # a plain function works too
    alphas2, _, _ = hs.lanczos(lambda v: jnp.asarray(a, jnp.float32) @ v,
                               jax.random.normal(jax.random.key(0), (40,)), 5)
    np.testing.assert_allclose(alphas2, alphas[:5], rtol=1e-5)


def test_lanczos_restarts_on_repeated_eigenvalues():
    lam = np.array([3.0] * 4 + [1.0] * 4 + [0.0] * 4)  # 3 distinct values: breakdown after 3
    op = hs.matrix_operator(_spd_matrix(lam, seed=1).astype(np.float32))
    alphas, betas, basis = hs.lanczos(op, jnp.ones(12), 12)
    t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(t)), np.sort(lam), atol=1e-4)
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-5)


def test_top_eigenpairs_match_eigh_with_residuals_below_tol(reference):
    _, params, _, _, loss_fn = PROBLEM
    h = reference[2]
    ref = np.linalg.eigvalsh((h + h.T) / 2)[::-1]
    tol = 1e-3
    vals, vecs, n = hs.top_eigenpairs(loss_fn, params, jax.random.key(0), k=4, tol=tol)
    assert vals.shape == (4,) and vecs.shape == (4, h.shape[0])
    # eigenvalue error <= residual <= tol |lambda| (plus float32 rounding of the product)
    np.testing.assert_allclose(vals, ref[:4], rtol=tol)
    res = hs.residual_norms(loss_fn, params, vals, vecs)
    assert np.all(res <= 1.5 * tol * np.abs(vals)), (res, vals)
    assert n < h.shape[0], n
    # the same through SciPy's ARPACK
    v_e, _, n_e = hs.top_eigenpairs(loss_fn, params, jax.random.key(0), k=4, tol=tol,
                                    method="eigsh")
    np.testing.assert_allclose(v_e, ref[:4], rtol=tol)
    assert n_e > 0
    # sharpness: the top eigenvalue; warm-started from its eigenvector it needs a few products
    lam, vec = hs.sharpness(loss_fn, params, jax.random.key(1), return_eigenvector=True)
    np.testing.assert_allclose(lam, ref[0], rtol=tol)
    _, _, n_warm = hs.top_eigenpairs(loss_fn, params, None, k=1, tol=tol, v0=vec)
    assert n_warm <= 3, n_warm
    # the unravelled eigenvector is a pytree like params
    tree = hs.hessian_operator(loss_fn, params).unravel(vecs[0])
    assert jax.tree.structure(tree) == jax.tree.structure(params)


def test_lanczos_beats_power_iteration_and_the_successive_rule_misleads():
    # two close top eigenvalues: power iteration converges like (9.5/10)^t
    lam = np.concatenate([[10.0, 9.5, 5.0], np.linspace(0.01, 1.0, 97)])
    op = hs.matrix_operator(_spd_matrix(lam, seed=2).astype(np.float32))
    key, tol = jax.random.key(0), 1e-3
    v_l, _, n_l = hs.top_eigenpairs(op, None, key, k=1, tol=tol)
    history = []
    v_p, vec_p, n_p = hs.power_iteration(op, None, key, tol=tol, max_iter=2000,
                                         callback=lambda i, lam, res: history.append(res / lam))
    assert len(history) == n_p and history[-1] <= tol < min(history[:-1])
    np.testing.assert_allclose([v_l[0], v_p[0]], [10.0, 10.0], rtol=tol)
    assert hs.residual_norms(op, None, v_p, vec_p)[0] <= 1.01 * tol * 10
    assert 3 * n_l < n_p, (n_l, n_p)
    # PyHessian's rule stops when the estimate stalls, far from converged
    v_s, vec_s, _ = hs.power_iteration(op, None, key, tol=tol, stop="successive")
    assert hs.residual_norms(op, None, v_s, vec_s)[0] > 3 * tol * float(v_s[0])
    # top-k with deflation, on well-separated eigenvalues
    lam2 = np.concatenate([[10.0, 6.0, 3.0], np.linspace(0.01, 1.0, 97)])
    op2 = hs.matrix_operator(_spd_matrix(lam2, seed=3).astype(np.float32))
    with warnings.catch_warnings():  # the 2nd pair stalls at the deflation floor (docstring)
        warnings.simplefilter("ignore", RuntimeWarning)
        v_k, vec_k, _ = hs.power_iteration(op2, None, key, tol=1e-4, k=2, max_iter=300)
    np.testing.assert_allclose(v_k, [10.0, 6.0], rtol=1e-4)
    assert hs.residual_norms(op2, None, v_k[:1], vec_k[:1])[0] <= 1.01e-3


# ------------------------------------------------------------------ trace and density


def test_hutchinson_within_its_standard_error(reference):
    _, params, _, _, loss_fn = PROBLEM
    h = reference[2]
    est, se = hs.hutchinson_trace(loss_fn, params, jax.random.key(0), num_samples=200)
    assert abs(est - np.trace(h)) < 4 * se, (est, se, np.trace(h))
    # Rademacher probes: Var[v^T H v] = 2 (||H||_F^2 - sum_i H_ii^2)
    se_theory = np.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / 200)
    assert 0.7 < se / se_theory < 1.3, (se, se_theory)


def test_slq_moments_are_exact_quadrature_of_the_probes():
    lam = np.concatenate([[40.0, 25.0, 12.0], np.geomspace(1e-3, 2.0, 197)])
    a = _spd_matrix(lam, seed=4)
    op = hs.matrix_operator(a.astype(np.float32))
    num_probes, m = 6, 20
    res = hs.slq_density(op, None, jax.random.key(0), num_probes=num_probes, num_iter=m,
                         sigma=0.5)
    assert res.nodes.shape == res.weights.shape == (num_probes, m)
    np.testing.assert_allclose(res.weights.sum(), 1.0, rtol=1e-5)
    # Gauss quadrature with m nodes is exact for degree <= 2m - 1: each probe's moments equal
    # v^T A^j v / |v|^2 for its own probe v (Rademacher, the same key)
    probes = hs.rademacher_probes(jax.random.key(0), num_probes, 200).astype(np.float64)
    for j in (1, 2, 3):
        quad = np.sum(res.weights * res.nodes**j, axis=1) * num_probes
        exact = np.einsum("li,ij,lj->l", probes, np.linalg.matrix_power(a, j), probes) / 200
        np.testing.assert_allclose(quad, exact, rtol=2e-3)
    # and their average estimates tr(A^j) / P, within 4 standard errors of Rademacher probes
    for j in (1, 2):
        aj = np.linalg.matrix_power(a, j)
        se = np.sqrt(2 * (np.sum(aj**2) - np.sum(np.diag(aj) ** 2)) / num_probes) / 200
        est = np.sum(res.weights * res.nodes**j)
        assert abs(est - np.sum(lam**j) / 200) < 4 * se, (j, est, np.sum(lam**j) / 200, se)
    assert hs.spectral_sum(res, lambda t: t, 200) == pytest.approx(200 * np.sum(res.weights
                                                                              * res.nodes))
    # the smoothed density integrates to one and resolves the outlier at 40
    integral = np.sum(res.density) * (res.grid[1] - res.grid[0])
    np.testing.assert_allclose(integral, 1.0, rtol=1e-3)
    assert res.nodes.max() == pytest.approx(40.0, rel=1e-4)


def test_slq_on_a_network_hessian_matches_exact_traces(reference):
    _, params, _, _, loss_fn = PROBLEM
    h = reference[2]
    p = h.shape[0]
    res = hs.slq_density(loss_fn, params, jax.random.key(1), num_probes=20, num_iter=12,
                         grid=np.linspace(-1, 3, 200), sigma=0.05)
    assert res.density.shape == (200,)
    est, se = hs.hutchinson_trace(loss_fn, params, jax.random.key(1), num_samples=20)
    # the first moment of SLQ with the same probes is Hutchinson's estimate
    np.testing.assert_allclose(p * np.sum(res.weights * res.nodes), est, rtol=1e-3)
    assert abs(p * np.sum(res.weights * res.nodes) - np.trace(h)) < 4 * se
    tr2 = p * np.sum(res.weights * res.nodes**2)
    np.testing.assert_allclose(tr2, np.sum(h * h), rtol=0.3)


def test_effective_dimension():
    assert hs.effective_dimension([1e6, 1e6, 1e-6, -3.0], 1.0) == pytest.approx(2.0, abs=1e-5)
    assert hs.effective_dimension([1.0, 1.0], 1.0) == pytest.approx(1.0)
    assert hs.effective_dimension([1e6, 1.0], 1.0, weights=[3.0, 2.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="alpha"):
        hs.effective_dimension([1.0], 0.0)


def test_lanczos_convergence_matches_top_eigenpairs():
    lam = np.concatenate([[10.0, 9.0, 5.0], np.linspace(0.01, 1.0, 57)])
    op = hs.matrix_operator(_spd_matrix(lam, seed=5).astype(np.float32))
    v0 = jax.random.normal(jax.random.key(3), (60,))
    alphas, betas, basis = hs.lanczos(op, v0, 30)
    theta, res = hs.lanczos_convergence(alphas, betas)
    assert theta.shape == res.shape == (29,)
    _, _, n = hs.top_eigenpairs(op, None, None, k=1, tol=1e-3, v0=v0)
    assert n == 1 + int(np.argmax(res <= 1e-3)), (n, res)
    np.testing.assert_allclose(theta[-1], 10.0, rtol=1e-5)
    # true residuals agree with the estimates above the float32 rounding level, not below
    _, true = hs.lanczos_convergence(alphas, betas, matvec=op, basis=basis)
    above = res > 1e-4
    np.testing.assert_allclose(true[above], res[above], rtol=1e-2)
    assert true.min() > 1e-8 and res.min() < 1e-10, (true.min(), res.min())
    with pytest.raises(ValueError, match="tol"):
        hs.top_eigenpairs(op, None, None, k=1, tol=1e-9, v0=v0)


def test_lanczos_top_matches_numpy_eigh(symmetric_matrix):
    a, lam, _ = symmetric_matrix()
    a32 = jnp.asarray(a, jnp.float32)
    v0 = jax.random.normal(jax.random.key(0), (a.shape[0],))
    val, vec = jax.jit(lambda v: hs.lanczos_top(lambda u: a32 @ u, v, 12))(v0)
    ref_val, ref_vecs = np.linalg.eigh(a)
    np.testing.assert_allclose(val, ref_val[-1], rtol=1e-5)
    np.testing.assert_allclose(abs(np.dot(vec, ref_vecs[:, -1])), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vec), 1.0, atol=1e-6)


def test_lanczos_top_warm_start_at_an_eigenvector_breaks_down_cleanly(symmetric_matrix):
    """Starting on the top eigenvector, the Krylov space is invariant after one product; the
    restart must not produce NaNs or spurious Ritz values."""
    a, lam, q = symmetric_matrix()
    a32 = jnp.asarray(a, jnp.float32)
    val, vec = hs.lanczos_top(lambda u: a32 @ u, jnp.asarray(q[:, -1], jnp.float32), 5)
    np.testing.assert_allclose(val, 5.0, rtol=1e-5)
    assert np.all(np.isfinite(vec))
    # a start on a *lower* eigenvector is restarted and still finds the top within 12 steps
    val, _ = hs.lanczos_top(lambda u: a32 @ u, jnp.asarray(q[:, 0], jnp.float32), 12)
    np.testing.assert_allclose(val, 5.0, rtol=1e-5)


# ------------------------------------------------------------------------------ sloppiness


def test_dense_spectra_match_eigh_of_jax_hessian_and_explicit_fisher(reference):
    apply_fn, params, x, _, loss_fn = PROBLEM
    flat, unravel, h = reference
    eig_h, eig_f = hs.dense_spectra(loss_fn, apply_fn, params, x)
    scale = np.abs(np.linalg.eigvalsh(h)).max()
    np.testing.assert_allclose(eig_h, np.linalg.eigvalsh(h)[::-1], atol=1e-5 * scale)
    # categorical Fisher: J^T (diag(p) - p p^T) J / n, from the explicit Jacobian
    jac = np.asarray(jax.jacobian(lambda f: apply_fn(unravel(f), x))(flat), np.float64)
    p = np.asarray(jax.nn.softmax(apply_fn(params, x)), np.float64)
    fisher = sum(
        jac[i].T @ (np.diag(p[i]) - np.outer(p[i], p[i])) @ jac[i] for i in range(len(x))
    ) / len(x)
    want = np.linalg.eigvalsh(fisher)[::-1]
    np.testing.assert_allclose(eig_f, want, atol=1e-5 * want[0])
    assert eig_h.dtype == eig_f.dtype == np.float64


def test_correlation_eigenvalues_are_squared_singular_values():
    x = np.random.default_rng(3).normal(size=(30, 5)) * np.array([10, 3, 1, 0.3, 0.1])
    want = np.linalg.svd(x, compute_uv=False) ** 2 / 30
    np.testing.assert_allclose(hs.correlation_eigenvalues(x), want, rtol=1e-10)
    with pytest.raises(ValueError, match="x: expected"):
        hs.correlation_eigenvalues(np.ones(5))


def test_top_half_decades():
    e = np.array([1.0, 1e3, -0.5, 1e2, 10.0, 1e-12])  # top half: 1000, 100, 10
    assert hs.top_half_decades(e) == pytest.approx(2.0)
    assert hs.top_half_decades([5.0, 5.0]) == 0.0
    with pytest.raises(ValueError, match="eigenvalues"):
        hs.top_half_decades([3.0])
    with pytest.raises(ValueError, match="eigenvalues"):
        hs.top_half_decades(3.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        hs.top_half_decades([1.0, -1.0, -2.0, -3.0])
