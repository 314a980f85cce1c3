import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from udl_jax import models
from udl_jax import ntk as nt

RNG = np.random.default_rng(0)
X1 = jnp.asarray(RNG.normal(size=(7, 3)), jnp.float32)
X2 = jnp.asarray(RNG.normal(size=(7, 3)), jnp.float32)  # one shape: fewer compilations
# Monte Carlo inputs: unit, near-parallel, longer and orthogonal, mixed signs
X_MC = jnp.asarray(
    [[1.0, 0, 0, 0], [0.9, 0.3, 0, 0], [0, 0, 1.5, 0], [-0.5, 0.5, 0.2, -0.3]], jnp.float32
)


def _jacobian_ntk(model, x1, x2, jit=False):
    """The reference kernel (N, M, K, K) of any NNX module: explicit (N, K, P) Jacobians by
    jax.jacrev, flattened over parameters and contracted. Eager by default: for the tiny MLPs
    here that is faster than compiling, as the primitives' kernels are cached across tests."""
    apply_fn, params, _ = models.functional(model)
    flat, unravel = ravel_pytree(params)

    def kernel(flat, x1, x2):
        def jac(x):
            return jax.jacrev(lambda f: apply_fn(unravel(f), x).reshape(x.shape[0], -1))(flat)

        return jnp.einsum("akp,blp->abkl", jac(x1), jac(x2))

    return (jax.jit(kernel) if jit else kernel)(flat, x1, x2)


class _Gated(nnx.Module):
    """A model that is no chain of dense layers: ``(x A) * tanh(x B)``."""

    def __init__(self, rngs):
        self.a, self.b = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(3, 4, rngs=rngs)

    def __call__(self, x):
        return self.a(x) * jnp.tanh(self.b(x))


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.abs(b).max())


# ----------------------------------------------------------------------- empirical NTK


@pytest.mark.parametrize("parametrization", models.PARAMETRIZATIONS)
@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_structured_ntk_matches_jacobian_product(activation, parametrization):
    variants = [{"bias_var": 0.0}, {"bias_var": 0.3}]
    if activation == "gelu" and parametrization == "standard":  # padded and residual too
        variants += [{"bias_var": 0.1, "max_width": 6}, {"bias_var": 0.1, "residual": True}]
    for kw in variants:
        widths = (3, 4, 5, 2) if "max_width" in kw else (3, 6, 6, 2)
        m = models.MLP(widths, activation=activation, parametrization=parametrization,
                       rngs=nnx.Rngs(1), **kw)
        ref = _jacobian_ntk(m, X1, X2)
        _close(nt.mlp_ntk_block(m, X1, X2), ref)
        _close(nt.mlp_ntk_block(m, X1, X2, trace=True), jnp.trace(ref, axis1=2, axis2=3))


def test_mlp_ntk_chunked_equals_unchunked_with_other_params_and_dispatch():
    m = models.MLP((3, 4, 5, 2), activation="gelu", bias_var=0.2, max_width=6, rngs=nnx.Rngs(2))
    full = nt.mlp_ntk(m, X1, X2)
    _close(full, _jacobian_ntk(m, X1, X2))
    _close(nt.model_ntk(m, X1, X2), full)  # an MLP: the structured route
    _close(nt.mlp_ntk(m, X1, X2, chunk_size=3), full)  # 7 rows: a ragged last chunk
    _close(nt.mlp_ntk(m, X1, X2[:5], chunk_size=3), full[:, :5])  # N != M
    _close(nt.mlp_ntk(m, X1, X2, trace=True, chunk_size=2), jnp.trace(full, axis1=2, axis2=3))
    sym = nt.mlp_ntk(m, X1, chunk_size=3)  # only the upper blocks are computed
    _close(sym, nt.mlp_ntk(m, X1, X1))
    # parameters other than the model's own
    _, params, rest = models.functional(m)
    moved = jax.tree.map(lambda a: a + 0.1, params)
    _close(nt.mlp_ntk(m, X1, X2, params=moved),
           _jacobian_ntk(nnx.merge(nnx.graphdef(m), moved, rest), X1, X2))


def test_generic_methods_chunked_on_mlp_and_other_models():
    m = models.MLP((3, 6, 6, 2), activation="erf", bias_var=0.2, rngs=nnx.Rngs(4))
    apply_fn, params, _ = models.functional(m)
    ref = nt.mlp_ntk_block(m, X1, X2)
    for method in ("jacobian", "ntvp"):
        _close(nt.empirical_ntk(apply_fn, params, X1, X2, method=method, chunk_size=3), ref)
    other = _Gated(nnx.Rngs(5))  # not an MLP: model_ntk takes the generic route
    ref = _jacobian_ntk(other, X1, X1, jit=True)
    _close(nt.model_ntk(other, X1, X1[:5]), ref[:, :5])  # auto: ntvp (4 outputs, full kernel)
    sym = nt.model_ntk(other, X1, trace=True, chunk_size=3)  # jacobian; only upper blocks
    _close(sym, jnp.trace(ref, axis1=2, axis2=3))


