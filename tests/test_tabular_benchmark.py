"""Tests for udl_jax.tabular_benchmark against scikit-learn and brute force."""

import jax
import numpy as np
import pytest
from scipy import stats

from udl_jax import models, ntk
from udl_jax import tabular_benchmark as tb
from udl_jax.data import Dataset


@pytest.fixture(scope="module")
def wine():
    x, y = tb.load("wine")
    tr, te = tb.stratified_splits(y, jax.random.key(0), 1)[0]
    return tb.make_split(x, y, tr, te)


def test_load_shapes_and_bad_name():
    x, y = tb.load("breast_cancer")
    assert x.shape == (569, 30) and y.shape == (569,) and y.dtype == np.int32
    with pytest.raises(ValueError, match="name"):
        tb.load("iris")


def test_stratified_splits_are_disjoint_covering_stratified_and_reproducible():
    _, y = tb.load("wine")
    splits = tb.stratified_splits(y, jax.random.key(1), 4, test_fraction=0.3)
    assert len(splits) == 4
    for tr, te in splits:
        assert len(np.intersect1d(tr, te)) == 0
        np.testing.assert_array_equal(np.union1d(tr, te), np.arange(len(y)))
        assert abs(len(te) - 0.3 * len(y)) <= 1
        # class proportions within one sample of the whole set's
        np.testing.assert_allclose(np.bincount(y[te]), np.bincount(y) * len(te) / len(y), atol=1)
    assert not np.array_equal(splits[0][1], splits[1][1])
    again = tb.stratified_splits(y, jax.random.key(1), 4, test_fraction=0.3)
    for (a, b), (c, d) in zip(splits, again, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    with pytest.raises(ValueError, match="n_splits"):
        tb.stratified_splits(y, jax.random.key(1), 0)
    with pytest.raises(ValueError, match="test_fraction"):
        tb.stratified_splits(y, jax.random.key(1), 2, test_fraction=1.5)


def test_make_split_standardizes_with_the_training_part(wine):
    np.testing.assert_allclose(wine.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(wine.x.std(0), 1, atol=1e-4)
    assert abs(wine.x_test.mean()) > 1e-4  # the test part is not re-centred on itself


def test_baselines(wine):
    maj = tb.majority_accuracy(wine)
    assert maj == pytest.approx(np.mean(wine.y_test == np.argmax(np.bincount(wine.y))))
    assert tb.logistic_accuracy(wine) > 0.9


def test_svm_matches_gridsearch(wine):
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    acc, best = tb.svm_accuracy(wine, Cs=(1.0, 10.0), gammas=(1.0,), cv=3)
    d = wine.x.shape[1]
    ref = GridSearchCV(SVC(), {"C": [1.0, 10.0], "gamma": [1.0 / d]}, cv=3).fit(wine.x, wine.y)
    assert best == ref.best_params_
    assert acc == pytest.approx(ref.score(wine.x_test, wine.y_test))


def test_kernel_accuracy_matches_kernel_ridge(wine):
    from sklearn.kernel_ridge import KernelRidge

    spec = models.MLPSpec((13, 64, 3), parametrization="ntk", bias_var=0.1)
    k_train, k_test = ntk.nngp_kernel(spec, wine.x), ntk.nngp_kernel(spec, wine.x_test, wine.x)
    acc, rel = tb.kernel_accuracy(k_train, k_test, wine.y, wine.y_test, jax.random.key(0))
    kr = KernelRidge(alpha=rel * np.mean(np.diag(k_train)), kernel="precomputed")
    pred = kr.fit(k_train, np.eye(3)[wine.y]).predict(k_test).argmax(1)
    assert acc == pytest.approx(np.mean(pred == wine.y_test))
    assert acc > 0.9
    with pytest.raises(ValueError, match="k_train"):
        tb.kernel_accuracy(k_train[:5], k_test, wine.y, wine.y_test, jax.random.key(0))
    with pytest.raises(ValueError, match="ridges"):
        tb.kernel_accuracy(k_train, k_test, wine.y, wine.y_test, jax.random.key(0), ridges=())


def test_kernel_accuracy_picks_the_ridge_that_validates_best():
    # one informative feature plus label noise: a tiny ridge interpolates the noise
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    y = (x[:, 0] > 0).astype(np.int32)
    flip = rng.random(200) < 0.2
    y[flip] = 1 - y[flip]
    k = np.exp(-((x - x.T) ** 2) / 0.01)  # narrow RBF: memorizes
    acc_small, _ = tb.kernel_accuracy(
        k[:150, :150], k[150:, :150], y[:150], y[150:], jax.random.key(0), ridges=(1e-6,)
    )
    acc, rel = tb.kernel_accuracy(
        k[:150, :150], k[150:, :150], y[:150], y[150:], jax.random.key(0), ridges=(1e-6, 1e2)
    )
    assert rel == 1e2 and acc > acc_small


def test_mlp_accuracy_learns_and_reports_its_choice(wine):
    res = tb.mlp_accuracy(
        wine, (13, 32, 3), (0.0, 0.1), jax.random.key(0), steps=200, log_every=50
    )
    assert res.accuracy > 0.85
    assert res.weight_decay in (0.0, 0.1)
    assert res.steps in (50, 100, 150, 200)
    assert res.val_accuracy.shape == res.fit_accuracy.shape == (2, 5)
    np.testing.assert_array_equal(res.val_steps, [0, 50, 100, 150, 200])
    with pytest.raises(ValueError, match="widths"):
        tb.mlp_accuracy(wine, (12, 32, 3), (0.0,), jax.random.key(0), steps=50)
    with pytest.raises(ValueError, match="weight_decays"):
        tb.mlp_accuracy(wine, (13, 32, 3), (-1.0,), jax.random.key(0), steps=50)


def test_paired_difference_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.random(7), rng.random(7)
    mean, se, wa, wb = tb.paired_difference(a, b)
    assert mean == pytest.approx(np.mean(a - b))
    assert se == pytest.approx(stats.sem(a - b))
    assert (wa, wb) == (int(np.sum(a > b)), int(np.sum(a < b)))
    # the paired t statistic is mean / se
    assert mean / se == pytest.approx(stats.ttest_rel(a, b).statistic)
    with pytest.raises(ValueError, match="a, b"):
        tb.paired_difference(a, b[:3])


def test_dataset_is_the_package_one(wine):
    assert isinstance(wine, Dataset) and wine.x.dtype == np.float32


def test_one_thread_limits_blas_and_restores_it():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    with tb.one_thread():
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert [p["num_threads"] for p in threadpool_info()] == before


def test_compare_methods_is_each_learner_on_the_split(wine):
    """Against the chapter's original per-split code: each learner called on its own."""
    from sklearn.linear_model import LogisticRegression

    key = jax.random.key(3)
    acc, mlp = tb.compare_methods(
        wine, key, hidden=(16,), weight_decays=(0.0, 0.1), steps=100, seed=2
    )
    assert tuple(acc) == tb.METHODS
    k_ker, k_mlp = jax.random.split(key)
    spec = models.MLPSpec((13, 16, 3), parametrization="ntk", bias_var=0.1)
    kern, kern_test = ntk.analytic_kernels(spec, wine.x), ntk.analytic_kernels(
        spec, wine.x_test, wine.x
    )
    want_mlp = tb.mlp_accuracy(
        wine, (13, 16, 3), (0.0, 0.1), k_mlp, steps=100, seed=2
    )
    logistic = LogisticRegression(max_iter=2000).fit(wine.x, wine.y)
    want = {
        "majority": np.mean(wine.y_test == np.bincount(wine.y).argmax()),
        "logistic": logistic.score(wine.x_test, wine.y_test),
        "SVM": tb.svm_accuracy(wine)[0],
        "NNGP": tb.kernel_accuracy(kern.nngp, kern_test.nngp, wine.y, wine.y_test, k_ker)[0],
        "NTK": tb.kernel_accuracy(kern.ntk, kern_test.ntk, wine.y, wine.y_test, k_ker)[0],
        "MLP": want_mlp.accuracy,
    }
    m = len(wine.y_test)
    for name, value in want.items():
        assert acc[name] == pytest.approx(value, abs=1e-6), name
        assert acc[name] * m == round(acc[name] * m)  # an exact fraction of the test set
    assert (mlp.weight_decay, mlp.steps) == (want_mlp.weight_decay, want_mlp.steps)
    with pytest.raises(ValueError, match="hidden"):
        tb.compare_methods(wine, key, hidden=())


def test_benchmark_runs_compare_methods_on_shared_splits(monkeypatch):
    calls = []

    def fake(ds, key, **options):
        calls.append((ds, key, options))
        return {m: float(len(calls)) for m in tb.METHODS}, len(calls)

    monkeypatch.setattr(tb, "compare_methods", fake)
    key = jax.random.key(5)
    out = tb.benchmark(key, datasets=("wine", "breast_cancer"), n_splits=2, steps=7)
    assert list(out.accuracy) == ["wine", "breast_cancer"]
    np.testing.assert_array_equal(out.accuracy["breast_cancer"]["NTK"], [3.0, 4.0])
    assert out.mlp == {"wine": [1, 2], "breast_cancer": [3, 4]}
    # dataset i, split s: the splits of fold_in(key, i), scored with fold_in(fold_in(key, i), s)
    x, y = tb.load("breast_cancer")
    k_data = jax.random.fold_in(key, 1)
    tr, te = tb.stratified_splits(y, k_data, 2)[1]
    ds, k, options = calls[3]
    np.testing.assert_array_equal(ds.x, tb.make_split(x, y, tr, te).x)
    np.testing.assert_array_equal(
        jax.random.key_data(k), jax.random.key_data(jax.random.fold_in(k_data, 1))
    )
    assert options["steps"] == 7 and options["hidden"] == (128, 128)
    with pytest.raises(ValueError, match="datasets"):
        tb.benchmark(key, datasets=())
    with pytest.raises(ValueError, match="n_splits"):
        tb.benchmark(key, n_splits=0)
