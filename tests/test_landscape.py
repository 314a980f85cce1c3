"""Tests for udl_jax.landscape: filter normalization against its definition and its invariance,
slices and paths against direct evaluation and closed forms (quadratics, a ring of minima)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from udl_jax import landscape, models


def _params(key=0):
    """A pytree with a dense kernel, a conv-like 3D kernel and biases."""
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {"dense": {"w": jax.random.normal(k1, (5, 4)), "b": jax.random.normal(k2, (4,))},
            "conv": {"w": jax.random.normal(k3, (3, 2, 6))}}


def _data(n=64, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, size=n).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def _mlp(seed=0, **kw):
    return models.MLP((6, 16, 16, 3), bias_var=0.1, rngs=nnx.Rngs(seed), **kw)


@pytest.fixture(scope="module")
def net():
    """Two small ReLU networks, their data and ONE loss function (so slices compile once)."""
    model_a, model_b = _mlp(0), _mlp(1)
    loss_fn, params_a = landscape.loss_function(model_a)
    _, params_b = landscape.loss_function(model_b)
    return {"model": model_a, "loss_fn": loss_fn, "pa": params_a, "pb": params_b,
            "batch": _data()}


TS = jnp.linspace(-1, 1, 7)  # one grid length for every slice of the networks: one compilation


# ------------------------------------------------------------------- filter normalization


def test_filter_normalization_matches_definition():
    params = _params()
    d = landscape.random_direction(jax.random.key(1), params)
    for leaf_d, leaf_w in ((d["dense"]["w"], params["dense"]["w"]),
                           (d["conv"]["w"], params["conv"]["w"])):
        axes = tuple(range(leaf_w.ndim - 1))
        np.testing.assert_allclose(jnp.linalg.norm(leaf_d.reshape(-1, leaf_d.shape[-1]), axis=0),
                                   jnp.sqrt(jnp.sum(leaf_w**2, axis=axes)), rtol=1e-5)
    assert float(jnp.abs(d["dense"]["b"]).max()) == 0.0  # biases: zero direction (Li et al.)
    raw = landscape.random_direction(jax.random.key(1), params, normalization="none")
    assert float(jnp.abs(raw["dense"]["b"]).max()) > 0
    # Filter-normalizing the raw draw gives the same direction; each filter keeps its direction.
    np.testing.assert_allclose(landscape.normalize_direction(raw, params)["conv"]["w"],
                               d["conv"]["w"], rtol=1e-6)
    cos = jnp.sum(raw["dense"]["w"] * d["dense"]["w"], 0) / (
        jnp.linalg.norm(raw["dense"]["w"], axis=0) * jnp.linalg.norm(d["dense"]["w"], axis=0))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
    layer = landscape.random_direction(jax.random.key(1), params, normalization="layer")
    np.testing.assert_allclose(jnp.linalg.norm(layer["dense"]["w"]),
                               jnp.linalg.norm(params["dense"]["w"]), rtol=1e-5)


def test_filter_normalization_is_invariant_under_per_filter_rescaling():
    params = _params()
    c = {"dense": {"w": jnp.array([0.1, 1.0, 7.0, 30.0]), "b": jnp.ones(4)},
         "conv": {"w": jnp.linspace(0.2, 5.0, 6)}}
    scaled = jax.tree.map(lambda w, s: w * s, params, c)
    key = jax.random.key(3)
    d = landscape.random_direction(key, params)
    d_scaled = landscape.random_direction(key, scaled)
    for path in (("dense", "w"), ("conv", "w")):
        np.testing.assert_allclose(d_scaled[path[0]][path[1]],
                                   d[path[0]][path[1]] * c[path[0]][path[1]], rtol=1e-5)
    # Raw directions do not follow the scale; layer normalization follows only a uniform one.
    raw, raw_s = (landscape.random_direction(key, p, "none") for p in (params, scaled))
    np.testing.assert_array_equal(raw["conv"]["w"], raw_s["conv"]["w"])
    lay, lay_s = (landscape.random_direction(key, p, "layer") for p in (params, scaled))
    ratio = lay_s["conv"]["w"] / lay["conv"]["w"]
    assert float(ratio.max() / ratio.min()) == pytest.approx(1.0, rel=1e-5)


def test_relu_rescale_keeps_function_and_filter_normalized_slices(net):
    model, loss_fn, params, batch = net["model"], net["loss_fn"], net["pa"], net["batch"]
    alpha = 8.0
    rescaled = landscape.relu_rescale(model, 0, alpha)
    np.testing.assert_allclose(rescaled(batch[0]), model(batch[0]), rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(model.layers[0].w[...] - rescaled.layers[0].w[...] / alpha).max()) == 0
    _, params_r = landscape.loss_function(rescaled)
    key = jax.random.key(5)
    curves = {}
    for norm in ("filter", "none"):
        curves[norm] = [np.asarray(landscape.slice_1d(
            loss_fn, p, landscape.random_direction(key, p, norm), TS, batch))
            for p in (params, params_r)]
    np.testing.assert_allclose(curves["filter"][0], curves["filter"][1], rtol=1e-4)
    gap = np.abs(curves["none"][0] - curves["none"][1]).max()
    assert gap > 0.1 * np.abs(curves["none"][0] - curves["none"][0][3]).max(), gap


# ----------------------------------------------------------------------------- slices


def test_slices_at_zero_and_interpolation_endpoints_equal_the_loss(net):
    loss_fn, pa, pb, batch = net["loss_fn"], net["pa"], net["pb"], net["batch"]
    la, lb = float(loss_fn(pa, batch)), float(loss_fn(pb, batch))
    d1 = landscape.random_direction(jax.random.key(0), pa)
    d2 = landscape.random_direction(jax.random.key(1), pa)
    ts = TS  # t = 0 is ts[3]
    line = landscape.slice_1d(loss_fn, pa, d1, ts, batch)
    plane = landscape.slice_2d(loss_fn, pa, d1, d2, ts, ts[:5], batch, batch_size=4)
    assert plane.shape == (7, 5)
    assert float(line[3]) == pytest.approx(la, rel=1e-6)
    assert float(plane[3, 3]) == pytest.approx(la, rel=1e-6)
    np.testing.assert_allclose(plane[:, 3], line, rtol=1e-5)  # the b = 0 column is the 1D slice
    # lax.map batching (7 points in batches of 3) changes nothing.
    np.testing.assert_allclose(landscape.slice_1d(loss_fn, pa, d1, ts, batch, batch_size=3),
                               line, rtol=1e-6)
    path = landscape.interpolate(loss_fn, pa, pb, (TS + 1) / 2, batch)  # 0, 1/6, ..., 1
    assert float(path[0]) == pytest.approx(la, rel=1e-6)
    assert float(path[6]) == pytest.approx(lb, rel=1e-6)
    mid = jax.tree.map(lambda a, b: 0.5 * (a + b), pa, pb)
    assert float(path[3]) == pytest.approx(float(loss_fn(mid, batch)), rel=1e-5)


def _quadratic(dim=7, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(dim, dim))
    a = jnp.asarray(m @ m.T / dim - 0.3 * np.eye(dim), jnp.float32)  # indefinite
    b = jnp.asarray(rng.normal(size=dim), jnp.float32)

    def loss_fn(params, batch):
        del batch
        v = jnp.concatenate([params["w"].ravel(), params["b"]])
        return 0.5 * v @ a @ v + b @ v

    def flat(p):
        return jnp.concatenate([p["w"].ravel(), p["b"]])

    params = {"w": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
    return loss_fn, params, a, b, flat


def test_quadratic_slices_match_closed_form():
    loss_fn, params, a, b, flat = _quadratic()
    d1 = landscape.random_direction(jax.random.key(0), params, "none")
    d2 = landscape.random_direction(jax.random.key(1), params, "none")
    th, u, v = flat(params), flat(d1), flat(d2)
    ts = jnp.linspace(-2, 2, 11)
    closed = loss_fn(params, None) + ts * ((a @ th + b) @ u) + 0.5 * ts**2 * (u @ a @ u)
    np.testing.assert_allclose(landscape.slice_1d(loss_fn, params, d1, ts, None), closed,
                               rtol=1e-4, atol=1e-4)
    # The 2D slice's finite-difference Hessian is exactly [u v]^T A [u v] for a quadratic.
    ts2 = jnp.linspace(-1, 1, 9)
    surface = landscape.slice_2d(loss_fn, params, d1, d2, ts, ts2, None)
    eig = landscape.hessian_eigenvalues_2d(surface, ts, ts2)
    basis = jnp.stack([u, v], 1)
    want = np.linalg.eigvalsh(np.asarray(basis.T @ a @ basis, np.float64))
    assert eig.shape == (9, 7, 2)
    np.testing.assert_allclose(eig.reshape(-1, 2), np.broadcast_to(want, (63, 2)),
                               rtol=2e-3, atol=2e-3 * np.abs(want).max())


# ------------------------------------------------------------------------------ curves


def _valley():
    """Minima along the parabola y = 1 - x^2. The straight line from (-1, 0) to (1, 0) crosses a
    barrier of height 1 at x = 0; the Bezier curve with control point (0, 2) *is* the parabola."""

    def loss_fn(params, batch):
        x, y = params["p"]
        return (y - 1.0 + x**2) ** 2 + 0.0 * jnp.sum(batch)

    return loss_fn, {"p": jnp.array([-1.0, 0.0])}, {"p": jnp.array([1.0, 0.0])}


def test_bezier_curve_endpoints_and_straight_line():
    loss_fn, pa, pb = _valley()
    ts = jnp.linspace(0, 1, 11)
    ctrl = {"p": jnp.array([0.3, 2.0])}
    np.testing.assert_array_equal(landscape.bezier_point(pa, ctrl, pb, 0.0)["p"], pa["p"])
    np.testing.assert_array_equal(landscape.bezier_point(pa, ctrl, pb, 1.0)["p"], pb["p"])
    batch = jnp.zeros((8, 1))
    curve = landscape.bezier_losses(loss_fn, pa, ctrl, pb, ts, batch)
    assert float(curve[0]) == float(loss_fn(pa, batch)) and float(curve[-1]) == float(
        loss_fn(pb, batch))
    midpoint = {"p": 0.5 * (pa["p"] + pb["p"])}  # the midpoint control gives the straight line
    np.testing.assert_allclose(landscape.bezier_losses(loss_fn, pa, midpoint, pb, ts, batch),
                               landscape.interpolate(loss_fn, pa, pb, ts, batch), atol=1e-6)


def test_trained_bezier_curve_goes_around_the_barrier():
    loss_fn, pa, pb = _valley()
    batch = jnp.zeros((8, 1))
    kw = dict(key=jax.random.key(0), steps=300, learning_rate=0.05, batch_size=4)
    ctrl, losses = landscape.fit_bezier(loss_fn, pa, pb, batch, **kw)
    assert losses.shape == (300,)
    straight_mid = float(landscape.interpolate(loss_fn, pa, pb, jnp.array([0.5]), batch)[0])
    curve = landscape.bezier_losses(loss_fn, pa, ctrl, pb, jnp.linspace(0, 1, 21), batch)
    assert straight_mid == pytest.approx(1.0)
    assert float(curve[10]) < 0.05 * straight_mid
    assert float(curve.max()) < 0.2 * straight_mid
    assert float(curve[0]) == 0.0 and float(curve[-1]) == 0.0  # end points did not move
    # Deterministic: the same key gives the same curve; the starting control point is honoured.
    again, _ = landscape.fit_bezier(loss_fn, pa, pb, batch, **kw)
    np.testing.assert_array_equal(again["p"], ctrl["p"])
    start = {"p": jnp.array([0.0, -3.0])}  # a tiny learning rate reuses the compiled scan
    other, _ = landscape.fit_bezier(loss_fn, pa, pb, batch, **{**kw, "learning_rate": 1e-9},
                                    control=start)
    np.testing.assert_allclose(other["p"], start["p"], atol=1e-5)
    sgd, _ = landscape.fit_bezier(loss_fn, pa, pb, batch, **{**kw, "batch_size": None},
                                  optimizer=optax.sgd)
    assert jnp.all(jnp.isfinite(sgd["p"]))


def test_plane_through_three_points():
    pa, pb, pc = _params(0), _params(1), _params(2)
    u, v, coords = landscape.plane_through(pa, pb, pc)
    assert float(optax.tree_utils.tree_norm(u)) == pytest.approx(1.0, rel=1e-5)
    assert float(optax.tree_utils.tree_norm(v)) == pytest.approx(1.0, rel=1e-5)
    assert abs(float(optax.tree_utils.tree_vdot(u, v))) < 1e-5
    for point, (x, y) in zip((pa, pb, pc), coords, strict=True):
        rebuilt = jax.tree.map(lambda a, du, dv, x=x, y=y: a + x * du + y * dv, pa, u, v)
        for r, p in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(point), strict=True):
            np.testing.assert_allclose(r, p, atol=1e-4)


# ------------------------------------------------------------------- errors, determinism


def test_bad_arguments_name_themselves(net):
    params = _params()
    loss_fn, pa, pb = _valley()
    batch = jnp.zeros((8, 1))
    d = landscape.random_direction(jax.random.key(0), params)
    with pytest.raises(ValueError, match="normalization"):
        landscape.random_direction(jax.random.key(0), params, normalization="unit")
    with pytest.raises(ValueError, match="direction: expected a pytree with the structure"):
        landscape.normalize_direction({"dense": d["dense"]}, params)
    with pytest.raises(ValueError, match="direction: expected leaf shapes"):
        landscape.slice_1d(loss_fn, params, {**d, "conv": {"w": jnp.ones((3, 2, 5))}},
                           jnp.zeros(3), None)
    with pytest.raises(ValueError, match="ts: expected a non-empty 1D"):
        landscape.slice_1d(loss_fn, pa, pa, jnp.zeros((2, 2)), batch)
    with pytest.raises(ValueError, match="ts2"):
        landscape.slice_2d(loss_fn, pa, pa, pa, jnp.zeros(3), jnp.zeros(()), batch)
    with pytest.raises(ValueError, match="batch_size"):
        landscape.slice_1d(loss_fn, pa, pa, jnp.zeros(3), batch, batch_size=0)
    with pytest.raises(TypeError, match="loss_fn"):
        landscape.interpolate("loss", pa, pb, jnp.zeros(3), batch)
    with pytest.raises(ValueError, match="params_b"):
        landscape.interpolate(loss_fn, pa, {"q": pb["p"]}, jnp.zeros(3), batch)
    with pytest.raises(ValueError, match="ts: expected curve parameters in"):
        landscape.bezier_losses(loss_fn, pa, pa, pb, jnp.array([0.0, 1.5]), batch)
    fit = dict(key=jax.random.key(0), steps=5, learning_rate=0.1)
    with pytest.raises(ValueError, match="steps"):
        landscape.fit_bezier(loss_fn, pa, pb, batch, **{**fit, "steps": 0})
    with pytest.raises(ValueError, match="learning_rate"):
        landscape.fit_bezier(loss_fn, pa, pb, batch, **{**fit, "learning_rate": -1.0})
    with pytest.raises(ValueError, match="batch_size"):
        landscape.fit_bezier(loss_fn, pa, pb, batch, **fit, batch_size=0)
    with pytest.raises(ValueError, match="batch: expected arrays"):
        landscape.fit_bezier(loss_fn, pa, pb, (jnp.zeros(3), jnp.zeros(4)), **fit)
    with pytest.raises(ValueError, match="control"):
        landscape.fit_bezier(loss_fn, pa, pb, batch, **fit, control={"p": jnp.zeros(3)})
    with pytest.raises(TypeError, match="optimizer"):
        landscape.fit_bezier(loss_fn, pa, pb, batch, **fit, optimizer=optax.adam(0.1))
    with pytest.raises(ValueError, match="params_c: lies on the line"):
        landscape.plane_through(pa, pb, {"p": jnp.array([3.0, 0.0])})
    with pytest.raises(ValueError, match="surface"):
        landscape.hessian_eigenvalues_2d(np.zeros((4, 4)), np.arange(4.0), np.arange(5.0))
    with pytest.raises(ValueError, match="ts1: expected evenly spaced"):
        landscape.hessian_eigenvalues_2d(np.zeros((4, 4)), np.array([0, 1, 3, 4.0]),
                                         np.arange(4.0))
    with pytest.raises(ValueError, match="loss"):
        landscape.loss_function(net["model"], loss="hinge")
    with pytest.raises(ValueError, match="model: expected a ReLU MLP without skip"):
        landscape.relu_rescale(_mlp(residual=True), 0, 2.0)
    with pytest.raises(TypeError, match="model"):
        landscape.relu_rescale(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 0, 2.0)
    with pytest.raises(ValueError, match="layer"):
        landscape.relu_rescale(net["model"], 2, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        landscape.relu_rescale(net["model"], 0, 0.0)


def test_determinism(net):
    params = _params()
    for norm in landscape.NORMALIZATIONS:
        a = landscape.random_direction(jax.random.key(4), params, norm)
        b = landscape.random_direction(jax.random.key(4), params, norm)
        c = landscape.random_direction(jax.random.key(5), params, norm)
        for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c),
                           strict=True):
            np.testing.assert_array_equal(x, y)
            zero_bias = x.ndim < 2 and norm != "none"  # zero for every key
            assert zero_bias or not np.array_equal(x, z)
    loss_fn, p, batch = net["loss_fn"], net["pa"], net["batch"]
    d = landscape.random_direction(jax.random.key(0), p)
    np.testing.assert_array_equal(landscape.slice_1d(loss_fn, p, d, TS, batch),
                                  landscape.slice_1d(loss_fn, p, d, TS, batch))
