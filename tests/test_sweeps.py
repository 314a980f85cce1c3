import jax
import numpy as np
import pytest
from flax import nnx

from udl_jax import data, models, sweeps, train


def _blobs(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n + 30)
    x = (centers[y] + rng.normal(size=(n + 30, d))).astype(np.float32)
    return data.Dataset(x[:n], y[:n].astype(np.int32), x[n:], y[n:].astype(np.int32))


def test_width_sweep_shapes_params_and_label_noise():
    ds = _blobs()
    r = sweeps.mlp_width_sweep(
        ds, [8, 1, 3, 3], key=jax.random.key(0), seeds=2, label_noise=0.5,
        buckets=(4, 8), steps=40, log_every=20, batch_size=None,
    )
    np.testing.assert_array_equal(r.widths, [1, 3, 8])  # sorted, deduplicated
    # d -> h -> k: (d + 1) h + (h + 1) k, as counted by models.param_count on unpadded nets
    expect = [
        models.param_count(models.functional(models.MLP((5, h, 3), rngs=nnx.Rngs(0)))[1])
        for h in (1, 3, 8)
    ]
    np.testing.assert_array_equal(r.num_params, expect)
    np.testing.assert_array_equal(r.steps, [0, 20, 40])
    for a in (r.train_error, r.test_error, r.train_loss, r.test_loss):
        assert a.shape == (2, 3, 3) and np.all(np.isfinite(a))
    assert np.all((r.train_error >= 0) & (r.train_error <= 1))
    # the same corrupted labels are used for all networks; about half of 2/3 of them are wrong
    assert r.labels.shape == (60,) and 0.15 < r.noisy.mean() < 0.55
    np.testing.assert_array_equal(r.noisy, r.labels != ds.y)
    np.testing.assert_array_equal(
        r.labels, data.corrupt_labels(jax.random.split(jax.random.key(0), 3)[0], ds.y, 0.5, 3)
    )


def test_width_sweep_matches_a_direct_fit_and_memorizes_noise_when_wide():
    """Each bucket is one fit_many call: the widest bucket's rows equal fit_many run directly,
    and a wide network fits random labels that a width-1 network cannot."""
    ds = _blobs(n=40)
    key = jax.random.key(3)
    kw = dict(steps=300, learning_rate=1e-2, batch_size=None, log_every=100)
    r = sweeps.mlp_width_sweep(
        ds, [1, 64], key=key, seeds=1, label_noise=1.0, buckets=(1, 64), **kw
    )
    assert r.train_error[0, 1, -1] == 0.0  # width 64 memorizes random labels
    assert r.train_error[0, 0, -1] > 0.3  # width 1 cannot
    # reproduce the width-64 row by hand
    k_labels, k_init, k_train = jax.random.split(key, 3)
    seed = int(np.asarray(jax.random.randint(k_init, (1, 2), 0, 2**31 - 1))[0, 1])
    net = models.MLP((5, 64, 3), max_width=64, rngs=nnx.Rngs(seed))
    _, h = train.fit_many(
        [net], ds.replace(y=r.labels), key=jax.random.fold_in(k_train, 64), progress=False, **kw
    )
    np.testing.assert_allclose(r.train_loss[0, 1], h.train_loss[0], rtol=1e-5)
    np.testing.assert_allclose(r.test_error[0, 1], 1 - h.test_accuracy[0], atol=1e-6)


def test_width_sweep_bad_inputs_name_the_argument():
    ds = _blobs()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="widths"):
        sweeps.mlp_width_sweep(ds, [0, 2], key=key)
    with pytest.raises(ValueError, match="buckets"):
        sweeps.mlp_width_sweep(ds, [2, 16], key=key, buckets=(8,))
    with pytest.raises(ValueError, match="label_noise"):
        sweeps.mlp_width_sweep(ds, [2], key=key, label_noise=1.5)
    with pytest.raises(ValueError, match="seeds"):
        sweeps.mlp_width_sweep(ds, [2], key=key, seeds=0)
    with pytest.raises(ValueError, match="depth"):
        sweeps.mlp_width_sweep(ds, [2], key=key, depth=0)
    with pytest.raises(ValueError, match="dataset"):
        sweeps.mlp_width_sweep(ds.replace(y=ds.y.astype(np.float32)), [2], key=key)
