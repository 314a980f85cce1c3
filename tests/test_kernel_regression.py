import jax
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.kernel_ridge import KernelRidge

from udl_jax import data, models, train
from udl_jax import kernel_regression as kr
from udl_jax import ntk as nt


def test_errors_name_the_argument():
    k, kx, y = np.eye(4), np.ones((2, 4)), np.ones(4)
    with pytest.raises(ValueError, match="k_test_train"):
        kr.kernel_regression(k, np.ones((2, 3)), y)
    with pytest.raises(ValueError, match="y_train"):
        kr.kernel_regression(k, kx, np.ones(3))
    with pytest.raises(ValueError, match="k_train"):
        kr.kernel_regression(np.ones((4, 3)), kx, y)
    with pytest.raises(ValueError, match="k_test"):
        kr.gp_posterior(k, kx, np.ones(3), y)
    with pytest.raises(ValueError, match="f0_test"):
        kr.gradient_flow_prediction(k, kx, y, 1.0, learning_rate=0.1, f0_test=np.ones(3))
    with pytest.raises(ValueError, match="learning_rate"):
        kr.gradient_flow_prediction(k, kx, y, 1.0, learning_rate=0.0)


def _regression_problem(n=20, m=6, seed=0):
    rng = np.random.default_rng(seed)
    x, xt = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], np.cos(x[:, 2])], 1)
    spec = models.MLPSpec((3, 64, 64, 2), activation="erf", parametrization="ntk", bias_var=0.1)
    return x, xt, y, spec


def test_gp_posterior_against_direct_solve_and_sklearn():
    x, xt, y, spec = _regression_problem()
    k, ks, kss = (nt.nngp_kernel(spec, a, b) for a, b in ((x, x), (xt, x), (xt, xt)))
    noise, jitter = 0.05, 1e-6
    post = kr.gp_posterior(k, ks, np.diag(kss), y, noise_var=noise, jitter=jitter)
    a = k + (noise + jitter * np.mean(np.diag(k))) * np.eye(len(k))
    np.testing.assert_allclose(post.mean, ks @ np.linalg.solve(a, y), rtol=1e-9, atol=1e-12)
    var = np.diag(kss - ks @ np.linalg.solve(a, ks.T))
    np.testing.assert_allclose(post.var, var, rtol=1e-9, atol=1e-12)
    cov = kr.gp_posterior(k, ks, kss, y[:, 0], noise_var=noise, jitter=jitter).var
    np.testing.assert_allclose(np.diag(cov), var, rtol=1e-9, atol=1e-12)

    ridge = KernelRidge(alpha=noise, kernel="precomputed").fit(k, y).predict(ks)
    np.testing.assert_allclose(kr.kernel_regression(k, ks, y, ridge=noise), ridge, rtol=1e-8)
    np.testing.assert_allclose(
        kr.gp_posterior(k, ks, np.diag(kss), y, noise_var=noise, jitter=0).mean, ridge, rtol=1e-8
    )
    # noise-free: the posterior interpolates and is certain at the training inputs
    at_train = kr.gp_posterior(k, k, np.diag(k), y, jitter=1e-10)
    np.testing.assert_allclose(at_train.mean, y, atol=1e-5)
    assert np.all(np.abs(at_train.var) < 1e-5 * np.diag(k).max())


def test_kernel_regression_falls_back_when_not_positive_definite():
    # Cholesky fails on an indefinite symmetric matrix; the LDL^T solve must still be exact.
    k = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.2], [0.5, 0.2, -1.0]])
    ks, y = np.eye(3)[:2], np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(kr.kernel_regression(k, ks, y), np.linalg.solve(k, y)[:2],
                               rtol=1e-12)


def test_gradient_flow_limits():
    x, xt, y, spec = _regression_problem()
    th, ths = nt.ntk_kernel(spec, x), nt.ntk_kernel(spec, xt, x)
    rng = np.random.default_rng(1)
    f0, f0t = rng.normal(size=y.shape), rng.normal(size=(len(xt), 2))
    flow = kr.gradient_flow_prediction(
        th, ths, y, np.array([0.0, 1e9, np.inf]), learning_rate=1.0, f0_train=f0, f0_test=f0t
    )
    assert flow.shape == (3, len(xt), 2)
    np.testing.assert_allclose(flow[0], f0t, atol=1e-12)
    regression = f0t + kr.kernel_regression(th, ths, y - f0)
    np.testing.assert_allclose(flow[2], regression, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(flow[1], regression, rtol=1e-5, atol=1e-7)
    # on the training inputs themselves the flow reaches the targets
    fit = kr.gradient_flow_prediction(th, th, y, np.inf, learning_rate=1.0, f0_train=f0,
                                      f0_test=f0)
    np.testing.assert_allclose(fit, y, atol=1e-6)


def test_gradient_flow_matches_gradient_descent_on_linearized_network():
    """fit (full-batch SGD on the MSE, 0.5 mean ||f - y||^2) of the linearized model for s
    steps of size eta lands where gradient flow with rate eta / n does at t = s."""
    rng = np.random.default_rng(3)
    n, steps, lr = 16, 400, 0.15
    x, xt = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1).astype(np.float32)
    m = models.MLP((3, 64, 2), activation="erf", parametrization="ntk", bias_var=0.1,
                   rngs=nnx.Rngs(0))
    lin = nt.Linearized(m)
    trained, history = train.fit(
        lin, data.Dataset(x, y, xt, np.zeros((5, 2), np.float32)), key=jax.random.key(0),
        steps=steps, learning_rate=lr, optimizer=optax.sgd, batch_size=None, loss="mse",
        log_every=steps, progress=False,
    )
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    both = np.asarray(nt.mlp_ntk(m, np.concatenate([x, xt]), x), np.float64)  # full kernels
    theta, theta_test = both[:n], both[n:]
    lam_max = np.linalg.eigvalsh(theta.transpose(0, 2, 1, 3).reshape(2 * n, 2 * n)).max()
    assert lr * lam_max / n < 0.1  # small steps: GD follows the flow
    f0 = {"f0_train": m(x), "f0_test": m(xt)}
    flow = kr.gradient_flow_prediction(theta, theta_test, y, steps, learning_rate=lr, **f0)
    gd = np.asarray(trained(xt))
    wrong_rate = kr.gradient_flow_prediction(theta, theta_test, y, steps, learning_rate=lr * n,
                                             **f0)
    moved = np.abs(gd - np.asarray(m(xt))).max()
    assert np.abs(gd - flow).max() < 2e-3 * moved
    assert np.abs(gd - wrong_rate).max() > 0.1 * moved


def test_gp_log_marginal_likelihood_matches_scikit_learn_and_vectorizes_over_labels():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 3))
    ys = rng.choice([-1.0, 1.0], size=(4, 25))
    kernel = ConstantKernel(1.5, "fixed") * RBF(2.0, "fixed")
    k = kernel(x)
    got = kr.gp_log_marginal_likelihood(k, ys, noise_var=0.1)
    for y, value in zip(ys, got, strict=True):
        ref = GaussianProcessRegressor(kernel, alpha=0.1, optimizer=None).fit(x, y)
        np.testing.assert_allclose(value, ref.log_marginal_likelihood_value_, rtol=1e-10)
        assert kr.gp_log_marginal_likelihood(k, y, noise_var=0.1) == pytest.approx(value)
    with pytest.raises(ValueError, match="y_train"):
        kr.gp_log_marginal_likelihood(k, ys[:, :5])
    with pytest.raises(ValueError, match="noise_var"):
        kr.gp_log_marginal_likelihood(k, ys[0], noise_var=-1.0)
