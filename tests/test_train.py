import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from udl_jax import data, losses, models, train


def _regression(n=32, d=3, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=(d, k)) + 0.1 * rng.normal(size=(n, k))).astype(np.float32)
    return data.Dataset(x, y, x[:8], y[:8])


def test_full_batch_gd_matches_numpy_gradient_descent():
    """A one-layer MLP is linear regression; full-batch GD on 0.5 mean ||xW + b - y||^2."""
    ds = _regression()
    m = models.MLP((3, 2), bias_var=1.0, rngs=nnx.Rngs(0))
    w, b = np.asarray(m.layers[0].w[...], np.float64), np.asarray(m.layers[0].b[...], np.float64)
    lr, steps = 0.1, 25
    trained, hist = train.fit(
        m,
        ds,
        key=jax.random.key(0),
        steps=steps,
        learning_rate=lr,
        optimizer=optax.sgd,
        batch_size=None,
        loss="mse",
        log_every=5,
    )
    x, y = ds.x.astype(np.float64), ds.y.astype(np.float64)
    losses = []
    for t in range(steps + 1):
        r = x @ w + b - y
        if t % 5 == 0:
            losses.append(0.5 * np.mean(np.sum(r**2, 1)))
        if t < steps:
            w, b = w - lr * x.T @ r / len(x), b - lr * r.mean(0)
    np.testing.assert_allclose(trained.layers[0].w[...], w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hist.train_loss, losses, rtol=1e-4)
    np.testing.assert_array_equal(hist.steps, np.arange(0, steps + 1, 5))
    assert np.all(hist.train_accuracy == 0)  # regression: accuracy is not defined, reported as 0


def test_fit_learns_mnist1d_and_is_deterministic():
    ds = data.mnist1d()
    m = models.MLP((40, 64, 10), rngs=nnx.Rngs(0))
    kwargs = dict(key=jax.random.key(1), steps=600, learning_rate=3e-3, log_every=200)
    trained, h1 = train.fit(m, ds, **kwargs)
    _, h2 = train.fit(m, ds, **kwargs)
    np.testing.assert_array_equal(h1.test_loss, h2.test_loss)
    assert h1.train_loss[-1] < 0.6 * h1.train_loss[0]
    assert h1.test_accuracy[-1] > 0.3  # chance is 0.1
    loss, acc = train.evaluate(trained, ds.x_test, ds.y_test)
    np.testing.assert_allclose([loss, acc], [h1.test_loss[-1], h1.test_accuracy[-1]], rtol=1e-5)
    # the input model is not modified
    np.testing.assert_array_equal(
        m.layers[0].w[...], models.MLP((40, 64, 10), rngs=nnx.Rngs(0)).layers[0].w[...]
    )


def test_minibatches_are_uniform_with_replacement():
    """The gradient of a loss that counts sample uses: every sample is drawn ~equally often."""
    n = 10
    ds = data.Dataset(
        np.eye(n, dtype=np.float32),
        np.zeros(n, np.float32),
        np.eye(n, dtype=np.float32),
        np.zeros(n, np.float32),
    )
    m = models.MLP((n, 1), rngs=nnx.Rngs(0))
    m.layers[0].w[...] = jnp.zeros((n, 1))

    def count(out, y):  # d/dw_i of sum(outputs) = number of times sample i is in the batch
        return -jnp.sum(out)

    steps, batch = 2000, 5
    trained, _ = train.fit(
        m,
        ds,
        key=jax.random.key(0),
        steps=steps,
        learning_rate=1.0,
        optimizer=optax.sgd,
        batch_size=batch,
        loss=count,
        log_every=1000,
    )
    counts = np.asarray(trained.layers[0].w[...][:, 0])
    expected = steps * batch / n
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_divergence_is_reported_not_plotted():
    ds = _regression()
    m = models.MLP((3, 16, 2), rngs=nnx.Rngs(0))
    kwargs = dict(
        key=jax.random.key(0),
        steps=200,
        learning_rate=50.0,
        optimizer=optax.sgd,
        batch_size=None,
        loss="mse",
        log_every=10,
    )
    with pytest.raises(
        train.TrainingDiverged, match=r"diverged at step \d+ .*learning rate 50"
    ) as e:
        train.fit(m, ds, **kwargs)
    assert 1 <= e.value.step <= 200
    with pytest.warns(UserWarning, match="diverged"):
        _, hist = train.fit(m, ds, **kwargs, on_divergence="stop")
    assert hist.diverged_at == e.value.step
    assert np.all(np.isfinite(hist.train_loss)) and hist.steps[-1] < hist.diverged_at