def test_empirical_ntk_is_symmetric_and_psd():
    # the architecture and chunks of the test above, so its compilations are reused
    m = models.MLP((3, 4, 5, 2), activation="gelu", bias_var=0.2, max_width=6, rngs=nnx.Rngs(6))
    x = jnp.concatenate([X1[:4], X1[:3]])  # repeated rows: a singular kernel
    full = np.asarray(nt.mlp_ntk(m, x, chunk_size=3), np.float64)
    n, k = full.shape[0], full.shape[2]
    mat = full.transpose(0, 2, 1, 3).reshape(n * k, n * k)
    np.testing.assert_allclose(mat, mat.T, atol=1e-6 * np.abs(mat).max())
    eig = np.linalg.eigvalsh(mat)
    assert eig.min() >= -1e-5 * eig.max()
    traced = np.asarray(nt.mlp_ntk(m, x, trace=True, chunk_size=2), np.float64)
    assert np.linalg.eigvalsh(traced).min() >= -1e-5 * np.abs(traced).max()


# -------------------------------------------------------------------- analytic kernels

MC_WIDTH, MC_NETS, MC_OUT, MC_BIAS = 128, 800, 1, 0.1


def _mc_function(activation, depth):
    """Per network, from N(0, 1) draws ``ws`` and ``bs`` (one per layer): E[f f' | hidden
    layers] (the readout averaged out exactly: an unbiased NNGP sample with less variance) and
    the traced empirical NTK per output, in NTK and in standard parametrization."""
    widths = (X_MC.shape[1],) + (MC_WIDTH,) * depth + (MC_OUT,)
    templates = {}
    for p in models.PARAMETRIZATIONS:
        m = nnx.eval_shape(lambda p=p: models.MLP(
            widths, activation=activation, parametrization=p, bias_var=MC_BIAS, rngs=nnx.Rngs(0)
        ))  # abstract: only the structure is needed
        graphdef, state = nnx.split(m)
        treedef = jax.tree.structure(state)  # leaves: b, w of layer 0, then of layer 1, ...
        assert [a.shape for a in jax.tree.leaves(state)[:2]] == [(MC_WIDTH,), (4, MC_WIDTH)]
        w_scale = [(m.weight_var / n) ** 0.5 if p == "standard" else 1.0 for n in widths[:-1]]
        b_scale = MC_BIAS**0.5 if p == "standard" else 1.0
        templates[p] = graphdef, treedef, w_scale, b_scale

    def one(ws, bs):
        out = {}
        for p, (graphdef, treedef, w_scale, b_scale) in templates.items():
            leaves = []
            for w, b, s in zip(ws, bs, w_scale, strict=True):
                leaves += [b * b_scale, w * s]
            m = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
            out[p] = nt.mlp_ntk_block(m, X_MC, X_MC, trace=True) / MC_OUT
            if p == "ntk":
                h = m.features(X_MC)[1]
                out["nngp"] = m.weight_var * (h @ h.T) / h.shape[1] + MC_BIAS
        return out["nngp"], out["ntk"], out["standard"]

    return widths, jax.vmap(one)


@pytest.fixture(scope="module")
def monte_carlo():
    """Samples of the NNGP and NTK of MC_NETS random MLPs of width MC_WIDTH for every
    activation with an analytic kernel and depth 1-3. Networks of different depth and activation
    share their N(0, 1) draws (each configuration is still an i.i.d. sample over networks), and
    all configurations run in one compiled function."""
    rng = np.random.default_rng(42)
    fns = {(a, d): _mc_function(a, d) for a in nt.ANALYTIC_ACTIVATIONS for d in (1, 2, 3)}

    @jax.jit
    def run(ws, bs):  # layers 1..depth, then the readout (the last draw)
        return {(a, d): fn([*ws[:d], ws[-1]], [*bs[:d], bs[-1]]) for (a, d), (_, fn) in fns.items()}

    n = MC_WIDTH
    shapes = [(X_MC.shape[1], n), (n, n), (n, n), (n, MC_OUT)]
    ws = [rng.standard_normal((MC_NETS, *s), np.float32) for s in shapes]
    bs = [rng.standard_normal((MC_NETS, s[1]), np.float32) for s in shapes]
    out = run(ws, bs)
    return {key: (fns[key][0], [np.asarray(o, np.float64) for o in out[key]]) for key in fns}


