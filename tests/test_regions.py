"""Tests for udl_jax.regions against independent references: autodiff, a float64 NumPy forward
pass sampled densely along segments, the closed-form tent map, and brute-force minimization."""

from math import comb

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from udl_jax import models, regions


def _mlp(widths, seed=0, **kw):
    kw.setdefault("bias_var", 0.5)
    return models.MLP(widths, rngs=nnx.Rngs(seed), **kw)


def _np_patterns(model, x):
    """Float64 activation patterns from a forward pass written out here (the reference)."""
    h, pats = np.asarray(x, np.float64), []
    for layer in model.layers[:-1]:
        w = np.asarray(layer.w[...], np.float64)
        b = np.asarray(layer.b[...], np.float64)
        if model.parametrization == "ntk":
            z = layer.w_scale * (h @ w) + layer.b_scale * b
        else:
            z = h @ w + b
        pats.append(z > 0)
        a = np.maximum(z, 0.0)
        h = h + a if (model.residual and h.shape[-1] == a.shape[-1]) else a
    return np.concatenate(pats, axis=-1)


def _brute_force_changes(model, x0, x1, n=100_001):
    t = np.linspace(0.0, 1.0, n)
    p = _np_patterns(model, x0 + t[:, None] * (x1 - x0))
    changed = np.any(p[1:] != p[:-1], axis=1)
    return t, changed


def _tent(x):
    return np.where(x <= 0.5, 2 * x, 2 - 2 * x)


# Every model below has input 1 or 2, hidden width 6 and output 1 (eager JAX compiles once per
# shape, so few shapes keep the file fast).
VARIANTS = [{}, {"parametrization": "ntk"}, {"residual": True}, {"max_width": 6}]