def test_bad_arguments_name_themselves():
    ds = _regression()
    m = models.MLP((3, 2), rngs=nnx.Rngs(0))
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="steps"):
        train.fit(m, ds, key=k, steps=0, learning_rate=0.1)
    with pytest.raises(ValueError, match="log_every"):
        train.fit(m, ds, key=k, steps=10, learning_rate=0.1, log_every=3)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(m, ds, key=k, steps=10, learning_rate=0.1, batch_size=0)
    with pytest.raises(ValueError, match="loss"):
        train.fit(m, ds, key=k, steps=10, learning_rate=0.1, loss="hinge")
    with pytest.raises(TypeError, match="optimizer: expected an optax optimizer"):
        train.fit(m, ds, key=k, steps=10, learning_rate=0.1, optimizer=optax.sgd(0.1))
    with pytest.raises(TypeError, match="data"):
        train.fit(m, (ds.x, ds.y), key=k, steps=10, learning_rate=0.1)
    with pytest.raises(ValueError, match="learning_rate: expected a scalar or 2 values"):
        train.fit_many([m, m], ds, key=k, steps=10, learning_rate=[0.1, 0.2, 0.3], loss="mse")
    with pytest.raises(ValueError, match="model 1 has a different graph definition"):
        train.fit_many(
            [m, models.MLP((3, 4, 2), rngs=nnx.Rngs(0))],
            ds,
            key=k,
            steps=10,
            learning_rate=0.1,
            loss="mse",
        )


def _mnist_small():
    ds = data.mnist1d()
    return ds.replace(x=ds.x[:512], y=ds.y[:512])


def test_fit_many_equals_separate_fits():
    ds = _mnist_small()
    ms = [models.MLP((40, 32, 10), rngs=nnx.Rngs(s)) for s in range(3)]
    lrs = [1e-3, 3e-3, 1e-2]
    labels = np.stack([data.corrupt_labels(jax.random.key(s), ds.y, 0.5 * s, 10) for s in range(3)])
    key = jax.random.key(7)
    kw = dict(steps=40, optimizer=optax.adamw, batch_size=32, log_every=20)
    many = dict(key=key, learning_rate=lrs, labels=labels,
                optimizer_kwargs={"weight_decay": [0.0, 1e-2, 1e-1]}, **kw)
    trained, hist = train.fit_many(ms, ds, **many)
    assert hist.train_loss.shape == (3, 3)
    for i, k in enumerate(jax.random.split(key, 3)):
        one, h = train.fit(
            ms[i],
            ds.replace(y=labels[i]),
            key=k,
            learning_rate=lrs[i],
            optimizer_kwargs={"weight_decay": [0.0, 1e-2, 1e-1][i]},
            **kw,
        )
        np.testing.assert_allclose(hist.train_loss[i], h.train_loss, rtol=2e-4)
        np.testing.assert_allclose(trained[i].layers[0].w[...], one.layers[0].w[...], atol=1e-5)
    seq, hist_seq = train.fit_many(ms, ds, models_per_batch=2, **many)
    np.testing.assert_allclose(hist_seq.train_loss, hist.train_loss, rtol=2e-4)


def _raw(leaf):
    """A state leaf as a NumPy array (PRNG key arrays as their key data)."""
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def test_fit_many_carries_dropout_rng_state_per_model_in_groups_or_not():
    """Dropout's RNG state (typed PRNG keys in ``rest``) is stacked, trained and unstacked per
    model: all at once and in groups of one give the same models, and each model's key moved."""
    ds = _mnist_small()
    ms = [models.MLP((40, 32, 10), dropout=0.5, rngs=nnx.Rngs(s)) for s in range(3)]
    kw = dict(key=jax.random.key(3), steps=20, learning_rate=1e-2, batch_size=32)
    together, h1 = train.fit_many(ms, ds, **kw)
    grouped, h2 = train.fit_many(ms, ds, models_per_batch=1, **kw)
    np.testing.assert_allclose(h1.train_loss, h2.train_loss, rtol=1e-5)
    for a, b, m in zip(together, grouped, ms, strict=True):
        rest_a, rest_b, rest_0 = (
            jax.tree.leaves(nnx.state(n, nnx.Not(nnx.Param))) for n in (a, b, m)
        )
        assert any(jnp.issubdtype(r.dtype, jax.dtypes.prng_key) for r in rest_a)
        for ra, rb in zip(rest_a, rest_b, strict=True):
            np.testing.assert_array_equal(_raw(ra), _raw(rb))
        assert any(
            not np.array_equal(_raw(ra), _raw(r0)) for ra, r0 in zip(rest_a, rest_0, strict=True)
        )
        np.testing.assert_allclose(a.layers[0].w[...], b.layers[0].w[...], atol=1e-6)


