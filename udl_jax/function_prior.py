"""The prior over functions of randomly initialized MLPs, sampled exactly and cheaply.

A network with Gaussian weights, evaluated at N fixed inputs, has a simple conditional
structure: given the activations ``H`` (N, n) of one layer, the next layer's pre-activations ``z
= H W sqrt(s_w / n) + sqrt(s_b) b`` are *exactly* Gaussian, every unit independently, with the N
x N covariance ``G = s_w H H^T / n + s_b`` (the layer's empirical NNGP kernel). So the joint law
of a network's outputs at the N inputs can be sampled layer by layer from ``z = G^(1/2) eps``,
eps an (N, n_next) standard normal, at cost O(N^2 n) per layer, instead of drawing the n x
n_next weight matrix (``method="gram"``; the square root is a Cholesky factor with a relative
diagonal jitter of `JITTER`, which matters only where G is singular, when the true width is
below N). Both routes give the same distribution (tests/test_function_prior.py checks it against
direct weight draws), and the Gram route makes thousands of networks of width 1024 a matter of
seconds. Random draws come from fixed-size blocks (`udl_jax.models.standard_normal`) outside the
compiled network, and ``pad_width`` masks units as `udl_jax.models.MLP`'s ``max_width`` does, so
a whole width sweep compiles once.

This is the mechanism behind the NNGP limit (Neal 1996; Lee et al. 2018): as n grows, ``G``
concentrates on its expectation, and the outputs become a Gaussian process with the analytic
kernel (`udl_jax.ntk.nngp_kernel`).

The same structure gives each network's *own* kernel: its output is exactly N(0, G_L) given its
last hidden layer, with ``G_L = s_w H_L H_L^T / n + s_b`` (`network_kernels`). Its fluctuation
around the analytic kernel is O(n^-1/2) and its mean's deviation (the finite-width bias) is
O(1/n) (Yaida 2020; Roberts, Yaida & Hanin 2022).

Weights follow `udl_jax.models.MLP` in standard parametrization (``W ~ N(0, s_w / fan_in)``,
``b ~ N(0, s_b)``); the NTK parametrization gives the same functions at initialization.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import models
from .models import MLPSpec

__all__ = [
    "sample_outputs",
    "METHODS",
    "JITTER",
    "CHUNK_FLOATS",
    "network_kernels",
    "relu_layer_map",
    "relu_bias_samples",
]


METHODS = ("auto", "gram", "direct")
"""How `sample_outputs` draws a layer: from the Gram matrix, from weights, or the cheaper one."""

CHUNK_FLOATS = 1 << 24
"""Largest (networks x inputs x width) activation block evaluated at once (64 MB of float32)."""


def _check(spec, x, num_networks, method):
    if not isinstance(spec, MLPSpec):
        if isinstance(spec, models.MLP):
            spec = MLPSpec.from_model(spec)
        else:
            raise TypeError(
                f"spec: expected a models.MLPSpec or models.MLP, got {type(spec).__name__}"
            )
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != spec.widths[0] or x.shape[0] < 1:
        raise ValueError(f"x: expected inputs of shape (N, {spec.widths[0]}), got {x.shape}")
    if not isinstance(num_networks, int) or num_networks < 1:
        raise ValueError(f"num_networks: expected a positive int, got {num_networks!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return spec, x


JITTER = 1e-6
"""Relative diagonal jitter of the Gram route's Cholesky factor (its variance error is 1e-6)."""


def _psd_sqrt(g):
    """The Cholesky factor ``L`` of ``g + jitter``, ``L L^T = g`` up to `JITTER` (relative)."""
    if g.shape[0] == 1:
        return jnp.sqrt(jnp.clip(g, 0.0, None))
    eps = JITTER * jnp.mean(jnp.diag(g)) + 1e-30
    return jnp.linalg.cholesky(g + eps * jnp.eye(g.shape[0], dtype=g.dtype))


def _route(method, n_inputs, n_in):
    if method == "auto":
        return "gram" if n_inputs < n_in else "direct"
    return method