@pytest.mark.parametrize("kw", VARIANTS, ids=["standard", "ntk", "residual", "max_width"])
def test_local_affine_map_matches_jacobian_and_forward(kw):
    widths = (2, 5, 6, 4, 1) if "max_width" in kw else (2, 6, 6, 6, 1)
    model = _mlp(widths, seed=1, **kw)
    xs = jax.random.normal(jax.random.key(0), (8, 2)) * 2
    # Batched under jit (the function is traceable); compared with autodiff and the forward pass.
    a, b = jax.jit(jax.vmap(lambda x: regions.local_affine_map(model, x)))(xs)
    assert a.shape == (8, 1, 2) and b.shape == (8, 1)
    np.testing.assert_allclose(a, jax.jit(jax.vmap(jax.jacfwd(model)))(xs), atol=1e-5)
    np.testing.assert_allclose(jnp.einsum("nij,nj->ni", a, xs) + b, model(xs), atol=1e-5)
    # The same map holds at nearby points with the same pattern.
    ys = xs + 1e-3
    pattern = regions.activation_pattern
    same = np.all(pattern(model, ys) == pattern(model, xs), axis=-1)
    assert same.sum() >= 4
    np.testing.assert_allclose((jnp.einsum("nij,nj->ni", a, ys) + b)[same], model(ys)[same],
                               atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_segment_breakpoints_match_brute_force(depth, seed):
    model = _mlp((2, *[6] * depth, 1), seed=seed)
    x0, x1 = np.random.default_rng(seed).normal(size=(2, 2)) * 2
    bp = regions.segment_breakpoints(model, x0, x1)
    t, changed = _brute_force_changes(model, x0, x1)
    assert np.all(np.diff(bp) > 0) and np.all((bp > 0) & (bp < 1))
    assert bp.size == changed.sum()
    assert regions.count_regions_on_segment(model, x0, x1) == changed.sum() + 1
    # Each exact breakpoint lies in a grid cell where the sampled pattern changes.
    cells = np.searchsorted(t, bp) - 1
    assert np.all(changed[cells])


@pytest.mark.parametrize("kw", VARIANTS[1:], ids=["ntk", "residual", "max_width"])
def test_segment_breakpoints_other_architectures(kw):
    widths = (2, 5, 6, 1) if "max_width" in kw else (2, 6, 6, 1)
    model = _mlp(widths, seed=3, **kw)
    x0, x1 = np.random.default_rng(3).normal(size=(2, 2)) * 3
    _, changed = _brute_force_changes(model, x0, x1)
    assert regions.count_regions_on_segment(model, x0, x1) == changed.sum() + 1


def test_one_hidden_layer_at_most_n_plus_one_pieces():
    n = 6
    rng = np.random.default_rng(0)
    for seed in range(5):
        model = _mlp((2, n, 1), seed=seed, bias_var=1.0)
        x0, x1 = rng.normal(size=(2, 2)) * 20
        count = regions.count_regions_on_segment(model, x0, x1)
        assert 1 <= count <= n + 1
    # In 1D each unit has one breakpoint -b/w; a long enough line meets all: the bound is reached.
    model = _mlp((1, n, 1), seed=0, bias_var=1.0)
    assert regions.count_regions_on_segment(model, np.array([-1e3]), np.array([1e3])) == n + 1


def test_count_regions_on_segments_matches_single():
    model = _mlp((2, 6, 6, 1), seed=2)
    x0, x1 = np.random.default_rng(2).normal(size=(2, 4, 2))
    many = regions.count_regions_on_segments(model, x0, x1)
    assert many.shape == (4,)
    assert list(many) == [regions.count_regions_on_segment(model, a, b)
                          for a, b in zip(x0, x1, strict=True)]


@pytest.mark.parametrize("depth", range(1, 9))
def test_tent_network_has_two_to_the_depth_pieces(depth):
    model = regions.tent_network(depth)
    bp = regions.segment_breakpoints(model, np.array([0.0]), np.array([1.0]))
    assert bp.size + 1 == 2**depth
    np.testing.assert_allclose(bp, np.arange(1, 2**depth) / 2**depth, atol=1e-12)
    x = np.linspace(0, 1, 1001)
    ref = x
    for _ in range(depth):
        ref = _tent(ref)
    np.testing.assert_allclose(np.asarray(model(x[:, None].astype(np.float32)))[:, 0], ref,
                               atol=1e-5)


def test_region_map_2d_labels_patterns_and_respects_zaslavsky():
    n = 6
    model = _mlp((2, n, 1), seed=0, bias_var=1.0)
    ids, xs, ys = regions.region_map_2d(model, (-3, 3), (-2, 2), resolution=60)
    assert ids.shape == (60, 60) and xs.shape == (60,) and ys.shape == (60,)
    gx, gy = np.meshgrid(xs, ys)
    pats = _np_patterns(model, np.stack([gx, gy], axis=-1))
    # Same id <=> same pattern.
    flat_ids, flat_p = ids.ravel(), pats.reshape(-1, n)
    for k in np.unique(flat_ids):
        assert (flat_p[flat_ids == k] == flat_p[flat_ids == k][0]).all()
    assert len({tuple(p) for p in flat_p}) == ids.max() + 1
    count = regions.count_regions_2d(model, (-3, 3), (-2, 2), resolution=60)
    assert count == ids.max() + 1
    assert count <= sum(comb(n, j) for j in range(3))


def test_soft_threshold_closed_form_and_prox():
    x = jnp.linspace(-3, 3, 61)
    for lam in (0.0, 0.5, 1.3):
        st = np.asarray(regions.soft_threshold(x, lam))
        np.testing.assert_allclose(st, np.sign(x) * np.maximum(np.abs(x) - lam, 0), atol=1e-6)
        # prox_{lam |.|}(x) = argmin_u lam |u| + (u - x)^2 / 2, by brute force on a grid.
        u = np.linspace(-4, 4, 8001)
        obj = lam * np.abs(u)[None, :] + 0.5 * (u[None, :] - np.asarray(x)[:, None]) ** 2
        np.testing.assert_allclose(st, u[np.argmin(obj, axis=1)], atol=2e-3)
    assert jax.jit(regions.soft_threshold)(x, 0.5).shape == x.shape


def test_activation_pattern_shape():
    model = _mlp((2, 4, 5, 1), max_width=6)
    pats = regions.activation_pattern(model, jnp.ones((2, 6, 2)))
    assert pats.shape == (2, 6, 12) and pats.dtype == jnp.bool_
    assert not pats[..., 4:6].any() and not pats[..., 11:].any()  # masked units are off


def test_bad_inputs():
    with pytest.raises(ValueError, match="activation='relu'"):
        regions.activation_pattern(_mlp((2, 6, 1), activation="tanh"), jnp.ones(2))
    with pytest.raises(TypeError, match="model: expected a udl_jax.models.MLP"):
        regions.local_affine_map(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), jnp.ones(2))
    model = _mlp((1, 6, 1))
    with pytest.raises(ValueError, match=r"x: expected shape \(1,\)"):
        regions.local_affine_map(model, jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=r"x1: expected shape \(1,\)"):
        regions.segment_breakpoints(model, np.ones(1), np.ones(2))
    with pytest.raises(ValueError, match="x0, x1: expected equal shapes"):
        regions.count_regions_on_segments(model, np.ones((2, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="model: expected 2 inputs"):
        regions.region_map_2d(model)
    model2 = _mlp((2, 6, 1))
    with pytest.raises(ValueError, match="xlim: expected"):
        regions.region_map_2d(model2, xlim=(1, -1))
    with pytest.raises(ValueError, match="resolution: expected"):
        regions.region_map_2d(model2, resolution=1)
    with pytest.raises(ValueError, match="depth: expected an int >= 1"):
        regions.tent_network(0)
    with pytest.raises(ValueError, match="lam: expected a threshold >= 0"):
        regions.soft_threshold(jnp.ones(3), -0.1)


def test_deterministic():
    model_a, model_b = _mlp((2, 6, 6, 1), seed=4), _mlp((2, 6, 6, 1), seed=4)
    x0, x1 = np.array([-2.0, 1.0]), np.array([2.0, -0.5])
    np.testing.assert_array_equal(regions.segment_breakpoints(model_a, x0, x1),
                                  regions.segment_breakpoints(model_b, x0, x1))
    ids_a, _, _ = regions.region_map_2d(model_a, resolution=40)
    ids_b, _, _ = regions.region_map_2d(model_a, resolution=40)
    np.testing.assert_array_equal(ids_a, ids_b)
