import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from udl_jax import data, models, train


def _numpy_forward(model, x, act):
    h = np.asarray(x, np.float64)
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        w, b = np.asarray(layer.w[...], np.float64), np.asarray(layer.b[...], np.float64)
        if model.parametrization == "ntk":
            z = layer.w_scale * h @ w + layer.b_scale * b
        else:
            z = h @ w + b
        if i == len(layers) - 1:
            return z
        a = act(z)
        h = h + a if (model.residual and h.shape[-1] == a.shape[-1]) else a


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
@pytest.mark.parametrize("residual", [False, True])
def test_mlp_forward_matches_numpy(parametrization, residual):
    m = models.MLP(
        (3, 5, 5, 2),
        activation="tanh",
        parametrization=parametrization,
        bias_var=0.1,
        residual=residual,
        rngs=nnx.Rngs(0),
    )
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(
        m(jnp.asarray(x)), _numpy_forward(m, x, np.tanh), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_initial_preactivation_variance(parametrization):
    """Monte Carlo over 4000 initializations: Var z = weight_var |x|^2 / d + bias_var."""
    x = jnp.array([[1.0, -2.0, 0.5, 3.0]])

    def first_preactivation(seed):
        m = models.MLP(
            (4, 1, 1),
            weight_var=2.0,
            bias_var=0.5,
            parametrization=parametrization,
            rngs=nnx.Rngs(seed),
        )
        return m.features(x)[0][0][0, 0]

    z = np.asarray(jax.vmap(first_preactivation)(jax.random.split(jax.random.key(0), 4000)))
    expected = 2.0 * float(jnp.sum(x**2)) / 4 + 0.5
    assert abs(z.var() / expected - 1) < 4 * np.sqrt(2 / 4000)


def test_functional_bridge_matches_model_and_finite_differences():
    m = models.MLP((3, 6, 2), activation="tanh", rngs=nnx.Rngs(1))
    apply_fn, params, _ = models.functional(m)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    np.testing.assert_allclose(apply_fn(params, x), m(x), rtol=1e-6)
    assert models.param_count(params) == 3 * 6 + 6 + 6 * 2 + 2

    def f(p):
        return jnp.sum(apply_fn(p, x) ** 2)

    g = jax.grad(f)(params)
    leaf = params["layers"][0]["w"]
    eps = 1e-3
    bumped = jax.tree.map(lambda a: a, params)
    bumped["layers"][0]["w"] = nnx.Param(leaf[...].at[1, 2].add(eps))
    lowered = jax.tree.map(lambda a: a, params)
    lowered["layers"][0]["w"] = nnx.Param(leaf[...].at[1, 2].add(-eps))
    fd = (f(bumped) - f(lowered)) / (2 * eps)
    np.testing.assert_allclose(g["layers"][0]["w"][...][1, 2], fd, rtol=2e-2)


class _Normed(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.bn(self.lin(x)))


def test_functional_with_batchnorm_and_dropout():
    m = _Normed(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (8, 3))
    apply_fn, params, rest = models.functional(m)
    out = apply_fn(params, x)
    np.testing.assert_array_equal(out, apply_fn(params, x))  # deterministic: eval mode
    ref = nnx.clone(m)
    ref.eval()
    np.testing.assert_allclose(out, ref(x), rtol=1e-6)
    assert not m.drop.deterministic  # the caller's model is untouched
    apply_train, params_t, _ = models.functional(m, train=True)
    a, b = apply_train(params_t, x), apply_train(params_t, x)
    np.testing.assert_array_equal(a, b)  # pure: the RNG state is not advanced between calls
    assert float(jnp.mean(a == 0)) > 0.2  # dropout is active
    jax.jit(jax.grad(lambda p: apply_fn(p, x).sum()))(params)
    with pytest.raises(TypeError, match="model: expected a flax.nnx.Module"):
        models.functional(lambda x: x)


def test_padded_mlp_equals_unpadded_network():
    padded = models.MLP((3, 4, 5, 2), max_width=8, rngs=nnx.Rngs(2))
    assert padded.true_widths == (3, 4, 5, 2) and padded.widths == (3, 8, 8, 2)
    small = models.MLP((3, 4, 5, 2), rngs=nnx.Rngs(3))
    dims = [3, 4, 5, 2]
    for i, (lp, ls) in enumerate(zip(padded.layers, small.layers, strict=True)):
        ls.w[...] = lp.w[...][: dims[i], : dims[i + 1]]
        ls.b[...] = lp.b[...][: dims[i + 1]]
        # everything outside the true block is exactly zero (checked entry by entry: a float32
        # sum of |w| depends on the summation order, which differs between XLA code paths)
        outside = np.ones(lp.w[...].shape, bool)
        outside[: dims[i], : dims[i + 1]] = False
        assert not np.any(np.asarray(lp.w[...])[outside]), i
        assert not np.any(np.asarray(lp.b[...])[dims[i + 1]:]), i
    x = jax.random.normal(jax.random.key(0), (6, 3))
    np.testing.assert_allclose(padded(x), small(x), rtol=1e-5, atol=1e-6)  # float32 sum order
    apply_fn, params, rest = models.functional(padded)
    g = jax.grad(lambda p: jnp.sum(apply_fn(p, x) ** 2))(params)
    assert float(jnp.abs(g["layers"][1]["w"][...][4:, :]).max()) == 0
    assert float(jnp.abs(g["layers"][1]["w"][...][:, 5:]).max()) == 0
    other = models.MLP((3, 2, 7, 2), max_width=8, rngs=nnx.Rngs(4))
    assert nnx.graphdef(other) == nnx.graphdef(padded)  # one shape, one compilation
    from_numpy = models.MLP(tuple(np.array([3, 2, 7, 2])), max_width=8, rngs=nnx.Rngs(4))
    assert nnx.graphdef(from_numpy) == nnx.graphdef(padded)  # NumPy ints from a width grid


def test_cnn_shapes_and_bad_inputs():
    c = models.CNN1D(rngs=nnx.Rngs(0))
    assert c(jnp.ones((3, 40))).shape == (3, 10)
    with pytest.raises(ValueError, match="widths"):
        models.MLP((3,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="widths"):
        models.MLP((3, 2.5, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation"):
        models.MLP((3, 2), activation="sigmoid", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="parametrization"):
        models.MLP((3, 2), parametrization="mup", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="max_width"):
        models.MLP((3, 9, 2), max_width=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="length"):
        models.CNN1D(length=4, rngs=nnx.Rngs(0))


def _bn_numpy_forward(model, x, train_mode):
    """Batch-norm MLP in float64 NumPy: z = h W + b, then (z - mu) / sqrt(var + eps) * scale +
    bias with the batch's mean and (biased) variance in training mode, the running ones in
    evaluation mode, then ReLU."""
    h = np.asarray(x, np.float64)
    layers = list(model.layers)
    for i, layer in enumerate(layers[:-1]):
        z = h @ np.asarray(layer.w[...], np.float64) + np.asarray(layer.b[...], np.float64)
        bn = model.norms[i]
        if train_mode:
            mu, var = z.mean(0), z.var(0)
        else:
            mu, var = np.asarray(bn.mean[...], np.float64), np.asarray(bn.var[...], np.float64)
        z = (z - mu) / np.sqrt(var + bn.epsilon) * np.asarray(bn.scale[...]) + np.asarray(
            bn.bias[...]
        )
        h = np.maximum(z, 0)
    last = layers[-1]
    return h @ np.asarray(last.w[...], np.float64) + np.asarray(last.b[...], np.float64)


def test_batch_norm_mlp_matches_numpy_in_both_modes():
    m = models.MLP((3, 6, 5, 2), normalization="batch", bias_var=0.5, rngs=nnx.Rngs(0))
    assert len(m.norms) == 2 and m.normalization == "batch"
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_allclose(m(jnp.asarray(x)), _bn_numpy_forward(m, x, True),
                               rtol=1e-4, atol=1e-5)
    # the training-mode call moved the running averages; evaluation mode uses them
    assert float(jnp.abs(m.norms[0].mean[...]).max()) > 0
    m.eval()
    np.testing.assert_allclose(m(jnp.asarray(x)), _bn_numpy_forward(m, x, False),
                               rtol=1e-4, atol=1e-5)
    # models.functional(train=False) is the evaluation mode
    apply_fn, params, rest = models.functional(m)
    np.testing.assert_allclose(apply_fn(params, jnp.asarray(x)), m(jnp.asarray(x)), rtol=1e-6)


def test_batch_norm_mlp_loss_is_scale_invariant_in_training_mode():
    m = models.MLP((4, 8, 8, 3), normalization="batch", norm_epsilon=0.0, bias_var=0.1,
                   rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (32, 4))
    y = jnp.arange(32) % 3
    for train_mode in (True, False):
        apply_fn, params, _ = models.functional(m, train=train_mode)

        def loss(p, f=apply_fn):
            logits = f(p, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(32), y])

        base = float(loss(params))
        worst = 0.0
        for layer in (0, 1):  # each hidden layer on its own, and both together
            for c in (0.01, 0.3, 7.0, 100.0):
                p = jax.tree.map(lambda a: a, params)
                for name in ("w", "b"):
                    p["layers"][layer][name] = nnx.Param(c * params["layers"][layer][name][...])
                worst = max(worst, abs(float(loss(p)) - base) / base)
        if train_mode:
            assert worst < 1e-5  # float32 rounding only
        else:
            assert worst > 0.1  # running averages are fixed numbers: no invariance
    # the last layer is not scale invariant
    apply_fn, params, _ = models.functional(m, train=True)
    p = jax.tree.map(lambda a: a, params)
    p["layers"][2]["w"] = nnx.Param(3.0 * params["layers"][2]["w"][...])
    assert not np.allclose(apply_fn(p, x), apply_fn(params, x))


def test_bad_normalization_arguments_name_themselves():
    with pytest.raises(ValueError, match="normalization"):
        models.MLP((3, 4, 2), normalization="layer", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="normalization"):
        models.MLP((3, 4, 2), normalization="batch", max_width=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm_epsilon"):
        models.MLP((3, 4, 2), normalization="batch", norm_epsilon=-1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="norm_momentum"):
        models.MLP((3, 4, 2), normalization="batch", norm_momentum=1.0, rngs=nnx.Rngs(0))
    plain = models.MLP((3, 4, 2), rngs=nnx.Rngs(0))
    assert len(plain.norms) == 0  # no normalization: the same network as before
    with pytest.raises(ValueError, match="model"):
        models.recompute_batch_stats(plain, np.ones((4, 3), np.float32))


def test_recompute_batch_stats_sets_the_running_averages_to_the_data_statistics():
    m = models.MLP((3, 6, 2), normalization="batch", norm_momentum=0.9, rngs=nnx.Rngs(2))
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    fresh = models.recompute_batch_stats(m, x)
    z = x.astype(np.float64) @ np.asarray(m.layers[0].w[...], np.float64) + np.asarray(
        m.layers[0].b[...], np.float64
    )
    np.testing.assert_allclose(fresh.norms[0].mean[...], z.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fresh.norms[0].var[...], z.var(0), rtol=1e-4, atol=1e-5)
    assert fresh.norms[0].momentum == 0.9  # restored
    assert float(jnp.abs(m.norms[0].mean[...]).max()) == 0.0  # the argument is untouched


def test_mlp_dropout_zeroes_units_in_training_only_and_keeps_the_init():
    widths = (6, 64, 64, 3)
    plain = models.MLP(widths, rngs=nnx.Rngs(0))
    drop = models.MLP(widths, dropout=0.5, rngs=nnx.Rngs(0))
    assert not hasattr(plain, "drop") and plain.dropout == 0.0  # default: no dropout layer
    for a, b in zip(jax.tree.leaves(nnx.state(plain, nnx.Param)),
                    jax.tree.leaves(nnx.state(drop, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a, b)  # the same weights with and without dropout
    x = jax.random.normal(jax.random.key(1), (200, 6))
    drop.eval()
    np.testing.assert_allclose(drop(x), plain(x), rtol=1e-6)  # evaluation: no dropout
    drop.train()
    one = models.MLP((6, 64, 3), dropout=0.5, rngs=nnx.Rngs(0))  # one hidden layer
    h = one.features(x)[1]  # its units, dropped
    zero = float(jnp.mean(h == 0))
    h_plain = models.MLP((6, 64, 3), rngs=nnx.Rngs(0)).features(x)[1]
    assert 0.5 < zero < 0.9  # ReLU zeros about half, dropout half of the rest
    assert float(jnp.mean(h_plain == 0)) < 0.6
    kept = h != 0  # kept units are scaled by 1 / (1 - p)
    np.testing.assert_allclose(h[kept], 2 * h_plain[kept], rtol=1e-5)
    assert not np.allclose(drop(x), drop(x))  # a new mask each call
    small = models.MLP((2, 16, 2), dropout=0.5, rngs=nnx.Rngs(0))
    _, hist = train.fit(small, data.moons(jax.random.key(2), n=100, n_test=50),
                        key=jax.random.key(3), steps=20, learning_rate=1e-2, log_every=10)
    assert np.all(np.isfinite(hist.train_loss))
    for bad in (-0.1, 1.0, True, "0.5"):
        with pytest.raises(ValueError, match="dropout"):
            models.MLP(widths, dropout=bad, rngs=nnx.Rngs(0))


def test_loss_fn_is_the_models_loss_and_its_gradient_matches_finite_differences():
    """``models.loss_fn(model, x, y)(params)`` is ``loss(model(x), y)``; its gradient agrees with
    central differences; it accepts other parameters of the same architecture; training mode
    uses the batch's statistics."""
    from udl_jax import losses

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16).astype(np.int32)
    model = models.MLP((5, 8, 3), activation="tanh", rngs=nnx.Rngs(0))  # smooth: FD is exact
    params = nnx.state(model, nnx.Param)
    f = models.loss_fn(model, x, y)
    np.testing.assert_allclose(f(params), losses.cross_entropy(model(jnp.asarray(x)), y),
                               rtol=1e-6)
    g = models.loss_fn(model, x, y, "mse")
    np.testing.assert_allclose(g(params), losses.mse(model(jnp.asarray(x)), y), rtol=1e-6)
    other = nnx.state(models.MLP((5, 8, 3), activation="tanh", rngs=nnx.Rngs(1)), nnx.Param)
    np.testing.assert_allclose(
        f(other), losses.cross_entropy(nnx.merge(nnx.graphdef(model), other)(x), y), rtol=1e-6
    )
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    grad = jax.flatten_util.ravel_pytree(jax.grad(f)(params))[0]
    v = jnp.asarray(rng.normal(size=flat.shape).astype(np.float32))
    v = v / jnp.linalg.norm(v)
    h = 1e-2
    fd = (f(unravel(flat + h * v)) - f(unravel(flat - h * v))) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(grad, v), fd, rtol=1e-2)

    bn = models.MLP((5, 8, 3), normalization="batch", rngs=nnx.Rngs(0))
    bn_params = nnx.state(bn, nnx.Param)
    bn.train()
    np.testing.assert_allclose(
        models.loss_fn(bn, x, y, train=True)(bn_params),
        losses.cross_entropy(bn(jnp.asarray(x)), y), rtol=1e-5)
    bn.eval()
    np.testing.assert_allclose(models.loss_fn(bn, x, y)(bn_params),
                               losses.cross_entropy(bn(jnp.asarray(x)), y), rtol=1e-5)
    batch = models.loss_fn(model)  # without data: a loss of (params, x, y)
    np.testing.assert_allclose(batch(params, x[:4], y[:4]),
                               losses.cross_entropy(model(jnp.asarray(x[:4])), y[:4]), rtol=1e-6)
    with pytest.raises(ValueError, match="x, y"):
        models.loss_fn(model, x, y[:5])
    with pytest.raises(ValueError, match="x, y"):
        models.loss_fn(model, x)
    with pytest.raises(ValueError, match="loss"):
        models.loss_fn(model, x, y, "hinge")


def _numpy_mlp(weights, x, act, residual=False, offsets=None):
    """A fully connected network written out in NumPy: layer inputs, pre-activations, output."""
    h, inputs, pre = x, [], []
    for i, (w, b) in enumerate(weights):
        inputs.append(h)
        z = h @ w + b + (0 if offsets is None else offsets[i])
        if i == len(weights) - 1:
            return z, pre, inputs
        pre.append(z)
        a = act(z)
        h = h + a if (residual and a.shape == h.shape) else a


@pytest.mark.parametrize("residual", [False, True])
def test_mlp_forward_records_every_layer_against_numpy(residual):
    rng = np.random.default_rng(5)
    sizes = (3, 6, 6, 2)
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    weights = [(rng.normal(size=(a, b)), rng.normal(size=b)) for a, b in pairs]
    x = rng.normal(size=(7, 3))
    offsets = [rng.normal(size=(7, b)) for b in sizes[1:]]
    want = _numpy_mlp(weights, x, np.tanh, residual, offsets)
    got = models.mlp_forward(
        lambda i, h: h @ weights[i][0] + weights[i][1], jnp.asarray(x), num_layers=3,
        activation="tanh", residual=residual, offsets=offsets,
    )
    np.testing.assert_allclose(got.outputs, want[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(got.pre + got.inputs, want[1] + want[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    hidden = models.mlp_forward(
        lambda i, h: h @ weights[i][0] + weights[i][1], jnp.asarray(x), num_layers=3,
        activation="tanh", residual=residual, offsets=offsets, readout=False,
    )
    assert hidden.outputs is None
    np.testing.assert_allclose(hidden.inputs[-1], want[2][-1], rtol=1e-5, atol=1e-5)
    # post acts on each hidden activation: zeroing unit 0 of layer 1 equals a NumPy mask
    masked = models.mlp_forward(
        lambda i, h: h @ weights[i][0] + weights[i][1], jnp.asarray(x), num_layers=3,
        activation="tanh", post=lambda i, a: a.at[..., 0].set(0.0) if i == 1 else a,
    )
    h2 = np.tanh(np.tanh(x @ weights[0][0] + weights[0][1]) @ weights[1][0] + weights[1][1])
    h2[:, 0] = 0.0
    np.testing.assert_allclose(masked.outputs, h2 @ weights[2][0] + weights[2][1], rtol=1e-5,
                               atol=1e-5)


def test_mlp_forward_offsets_give_the_derivative_with_respect_to_preactivations():
    """d f / d offsets_l is the backpropagated error at layer l: check by finite differences."""
    m = models.MLP((3, 5, 4, 2), activation="tanh", bias_var=0.1, rngs=nnx.Rngs(2))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3)), jnp.float32)
    zeros = [jnp.zeros((1, n)) for n in (5, 4, 2)]
    grads = jax.grad(lambda e: m.forward(x, offsets=e).outputs[0, 1])(zeros)
    h = 1e-2
    for layer, g in enumerate(grads):
        for unit in range(g.shape[1]):
            up = [z.at[0, unit].set(h) if i == layer else z for i, z in enumerate(zeros)]
            dn = [z.at[0, unit].set(-h) if i == layer else z for i, z in enumerate(zeros)]
            fd = (m.forward(x, offsets=up).outputs[0, 1] - m.forward(x, offsets=dn).outputs[0, 1])
            np.testing.assert_allclose(g[0, unit], fd / (2 * h), rtol=2e-2, atol=1e-4)


def test_mlp_forward_bad_input_names_the_argument():
    def affine(i, h):
        return h

    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="num_layers"):
        models.mlp_forward(affine, x, num_layers=0, activation="relu")
    with pytest.raises(ValueError, match="activation"):
        models.mlp_forward(affine, x, num_layers=2, activation="swish")
    with pytest.raises(ValueError, match="offsets"):
        models.mlp_forward(affine, x, num_layers=2, activation="relu", offsets=[x])


@pytest.mark.parametrize("widths", [(4, 1), (40, 64, 64, 10), (3, 7, 2, 5, 1)])
def test_spec_num_params_counts_the_built_network(widths):
    spec = models.MLPSpec(widths)
    built = models.param_count(models.functional(spec.build(nnx.Rngs(0)))[1])
    assert spec.num_params == built
