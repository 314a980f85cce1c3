import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from udl_jax import models


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
        # everything outside the true block is zero
        assert float(jnp.abs(lp.w[...]).sum() - jnp.abs(ls.w[...]).sum()) == 0
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