@pytest.mark.parametrize("activation", nt.ANALYTIC_ACTIVATIONS)
def test_analytic_kernels_match_monte_carlo(monte_carlo, activation):
    """Mean over networks within 4.5 standard errors of the analytic value, entrywise. Depth 1
    is exact at any width; deeper networks have an O(1/width) bias, which at width 128 is below
    the noise of 800 networks (with 4000 networks, still |z| < 3; at width 512 with 1000
    networks, |z| < 2.7)."""
    for depth in (1, 2, 3):
        widths, (nngp, ntk_ntk, ntk_std) = monte_carlo[activation, depth]
        for parametrization, samples, kind in (
            ("ntk", nngp, "nngp"),
            ("standard", nngp, "nngp"),
            ("ntk", ntk_ntk, "ntk"),
            ("standard", ntk_std, "ntk"),
        ):
            spec = models.MLPSpec(
                widths, activation=activation, parametrization=parametrization, bias_var=MC_BIAS
            )
            exact = nt.analytic_kernels(spec, X_MC)._asdict()[kind]
            mean = samples.mean(0)
            se = samples.std(0, ddof=1) / np.sqrt(len(samples))
            z = np.abs(mean - exact) / se
            assert z.max() < 4.5, (activation, depth, parametrization, kind, z.max())


def test_empirical_ntk_tends_to_analytic_with_width():
    x = X_MC
    for parametrization in models.PARAMETRIZATIONS:
        errors = {}
        for width in (128, 2048):
            spec = models.MLPSpec(
                (4, width, width, 1), parametrization=parametrization, bias_var=0.1
            )
            exact = nt.ntk_kernel(spec, x)
            errs = []
            for seed in range(2):
                emp = np.asarray(nt.mlp_ntk(spec.build(nnx.Rngs(seed)), x, trace=True))
                errs.append(np.linalg.norm(emp - exact) / np.linalg.norm(exact))
            errors[width] = np.mean(errs)
        assert errors[2048] < 0.5 * errors[128], (parametrization, errors)


def test_analytic_kernel_properties_and_known_values():
    x = np.asarray(X1, np.float64)
    spec = models.MLPSpec((3, 10, 10, 2), activation="relu", bias_var=0.2)
    k = nt.analytic_kernels(spec, x)
    for mat in k:
        np.testing.assert_allclose(mat, mat.T, atol=1e-12)
        assert np.linalg.eigvalsh(mat).min() > -1e-10 * mat.max()
    # identity activation, depth 1: both kernels are linear in x.x'
    lin = models.MLPSpec((3, 5, 1), activation="identity", parametrization="ntk", weight_var=1.5,
                     bias_var=0.2)
    k1 = 1.5 * x @ x.T / 3 + 0.2
    np.testing.assert_allclose(nt.nngp_kernel(lin, x), 1.5 * k1 + 0.2, rtol=1e-12)
    np.testing.assert_allclose(nt.ntk_kernel(lin, x), 1.5 * k1 + 0.2 + 1.5 * k1, rtol=1e-12)
    std = models.MLPSpec((3, 5, 1), activation="identity", parametrization="standard",
                     weight_var=1.5, bias_var=0.2)
    np.testing.assert_allclose(nt.ntk_kernel(std, x), 5 * k1 + 1 + 1.5 * (x @ x.T + 1))
    # ReLU on the diagonal: E[relu(u)^2] = q/2, so weight_var=2 preserves the norm
    diag = np.diag(nt.nngp_kernel(models.MLPSpec((3, 4, 4, 4, 1)), x))
    np.testing.assert_allclose(diag, 2 * np.sum(x**2, 1) / 3, rtol=1e-12)


def test_spec_builds_the_model_and_reads_it_back():
    spec = models.MLPSpec((3, 7, 7, 2), activation="erf", parametrization="ntk", bias_var=0.3)
    m = spec.build(nnx.Rngs(0))
    assert isinstance(m, models.MLP)
    assert models.MLPSpec.from_model(m) == spec and spec.depth == 2 and spec.weight_var == 1.0
    default = models.MLP((3, 7, 2), rngs=nnx.Rngs(0))  # the same defaults as the MLP
    assert models.MLPSpec.from_model(default) == models.MLPSpec((3, 7, 2))
    np.testing.assert_array_equal(nt.ntk_kernel(m, X1, X2), nt.ntk_kernel(spec, X1, X2))
    padded = models.MLP((3, 5, 2), max_width=9, parametrization="standard", rngs=nnx.Rngs(0))
    assert models.MLPSpec.from_model(padded).widths == (3, 5, 2)