def test_width_sweep_shares_one_shape_and_matches_unpadded_training():
    ds = _mnist_small()
    widths = (4, 8, 16)
    padded = [models.MLP((40, w, 10), max_width=16, rngs=nnx.Rngs(w)) for w in widths]
    key = jax.random.key(3)
    kw = dict(steps=30, learning_rate=0.05, optimizer=optax.sgd, batch_size=64, log_every=10)
    trained, hist = train.fit_many(padded, ds, key=key, **kw)
    for i, (w, k) in enumerate(zip(widths, jax.random.split(key, 3), strict=True)):
        small = models.MLP((40, w, 10), rngs=nnx.Rngs(0))
        small.layers[0].w[...] = padded[i].layers[0].w[...][:, :w]
        small.layers[0].b[...] = padded[i].layers[0].b[...][:w]
        small.layers[1].w[...] = padded[i].layers[1].w[...][:w]
        small.layers[1].b[...] = padded[i].layers[1].b[...]
        _, h = train.fit(small, ds, key=k, **kw)
        np.testing.assert_allclose(hist.train_loss[i], h.train_loss, rtol=1e-4)
        assert trained[i].true_widths == (40, w, 10)


def test_batchnorm_statistics_are_trained():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 8, rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)
            self.out = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.bn(self.lin(x))))

    ds = _regression()
    m = Net(nnx.Rngs(0))
    trained, hist = train.fit(
        m,
        ds,
        key=jax.random.key(0),
        steps=50,
        learning_rate=1e-2,
        batch_size=16,
        loss="mse",
        log_every=25,
    )
    assert float(jnp.abs(trained.bn.mean[...]).max()) > 1e-3  # running mean moved off zero
    assert float(jnp.abs(m.bn.mean[...]).max()) == 0.0
    assert hist.train_loss[-1] < hist.train_loss[0]


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    from flax import nnx
    from udl_jax import data, models, train
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    ds = data.Dataset(x, (x[:, 0] > 0).astype(np.int32), x, (x[:, 0] > 0).astype(np.int32))
    ms = [models.MLP((5, 8, 2), rngs=nnx.Rngs(s)) for s in range(4)]
    _, h = train.fit_many(ms, ds, key=jax.random.key(0), steps=20, learning_rate=1e-2,
                          batch_size=16, log_every=10)
    result = {"devices": len(jax.devices()), "loss": h.train_loss.tolist()}
""")


@pytest.mark.parametrize("n_devices", [2, 4])
def test_fit_many_shards_the_model_axis_across_devices(n_devices):
    """The same 4-model training sharded over host devices (a fresh process, since the device
    count is fixed when JAX starts) gives the losses of the unsharded run in this process."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}",
        "JAX_PLATFORMS": "cpu",
    }
    code = SHARDED + "\nimport json\nprint(json.dumps(result))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == n_devices
    reference = {}
    exec(SHARDED, reference)  # noqa: S102 (our own code, run unsharded in this process)
    assert reference["result"]["devices"] == len(jax.devices())
    loss = np.array(sharded["loss"])
    np.testing.assert_allclose(loss, np.array(reference["result"]["loss"]), rtol=1e-5)
    assert loss.shape == (4, 3) and np.all(loss[:, -1] < loss[:, 0])


def test_recorded_outputs_are_the_models_test_predictions_along_training():
    """`record_outputs=True`: the first recorded outputs are the initial model's test outputs,
    the last are the returned model's, and the test loss is the loss of the recorded outputs
    (they come from the same forward pass)."""
    ds = _mnist_small()
    m = models.MLP((40, 32, 10), rngs=nnx.Rngs(0))
    kw = dict(key=jax.random.key(2), steps=60, learning_rate=3e-3, batch_size=32, log_every=20)
    trained, hist = train.fit(m, ds, record_outputs=True, **kw)
    assert hist.test_outputs.shape == (4, len(ds.x_test), 10)
    np.testing.assert_allclose(hist.test_outputs[0], m(jnp.asarray(ds.x_test)), atol=1e-5)
    np.testing.assert_allclose(hist.test_outputs[-1], trained(jnp.asarray(ds.x_test)), atol=1e-5)
    assert not np.allclose(hist.test_outputs[1], hist.test_outputs[0], atol=1e-3)  # it moved
    y_test = jnp.asarray(ds.y_test)
    recorded = [losses.cross_entropy(jnp.asarray(o), y_test) for o in hist.test_outputs]
    np.testing.assert_allclose(recorded, hist.test_loss, rtol=1e-5)
    # opt-in: without it nothing is kept, and the metrics are those of the recorded run
    _, plain = train.fit(m, ds, **kw)
    assert plain.test_outputs is None
    np.testing.assert_array_equal(plain.test_loss, hist.test_loss)
    with pytest.raises(TypeError, match="record_outputs"):
        train.fit(m, ds, record_outputs="yes", **kw)


