import random

import jax
import numpy as np
import pytest

from udl_jax import data


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UDL_JAX_CACHE", str(tmp_path))
    return tmp_path


def test_mnist1d_matches_reference_and_keeps_global_rng(tmp_cache):
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)  # noqa: NPY002 (the global state is under test)
    random.seed(123)
    expect_np, expect_py = np.random.rand(), random.random()  # noqa: NPY002 (the global state is under test)
    np.random.seed(123)  # noqa: NPY002 (the global state is under test)
    random.seed(123)
    ds = data.mnist1d(num_samples=500)
    assert np.random.rand() == expect_np and random.random() == expect_py  # untouched  # noqa: NPY002 (the global state is under test)
    args = get_dataset_args()
    args.num_samples = 500
    ref = make_dataset(args)
    assert ds.x.shape == (400, 40) and ds.x_test.shape == (100, 40)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    np.testing.assert_allclose(ds.x, ref["x"], rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    assert ds.n_classes == 10
    # second call is served from the cache, with identical arrays
    assert len(list(tmp_cache.glob("mnist1d-*.npz"))) == 1
    again = data.mnist1d(num_samples=500)
    np.testing.assert_array_equal(again.x, ds.x)


def test_mnist1d_bad_arguments(tmp_cache):
    with pytest.raises(ValueError, match="num_samples"):
        data.mnist1d(num_samples=3)
    with pytest.raises(ValueError, match="unknown MNIST-1D arguments.*bogus"):
        data.mnist1d(bogus=1)


def test_dataset_validation():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="x: expected a 2D array"):
        data.Dataset(np.zeros(3), np.zeros(3), x, np.zeros(3))
    with pytest.raises(ValueError, match="equal lengths"):
        data.Dataset(x, np.zeros(2), x, np.zeros(3))
    with pytest.raises(ValueError, match="n_classes"):
        _ = data.Dataset(x, np.zeros(3, np.float32), x, np.zeros(3, np.float32)).n_classes


def test_corrupt_labels_follows_zhang_convention():
    y = np.zeros(20000, np.int32)
    key = jax.random.key(0)
    np.testing.assert_array_equal(data.corrupt_labels(key, y, 0.0, 10), y)
    for p in (0.3, 1.0):
        noisy = data.corrupt_labels(key, y, p, 10)
        wrong = np.mean(noisy != y)
        expected = p * 0.9  # a resampled label stays correct with probability 1/10
        sigma = np.sqrt(expected * (1 - expected) / len(y))
        assert abs(wrong - expected) < 5 * sigma
        assert noisy.min() >= 0 and noisy.max() <= 9
    with pytest.raises(ValueError, match="prob"):
        data.corrupt_labels(key, y, 1.5, 10)


def _toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7)).astype(np.float32)
    return data.Dataset(x, np.arange(50) % 3, x[:10] + 1, np.arange(10) % 3)


def test_shuffle_pixels_uses_one_permutation():
    ds = _toy()
    out = data.shuffle_pixels(jax.random.key(1), ds)
    perm = [int(np.flatnonzero(np.all(ds.x == out.x[:, [j]], axis=0))[0]) for j in range(7)]
    np.testing.assert_array_equal(out.x, ds.x[:, perm])
    np.testing.assert_array_equal(out.x_test, ds.x_test[:, perm])
    assert sorted(perm) == list(range(7)) and perm != list(range(7))


def test_random_pixels_permutes_each_sample_differently():
    ds = _toy()
    out = data.random_pixels(jax.random.key(2), ds)
    np.testing.assert_array_equal(np.sort(out.x, 1), np.sort(ds.x, 1))
    perms = {tuple(np.argsort(np.argsort(r))) for r in out.x[:20]}
    assert len(perms) > 15
    np.testing.assert_array_equal(out.y, ds.y)


def test_gaussian_inputs_match_moments():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(20000, 3)) * [1, 2, 3] + [0, 5, -1]).astype(np.float32)
    ds = data.Dataset(x, np.zeros(20000, np.int32), x[:5], np.zeros(5, np.int32))
    out = data.gaussian_inputs(jax.random.key(3), ds)
    np.testing.assert_allclose(out.x.mean(0), x.mean(0), atol=0.1)
    np.testing.assert_allclose(out.x.std(0), x.std(0), rtol=0.03)
    assert not np.allclose(out.x[:5], x[:5])


def test_toy_sets():
    reg = data.toy_regression_1d(jax.random.key(0), n=30, noise=0.0)
    np.testing.assert_allclose(reg.y, np.sin(np.pi * reg.x[:, 0]) + 0.3 * reg.x[:, 0], atol=1e-6)
    assert not reg.is_classification and reg.x_test.shape == (200, 1)
    m1, m2 = data.moons(jax.random.key(4)), data.moons(jax.random.key(4))
    np.testing.assert_array_equal(m1.x, m2.x)
    assert m1.x.shape == (200, 2) and set(np.unique(m1.y)) == {0, 1}
    with pytest.raises(ValueError, match="noise"):
        data.toy_regression_1d(jax.random.key(0), noise=-1.0)


def test_corrupt_labels_accepts_integer_probabilities():
    y = np.arange(50, dtype=np.int32) % 10
    key = jax.random.key(3)
    np.testing.assert_array_equal(data.corrupt_labels(key, y, 0, 10), y)
    np.testing.assert_array_equal(
        data.corrupt_labels(key, y, 1, 10), data.corrupt_labels(key, y, 1.0, 10)
    )


def test_sklearn_seed_is_a_deterministic_int_in_range_that_depends_on_the_key():
    seeds = [data.sklearn_seed(jax.random.key(k)) for k in range(20)]
    assert all(isinstance(s, int) and 0 <= s < 2**31 - 1 for s in seeds)
    assert seeds == [data.sklearn_seed(jax.random.key(k)) for k in range(20)]
    assert len(set(seeds)) == 20