def _layer(noise, h, n_in, sw, sb, method):
    """Pre-activations (N, n_out) of a dense layer with Gaussian weights, given h (N, n).

    ``noise`` holds the layer's standard normal draws: ``(W, b)`` of shapes (n, n_out), (n_out,)
    for the direct route, ``eps`` (N, n_out) for the Gram route. ``n_in`` is the true fan-in
    (units of h beyond it are zero: padding)."""
    if method == "direct":
        w, b = noise
        return h @ w * jnp.sqrt(sw / n_in) + jnp.sqrt(sb) * b
    g = sw * (h @ h.T) / n_in + sb
    return _psd_sqrt(g) @ noise[0]


@functools.partial(jax.jit, static_argnames=("spec", "routes", "mode"))
def _forward(noises, x, hidden, spec, routes, mode):
    """Outputs (S, N, K) or own kernels (S, N, N) of S random networks (``mode``) from their
    standard normal draws ``noises`` (one tuple per layer, leading axis S); ``spec`` has the
    allocated widths, ``hidden`` the true hidden widths (traced, so one compilation serves every
    width up to the allocated one)."""
    sw, sb = spec.weight_var, spec.bias_var
    fan_in = [x.shape[1], *hidden]  # true fan-ins (padding units are zero)

    def one(noise):
        def affine(i, h):
            return _layer(noise[i], h, fan_in[i], sw, sb, routes[i])

        def post(i, a):  # padding: units beyond the true width stay zero
            return a * (jnp.arange(a.shape[-1]) < hidden[i])

        f = models.mlp_forward(
            affine,
            x,
            num_layers=len(spec.widths) - 1,
            activation=spec.activation,
            post=post,
            readout=mode == "outputs",
        )
        if mode == "outputs":
            return f.outputs
        h = f.inputs[-1]
        return sw * (h @ h.T) / fan_in[-1] + sb

    return jax.vmap(one)(noises)


def _normal(key, shape):
    """Standard normal draws of ``shape`` from blocks of one fixed size: one compilation per
    process, whatever the shapes (`udl_jax.models.standard_normal`); random draws inside a
    compiled, vmapped function would cost seconds of compilation per width."""
    return models.standard_normal(key, shape)


def _noise(key, s, n_inputs, widths, routes, layers):
    """Standard normal draws for ``layers`` of a chunk of s networks, one fold of key each."""
    out = []
    for i in range(layers):
        k = jax.random.fold_in(key, i)
        if routes[i] == "direct":
            kw, kb = jax.random.split(k)
            out.append(
                (_normal(kw, (s, widths[i], widths[i + 1])), _normal(kb, (s, widths[i + 1])))
            )
        else:
            out.append((_normal(k, (s, n_inputs, widths[i + 1])),))
    return tuple(out)