def test_fit_many_records_outputs_per_model_and_matches_fit():
    ds = _mnist_small()
    ms = [models.MLP((40, 16, 10), rngs=nnx.Rngs(s)) for s in range(3)]
    key = jax.random.key(5)
    kw = dict(steps=40, learning_rate=[1e-3, 3e-3, 1e-2], batch_size=32, log_every=10)
    trained, hist = train.fit_many(ms, ds, key=key, record_outputs=True, **kw)
    assert hist.test_outputs.shape == (3, 5, len(ds.x_test), 10)
    x_test = jnp.asarray(ds.x_test)
    for i, k in enumerate(jax.random.split(key, 3)):
        np.testing.assert_allclose(hist.test_outputs[i, 0], ms[i](x_test), atol=1e-5)
        np.testing.assert_allclose(hist.test_outputs[i, -1], trained[i](x_test), atol=1e-5)
        _, h = train.fit(ms[i], ds, key=k, record_outputs=True,
                         **{**kw, "learning_rate": kw["learning_rate"][i]})
        np.testing.assert_allclose(hist.test_outputs[i], h.test_outputs, atol=1e-4)
    # in groups (the last one padded), the same outputs, cut back to M models
    _, seq = train.fit_many(ms, ds, key=key, record_outputs=True, models_per_batch=2, **kw)
    np.testing.assert_allclose(seq.test_outputs, hist.test_outputs, atol=1e-5)


def test_recorded_outputs_stop_with_the_history_at_divergence():
    ds = _regression()
    ms = [models.MLP((3, 16, 2), rngs=nnx.Rngs(s)) for s in range(2)]
    with pytest.warns(UserWarning, match="diverged"):
        _, hist = train.fit_many(ms, ds, key=jax.random.key(0), steps=200,
                                 learning_rate=[1e-3, 50.0], optimizer=optax.sgd,
                                 batch_size=None, loss="mse", log_every=10,
                                 on_divergence="stop", record_outputs=True,
                                 models_per_batch=1)  # groups stop at different logs: cut
    assert len(hist.steps) < 21
    assert hist.test_outputs.shape == (2, len(hist.steps), len(ds.x_test), 2)
    assert np.all(np.isfinite(hist.test_outputs))


def test_fit_trains_a_batch_norm_mlp_and_evaluates_it_with_running_averages():
    ds = data.mnist1d()
    ds = ds.replace(x=ds.x[:512], y=ds.y[:512], x_test=ds.x_test[:256], y_test=ds.y_test[:256])
    m = models.MLP((40, 32, 32, 10), normalization="batch", rngs=nnx.Rngs(0))
    trained, hist = train.fit(m, ds, key=jax.random.key(0), steps=300, learning_rate=0.1,
                              optimizer=optax.sgd, batch_size=64, log_every=100)
    assert hist.train_accuracy[-1] > 0.4
    assert float(jnp.abs(trained.norms[0].mean[...]).max()) > 1e-3  # running averages moved
    loss, acc = train.evaluate(trained, ds.x_test, ds.y_test)  # evaluation mode
    np.testing.assert_allclose(loss, hist.test_loss[-1], rtol=1e-5)
    np.testing.assert_allclose(acc, hist.test_accuracy[-1])
    # evaluation mode is not training mode on the same data
    trained.train()
    out_train = trained(jnp.asarray(ds.x_test))
    trained.eval()
    assert not np.allclose(out_train, trained(jnp.asarray(ds.x_test)), atol=1e-3)
    _, hist_many = train.fit_many([m, m], ds, key=jax.random.key(0), steps=300,
                                  learning_rate=0.1, optimizer=optax.sgd, batch_size=64,
                                  log_every=100)
    assert np.isfinite(hist_many.test_loss).all()


def test_a_schedule_as_learning_rate_trains_and_reports_divergence():
    ds = _regression()
    m = models.MLP((3, 2), rngs=nnx.Rngs(0))
    kw = dict(key=jax.random.key(0), steps=40, optimizer=optax.sgd, loss="mse", log_every=10,
              batch_size=None)
    _, hist = train.fit(m, ds, learning_rate=optax.exponential_decay(0.1, 10, 0.5), **kw)
    assert hist.train_loss[-1] < hist.train_loss[0]
    growing = optax.exponential_decay(0.1, 1, 1.5)  # the step grows 1.5-fold per step
    with pytest.warns(UserWarning, match="schedule"):
        _, hist = train.fit(m, ds, learning_rate=growing, on_divergence="stop",
                            **{**kw, "steps": 400})
    assert hist.diverged_at is not None