def test_errors_name_the_argument():
    m = models.MLP((3, 6, 2), rngs=nnx.Rngs(0))
    apply_fn, params, _ = models.functional(m)
    with pytest.raises(ValueError, match="x1"):
        nt.mlp_ntk(m, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="x2"):
        nt.mlp_ntk(m, X1, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="x2"):
        nt.empirical_ntk(apply_fn, params, X1, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="x1"):
        nt.ntk_kernel(m, jnp.ones(3))
    with pytest.raises(ValueError, match="method"):
        nt.empirical_ntk(apply_fn, params, X1, method="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        nt.mlp_ntk(m, X1, chunk_size=0)
    with pytest.raises(ValueError, match="activation"):
        nt.nngp_kernel(models.MLPSpec((3, 4, 1), activation="tanh"), X1)
    with pytest.raises(ValueError, match="widths"):
        models.MLPSpec((3,))
    with pytest.raises(ValueError, match="model"):
        nt.ntk_kernel(models.MLP((3, 4, 4, 1), residual=True, rngs=nnx.Rngs(0)), X1)
    with pytest.raises(TypeError, match="model_or_spec"):
        nt.nngp_kernel((3, 4, 1), X1)


def test_linearized_model_is_first_order_taylor():
    m = models.MLP((3, 6, 6, 2), activation="tanh", bias_var=0.1, rngs=nnx.Rngs(7))
    lin = nt.Linearized(m)
    np.testing.assert_allclose(lin(X1), m(X1), rtol=1e-6, atol=1e-6)
    n_params = len(jax.tree.leaves(nnx.state(m, nnx.Param)))
    assert len(jax.tree.leaves(nnx.state(lin, nnx.Param))) == n_params  # only the displacement

    apply_lin, p_lin, rest_lin = models.functional(lin)
    apply_fn, params0, _ = models.functional(m)
    f_lin = nt.linearize(apply_fn, params0)
    rng = np.random.default_rng(8)
    direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), p_lin)
    errors = []
    for eps in (0.04, 0.02, 0.01):  # |delta| small next to |theta_0|: second order dominates
        p = jax.tree.map(lambda v, eps=eps: eps * v, direction)
        out = apply_lin(p, X1)
        moved = nnx.merge(nnx.graphdef(lin), p, rest_lin).network()
        theta = nnx.state(moved, nnx.Param)
        np.testing.assert_allclose(out, f_lin(theta, X1), rtol=1e-5, atol=1e-5)
        errors.append(float(jnp.abs(moved(X1) - out).max()))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.5)), (errors, ratios)  # O(|delta|^2)


def test_linearize_matches_a_hand_derived_taylor_model():
    """linearize against the Jacobian worked out by hand (no autodiff) for the two-layer network
    f(p, x) = tanh(x W + b) v + c: J(x) d = ((1 - tanh(z)^2) * (x dW + db)) v + tanh(z) dv + dc,
    z = x W + b. The model is exactly affine in the displacement, even a large one."""
    rng = np.random.default_rng(11)

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    def apply_fn(p, x):
        return jnp.tanh(x @ p["W"] + p["b"]) @ p["v"] + p["c"]

    p0 = {"W": normal(3, 5), "b": normal(5), "v": normal(5, 2), "c": normal(2)}
    d = {"W": normal(3, 5), "b": normal(5), "v": normal(5, 2), "c": normal(2)}  # |d| ~ |p0|
    x = normal(7, 3)
    h = jnp.tanh(x @ p0["W"] + p0["b"])
    jd = ((1 - h**2) * (x @ d["W"] + d["b"])) @ p0["v"] + h @ d["v"] + d["c"]
    f_lin = nt.linearize(apply_fn, p0)
    np.testing.assert_allclose(f_lin(p0, x), apply_fn(p0, x), rtol=1e-6, atol=1e-6)
    for scale in (0.5, 1.0, 3.0):
        p = jax.tree.map(lambda a, b, s=scale: a + s * b, p0, d)
        np.testing.assert_allclose(f_lin(p, x), apply_fn(p0, x) + scale * jd, rtol=1e-5, atol=1e-5)
    far = jax.tree.map(lambda a, b: a + 3 * b, p0, d)
    assert jnp.abs(f_lin(far, x) - apply_fn(far, x)).max() > 0.5  # not the network itself


def test_structured_ntk_takes_dense_layers_only_and_dropout_off():
    x = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)
    plain = models.MLP((3, 8, 2), rngs=nnx.Rngs(4))
    dropped = models.MLP((3, 8, 2), dropout=0.5, rngs=nnx.Rngs(4))  # same weights
    np.testing.assert_allclose(nt.mlp_ntk(dropped, x), nt.mlp_ntk(plain, x), rtol=1e-6)
    bn = models.MLP((3, 8, 2), normalization="batch", rngs=nnx.Rngs(4))
    with pytest.raises(ValueError, match="normalization"):
        nt.mlp_ntk(bn, x)
    apply_fn, params, _ = models.functional(bn)
    np.testing.assert_allclose(
        nt.model_ntk(bn, x), nt.empirical_ntk(apply_fn, params, x), rtol=1e-5, atol=1e-6
    )