def _chunked(fn, key, num_networks, per_network):
    """Run ``fn(chunk_key, s)`` over chunks of s networks; concatenate the first num_networks."""
    size = max(1, min(num_networks, CHUNK_FLOATS // max(per_network, 1)))
    outs = []
    for c, start in enumerate(range(0, num_networks, size)):
        outs.append(np.asarray(fn(jax.random.fold_in(key, c), size))[: num_networks - start])
    return np.concatenate(outs)


def _run(spec, x, key, num_networks, method, pad_width, mode):
    spec, x = _check(spec, x, num_networks, method)
    hidden = spec.widths[1:-1]
    if pad_width is not None and (
        not isinstance(pad_width, int) or pad_width < max(hidden, default=0)
    ):
        raise ValueError(
            f"pad_width: expected an int >= every hidden width {hidden}, got {pad_width!r}"
        )
    alloc = (
        spec
        if pad_width is None
        else MLPSpec(
            (spec.widths[0], *[pad_width] * len(hidden), spec.widths[-1]),
            spec.activation,
            spec.parametrization,
            spec.weight_var,
            spec.bias_var,
        )
    )
    hidden = jnp.asarray(hidden, jnp.float32)
    widths = alloc.widths
    routes = tuple(_route(method, x.shape[0], n) for n in widths[:-1])
    layers = len(widths) - 1 if mode == "outputs" else len(widths) - 2
    per = x.shape[0] * max(widths[1:]) + max(
        (widths[i] * widths[i + 1] for i in range(layers) if routes[i] == "direct"), default=0
    )

    def fn(k, size):
        noise = _noise(k, size, x.shape[0], widths, routes, layers)
        if mode != "outputs":
            noise = (*noise, ())
        return _forward(noise, x, hidden, alloc, routes, mode)

    return _chunked(fn, key, num_networks, per)


def sample_outputs(
    spec,
    x,
    key: jax.Array,
    num_networks: int,
    *,
    method: str = "auto",
    pad_width: int | None = None,
):
    """Outputs of ``num_networks`` independently initialized MLPs at the inputs ``x``.

    Every layer is drawn exactly: from its weights (``"direct"``) or from the Gram matrix of its
    input, ``z = (s_w H H^T / n + s_b)^(1/2) eps`` (``"gram"``, cost O(N^2 n) instead of
    O(N n n_next)); ``"auto"`` takes the Gram route when N is below the (allocated) width, where
    the Gram matrix has full rank almost surely if the true width is at least N. See the module
    docstring.

    Args:
      spec: an `udl_jax.models.MLPSpec` (or a `udl_jax.models.MLP`, whose architecture is read).
      x: (N, d) inputs, d = ``spec.widths[0]``.
      key: PRNG key; the draws are a deterministic function of ``key``, ``num_networks`` and
        the shapes (networks are drawn in chunks, the hidden layers' draws shared with
        `network_kernels` for the same arguments).
      num_networks: S, the number of random networks.
      method: one of `METHODS`.
      pad_width: if given, allocate this many units in every hidden layer and mask those beyond
        the true width (as `udl_jax.models.MLP`'s ``max_width``), so that one compilation serves
        a whole width sweep; the draws then differ from the unpadded ones (same distribution).

    Returns:
      A float32 NumPy array (S, N, K) of outputs, K = ``spec.widths[-1]``.
    """
    return _run(spec, x, key, num_networks, method, pad_width, "outputs")


def network_kernels(
    spec,
    x,
    key: jax.Array,
    num_networks: int,
    *,
    method: str = "auto",
    pad_width: int | None = None,
):
    """Each random network's own output covariance ``s_w H_L H_L^T / n_L + s_b``.

    Given its hidden layers, a network's output at the inputs is exactly N(0, this matrix) (for
    each of its K outputs independently); its mean over networks is the covariance of the outputs
    over random initializations, and it tends to `udl_jax.ntk.nngp_kernel` as the widths grow.
    Averaging these instead of ``f f^T`` integrates the last layer's weights out analytically, so
    the Monte Carlo noise of the mean is O((S n)^-1/2) instead of O(S^-1/2).

    Args:
      spec, x, key, num_networks, method, pad_width: as in `sample_outputs` (with the same
        arguments, the same networks).

    Returns:
      A float64 NumPy array (S, N, N).
    """
    return _run(spec, x, key, num_networks, method, pad_width, "kernel").astype(np.float64)


def relu_layer_map(k: jax.Array) -> jax.Array:
    """``E[relu(u) relu(v)]`` for (u, v) centred Gaussian with covariance k, for all pairs.

    The arc-cosine kernel of degree 1 (Cho & Saul 2009): with ``cos t = k_ij / sqrt(k_ii k_jj)``,
    ``sqrt(k_ii k_jj) (sin t + (pi - t) cos t) / (2 pi)``, and ``k_ii / 2`` on the diagonal. A
    JAX function (differentiable, ``vmap``-able); the diagonal is computed separately so that
    derivatives stay finite there.

    Args:
      k: (N, N) symmetric positive semi-definite matrix.

    Returns:
      (N, N) array; the NNGP recursion of a ReLU layer is ``s_w * relu_layer_map(k) + s_b``.
    """
    k = jnp.asarray(k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k: expected a square (N, N) matrix, got {k.shape}")
    eye = jnp.eye(k.shape[0], dtype=bool)
    d = jnp.diag(k)
    norm = jnp.sqrt(d[:, None] * d[None, :])
    cos = jnp.where(eye, 0.0, jnp.clip(k / jnp.where(norm > 0, norm, 1.0), -1.0, 1.0))
    t = jnp.arccos(cos)
    off = norm / (2 * jnp.pi) * (jnp.sqrt(1 - cos**2) + (jnp.pi - t) * cos)
    return jnp.where(eye, k / 2, off)


@jax.jit
def _bias_samples(eps, l1, k2, width, sw, sb):
    def one(e):
        mask = jnp.arange(e.shape[1]) < width
        h = jax.nn.relu(l1 @ e) * mask
        k2_hat = sw * (h @ h.T) / width + sb
        f_hat, df = jax.jvp(relu_layer_map, (k2,), (k2_hat - k2,))
        est = relu_layer_map(k2_hat) - f_hat
        return jnp.stack([sw * est, sw * (est - df)])

    return jax.vmap(one)(eps)


def relu_bias_samples(
    x,
    width: int,
    key: jax.Array,
    num_networks: int,
    *,
    weight_var=2.0,
    bias_var=0.0,
    pad_width: int | None = None,
):
    """Per-network unbiased estimates of the finite-width bias of a two-hidden-layer ReLU MLP.

    For widths ``(d, width, n_2, K)`` the covariance of an output over random initializations is
    exactly ``s_w E[F(G)] + s_b``, where ``G = s_w h1 h1^T / width + s_b`` is the empirical kernel
    of the first hidden layer's ReLU activations ``h1`` and ``F`` = `relu_layer_map` (the second
    layer's units are, given ``h1``, independent Gaussians with covariance ``G``, and the output
    layer averages over them). It does not depend on ``n_2``. The analytic NNGP is
    ``s_w F(E[G]) + s_b``, and ``E[G] = K2`` exactly (the first layer is exact in expectation),
    so the bias is ``s_w (E[F(G)] - F(K2))`` = O(1/width) (second order in ``G - K2``).

    Each network gives the plain estimate ``s_w (F(G) - F(K2))`` and the corrected one, which
    also subtracts the first-order term ``s_w dF(K2)[G - K2]`` (a control variate of mean exactly
    zero): the same mean, but a spread of O(1/width) instead of O(width^-1/2).

    Args:
      x: (N, d) inputs.
      width: the first hidden layer's width.
      key: PRNG key (one split per network).
      num_networks: S.
      weight_var, bias_var: s_w, s_b.
      pad_width: allocate this many first-layer units and mask the rest (one compilation for
        a width sweep; see `sample_outputs`).

    Returns:
      (S, 2, N, N) float64 estimates, ``[:, 0]`` plain and ``[:, 1]`` corrected; the mean of
      either estimates ``E[cov] - nngp`` for the network
      ``MLPSpec((d, width, n_2, K), "relu", weight_var=s_w, bias_var=s_b)``.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"x: expected inputs of shape (N, d), got {x.shape}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width: expected a positive int, got {width!r}")
    alloc = width if pad_width is None else pad_width
    if not isinstance(alloc, int) or alloc < width:
        raise ValueError(f"pad_width: expected an int >= width {width}, got {pad_width!r}")
    if not isinstance(num_networks, int) or num_networks < 1:
        raise ValueError(f"num_networks: expected a positive int, got {num_networks!r}")
    k1 = weight_var * x @ x.T / x.shape[1] + bias_var
    l1 = np.linalg.cholesky(k1 + JITTER * np.mean(np.diag(k1)) * np.eye(len(k1)))
    k2 = weight_var * np.asarray(relu_layer_map(k1)) + bias_var
    l1, k2 = jnp.asarray(l1, jnp.float32), jnp.asarray(k2, jnp.float32)

    def fn(k, size):
        eps = _normal(k, (size, len(x), alloc))
        return _bias_samples(eps, l1, k2, jnp.float32(width), weight_var, bias_var)

    return _chunked(fn, key, num_networks, x.shape[0] * alloc).astype(np.float64)