def test_optimize_is_gradient_descent_and_adam_as_written_out():
    """`optimize` with optax.sgd is w <- w - eta grad (closed-form gradient of least squares);
    with optax.adam it equals optax's own Python loop; losses are taken before each step."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 3)).astype(np.float32)
    b = rng.normal(size=20).astype(np.float32)
    w0 = {"w": jnp.zeros(3)}

    def loss_fn(p):
        r = a @ p["w"] - b
        return 0.5 * jnp.mean(r**2), r

    w = np.zeros(3)
    expected = []
    for _ in range(25):
        r = a @ w - b
        expected.append(0.5 * np.mean(r**2))
        w = w - 0.1 * a.T @ r / len(b)
    params, _, losses_, aux = jax.jit(
        lambda p: train.optimize(loss_fn, optax.sgd(0.1), p, 25)
    )(w0)
    np.testing.assert_allclose(params["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses_, expected, rtol=1e-5)
    assert aux.shape == (25, 20)

    tx = optax.adam(0.05)
    p, state = w0, tx.init(w0)
    for _ in range(10):
        g = jax.grad(lambda q: loss_fn(q)[0])(p)
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    got, *_ = train.optimize(loss_fn, tx, w0, 10)
    np.testing.assert_allclose(got["w"], p["w"], rtol=1e-5, atol=1e-7)
    # continuing from a state: 4 + 6 steps are 10 steps
    p4, s4, *_ = train.optimize(loss_fn, tx, w0, 4)
    p10, *_ = train.optimize(loss_fn, tx, p4, 6, opt_state=s4)
    np.testing.assert_allclose(p10["w"], got["w"], rtol=1e-6, atol=1e-7)


def test_optimize_takes_per_step_inputs_and_vmaps_over_initializations():
    """Per-step inputs (here: which data point) reach the loss in order; vmap over two
    initializations equals two separate runs."""
    x = jnp.arange(6.0)

    def loss_fn(p, i):  # step t pulls p towards x[i_t]
        return 0.5 * (p - x[i]) ** 2, i

    idx = jnp.array([5, 0, 3, 3, 1])
    p, _, losses_, seen = train.optimize(loss_fn, optax.sgd(0.5), jnp.float32(2.0), xs=idx)
    q, expected = 2.0, []
    for i in np.asarray(idx):
        expected.append(0.5 * (q - float(x[i])) ** 2)
        q = q - 0.5 * (q - float(x[i]))
    np.testing.assert_allclose(p, q, rtol=1e-6)
    np.testing.assert_allclose(losses_, expected, rtol=1e-6)
    np.testing.assert_array_equal(seen, idx)
    both = jax.vmap(lambda p0: train.optimize(loss_fn, optax.sgd(0.5), p0, xs=idx)[0])(
        jnp.array([2.0, -1.0])
    )
    one = train.optimize(loss_fn, optax.sgd(0.5), jnp.float32(-1.0), xs=idx)[0]
    np.testing.assert_allclose(both, [p, one], rtol=1e-6)
    with pytest.raises(ValueError, match="steps"):
        train.optimize(loss_fn, optax.sgd(0.5), jnp.float32(0.0), 0)
    with pytest.raises(ValueError, match="xs"):
        train.optimize(loss_fn, optax.sgd(0.5), jnp.float32(0.0), 3, xs=idx)


def test_optimize_records_gradients_and_steps_as_written_out():
    """``record`` sees each step's parameters, gradient and new parameters: for gradient descent
    on least squares the gradient is A^T r / n and the step is -eta times it."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(15, 4)).astype(np.float32)
    b = rng.normal(size=15).astype(np.float32)

    def loss_fn(p):
        return 0.5 * jnp.mean((a @ p - b) ** 2), None

    def record(p, g, p_new):
        return p, g, p_new - p

    _, _, _, (ps, gs, steps) = train.optimize(
        loss_fn, optax.sgd(0.2), jnp.zeros(4), 6, record=record
    )
    w = np.zeros(4)
    for t in range(6):
        g = a.T @ (a @ w - b) / len(b)
        np.testing.assert_allclose(ps[t], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gs[t], g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(steps[t], -0.2 * g, rtol=1e-5, atol=1e-6)
        w = w - 0.2 * g
